#!/usr/bin/env python3
"""Keep-alive HTTP/1.1 client for the instruction counts.

kaclient.py PORT PATH N [EXPECTED_BODY]

Opens ONE connection to 127.0.0.1:PORT (retrying the connect until nginx
listens, so no probe connection reaches nginx), sends N GET requests for
PATH (a `{i}` in it becomes the request's number, 1 to N) one after
another on it (no pipelining: each response is read before
the next request), checks every response is 200 with the expected body,
then closes. With BENCH_WATCH_PID set, gives up when that process
exits before accepting. Identical for every case, so its cost on the nginx side
cancels in the ratios.
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


def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before a full header")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            return status, *read_chunked(sock, rest)
    if length is None:
        raise RuntimeError("response without Content-Length: %r" % head)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside a body")
        rest += chunk
    return status, rest[:length], rest[length:]


def read_chunked(sock, buf):
    body = b""
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        size_line, _, buf = buf.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(buf) < size + 2:
            buf += sock.recv(65536)
        if size == 0:
            # no trailers expected
            return body, buf[2:]
        body += buf[:size]
        buf = buf[size + 2:]


def main():
    port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    expected = (sys.argv[4] if len(sys.argv) > 4 else "Hello World\n").encode()
    request = ("GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n" % path).encode()
    numbered = "{i}" in path
    sock = connect(port, int(os.environ.get("BENCH_WATCH_PID") or 0))
    buf = b""
    for i in range(n):
        if numbered:
            request = ("GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n"
                       % path.replace("{i}", str(i + 1))).encode()
        sock.sendall(request)
        status, body, buf = read_response(sock, buf)
        if status != 200 or body != expected:
            sys.exit("request %d to %s: status %d body %r" % (i + 1, path, status, body))
    sock.close()


if __name__ == "__main__":
    main()
