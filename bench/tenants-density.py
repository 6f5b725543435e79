#!/usr/bin/env python3
"""Density stage of bench/tenants.sh: every owner's site hit once, in random
order, by a few concurrent clients, while a sampler sums the memory of the
supervisor and its runners (the keeper's process tree).

Prints a Markdown summary on stdout; exits 1 if a request was not served
(status other than 200 or the wrong body) or if more runners than the cap
were ever alive.
"""

import argparse
import http.client
import os
import random
import sys
import threading
import time


def processes():
    """pid -> (ppid, comm, cmdline) for every live process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("latin-1")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        table[int(name)] = (ppid, comm, cmdline)
    return table


def keeper_tree(run_dir):
    """The keeper of this nginx (its --dir is below run_dir) and its descendants."""
    table = processes()
    keepers = [pid for pid, (_, comm, cmd) in table.items() if comm == "tenant-keeper" and f"--dir {run_dir}/" in cmd]
    tree = set(keepers)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    supervisors = {pid for pid in tree if table[pid][1] == "tenant-supervis"}
    runners = {pid for pid in tree if table[pid][0] in supervisors}
    return tree, runners


def memory_kb(pid):
    """(RSS, PSS) in kB, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith(" "))
        return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


class Sampler(threading.Thread):
    def __init__(self, run_dir, progress):
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.progress = progress
        self.samples = []  # (owners done, processes, runners, rss kB, pss kB)
        self.stop = threading.Event()

    def sample(self):
        tree, runners = keeper_tree(self.run_dir)
        rss = pss = 0
        for pid in tree:
            mem = memory_kb(pid)
            if mem:
                rss += mem[0]
                pss += mem[1]
        self.samples.append((self.progress(), len(tree), len(runners), rss, pss))

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--owners", required=True, help="file with one owner (= host name) per line")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--cap", type=int, required=True)
    ap.add_argument("--run-dir", required=True)
    args = ap.parse_args()

    with open(args.owners) as f:
        owners = [line.strip() for line in f if line.strip()]
    order = owners[:]
    random.shuffle(order)
    lock = threading.Lock()
    next_index = [0]
    done = [0]
    failures = []
    latencies = []

    def client():
        while True:
            with lock:
                if next_index[0] >= len(order):
                    return
                host = order[next_index[0]]
                next_index[0] += 1
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                conn.request("GET", "/hello.php", headers={"Host": host})
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                ok = resp.status == 200 and body == b"Hello, world\n"
                why = f"{resp.status} {body[:80]!r}"
            except OSError as e:
                ok, why = False, str(e)
            with lock:
                latencies.append(time.monotonic() - start)
                done[0] += 1
                if not ok:
                    failures.append(f"{host}: {why}")

    sampler = Sampler(args.run_dir, lambda: done[0])
    sampler.sample()
    idle_before = sampler.samples[-1]
    sampler.start()
    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    samples = sampler.samples

    peak_runners = max(s[2] for s in samples)
    peak_rss = max(s[3] for s in samples)
    peak_pss = max(s[4] for s in samples)
    full = [s for s in samples if s[2] >= min(args.cap, len(owners)) * 0.9]
    per_runner_pss = (sum(s[4] for s in full) / sum(s[2] for s in full)) if full else 0

    def at(fraction):
        """Peak PSS among samples taken up to `fraction` of the owners."""
        limit = len(owners) * fraction
        seen = [s[4] for s in samples if s[0] <= limit]
        return max(seen) if seen else 0

    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    mb = lambda kb: f"{kb / 1024:.0f} MB"
    served = len(owners) - len(failures)
    bounded = peak_runners <= args.cap and at(1.0) <= at(0.25) * 1.25
    verdict = "**MET**" if not failures and bounded else "**NOT MET**"
    print(f"Density: {len(owners)} owners (real users), one site each, `tenant_max_runners {args.cap}`, "
          f"each hit once in random order by {args.clients} concurrent clients, {elapsed:.1f} s "
          f"({len(owners) / elapsed:.0f} req/s; latency p50 {p50:.0f} ms, p99 {p99:.0f} ms; nearly every request spawns)")
    print()
    print("| | value |")
    print("|---|---:|")
    print(f"| requests served (200, right body) | {served} of {len(owners)} |")
    print(f"| runners alive, peak (cap {args.cap}) | {peak_runners} |")
    print(f"| supervisor + keeper alone, before the run (RSS / PSS) | {mb(idle_before[3])} / {mb(idle_before[4])} |")
    print(f"| supervisor + runners, peak RSS (sum) | {mb(peak_rss)} |")
    print(f"| supervisor + runners, peak PSS (sum) | {mb(peak_pss)} |")
    print(f"| peak PSS after 25% / 50% / 100% of the owners | {mb(at(0.25))} / {mb(at(0.5))} / {mb(at(1.0))} |")
    print(f"| PSS per runner (samples with the cap nearly full) | {per_runner_pss / 1024:.1f} MB |")
    print(f"| what {len(owners)} runners would take at that size | {mb(per_runner_pss * len(owners))} |")
    print(f"| bounded by the cap, every request served | {verdict} |")
    for f in failures[:10]:
        print(f"failed: {f}", file=sys.stderr)
    return 0 if not failures and peak_runners <= args.cap else 1


if __name__ == "__main__":
    sys.exit(main())
