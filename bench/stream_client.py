#!/usr/bin/env python3
"""Raw TCP client for the stream instruction counts.

stream_client.py PORT N EXPECTED

Opens N connections to 127.0.0.1:PORT one after another (retrying the
first connect until nginx listens, so no probe connection reaches nginx);
on each, reads until nginx closes and checks it received EXPECTED. With
BENCH_WATCH_PID set, gives up when that process exits before accepting.
Identical for every case, so its cost on the nginx side cancels in the
ratio.
"""

import os
import socket
import sys
import time


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def connect(port, watch_pid, limit=180.0):
    end = time.time() + limit
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError:
            if watch_pid and not alive(watch_pid):
                sys.exit("nginx (pid %d) exited before listening on port %d" % (watch_pid, port))
            if time.time() > end:
                raise
            time.sleep(0.05)


def main():
    port, count, expected = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
    watch_pid = int(os.environ.get("BENCH_WATCH_PID", "0"))
    for i in range(count):
        sock = connect(port, watch_pid) if i == 0 else socket.create_connection(("127.0.0.1", port), timeout=60)
        got = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        sock.close()
        if got != expected:
            sys.exit("connection %d: expected %r, got %r" % (i, expected, got))


if __name__ == "__main__":
    main()
