#!/usr/bin/env python3
"""Client of bench/resources.sh: drives burn.php (a PHP script in a tenant
runner that burns a given CPU time, measured with getrusage, and answers
`cpu_us=<n> wall_us=<n> iter=<n>`, its own CPU time and wall time over
the burn).

  share PORT REPS SIZES PATHS...   for each size (ms), REPS rounds; each
      round requests every path once, in random order, with a random
      pause of 5-25 ms before each (so a request starts at a random point
      of the CFS period). Prints one TSV line per request:
      path, ms, cpu_us, wall_us, iter.
  load PORT SECONDS MS PATH:N...   N concurrent clients per path for
      SECONDS, each sending burn requests of MS ms back to back. Prints
      one TSV line per request: path, client-side latency in us, cpu_us,
      wall_us.
"""

import http.client
import random
import sys
import threading
import time


def burn(port, path, ms):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "%s?ms=%d" % (path, ms))
        resp = conn.getresponse()
        body = resp.read().decode("ascii", "replace")
    finally:
        conn.close()
    if resp.status != 200:
        sys.exit("%s?ms=%d: status %d: %s" % (path, ms, resp.status, body[:200]))
    fields = dict(kv.split("=", 1) for kv in body.split())
    return int(fields["cpu_us"]), int(fields["wall_us"]), int(fields["iter"])


def share(port, reps, sizes, paths):
    for ms in sizes:
        for _ in range(reps):
            order = list(paths)
            random.shuffle(order)
            for path in order:
                time.sleep(random.uniform(0.005, 0.025))
                cpu, wall, it = burn(port, path, ms)
                print("%s\t%d\t%d\t%d\t%d" % (path, ms, cpu, wall, it), flush=True)


def load(port, seconds, ms, specs):
    lines = []
    lock = threading.Lock()
    end = time.monotonic() + seconds
    failures = []

    def client(path):
        try:
            while time.monotonic() < end:
                t0 = time.monotonic()
                cpu, wall, _ = burn(port, path, ms)
                lat = int((time.monotonic() - t0) * 1e6)
                with lock:
                    lines.append("%s\t%d\t%d\t%d" % (path, lat, cpu, wall))
        except BaseException as e:  # noqa: BLE001 (reported below, the run fails)
            failures.append("%s: %s" % (path, e))

    threads = []
    for spec in specs:
        path, n = spec.rsplit(":", 1)
        for _ in range(int(n)):
            threads.append(threading.Thread(target=client, args=(path,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit("load: " + "; ".join(failures[:3]))
    print("\n".join(lines))


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "share":
        share(port, int(sys.argv[3]), [int(s) for s in sys.argv[4].split(",")], sys.argv[5:])
    elif mode == "load":
        load(port, float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
