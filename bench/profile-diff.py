#!/usr/bin/env python3
"""Where a case's extra instructions per request go (after bench/instr.sh).

profile-diff.py [CASE [BASE [TOP]]]    (defaults: a baseline 25)

For CASE and BASE, takes the per-function self cost from the N1 and N2
callgrind runs in bench/out/instr/ (callgrind_annotate), computes
(cost(N2) - cost(N1)) / (N2 - N1) per function, and prints the functions
whose per-request cost differs most between CASE and BASE.
"""

import os
import re
import subprocess
import sys

OUT = os.environ.get("BENCH_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[[^\]]*\])?\s*$")


def functions(path):
    text = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            name = m.group(2).split(":", 1)[-1] if ":" in m.group(2) else m.group(2)
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def per_request(case):
    runs = sorted(
        (int(d.rsplit("-", 1)[1]), os.path.join(OUT, "instr", d, "callgrind.out"))
        for d in os.listdir(os.path.join(OUT, "instr"))
        if d.rsplit("-", 1)[0] == case
    )
    if len(runs) < 2:
        sys.exit("no two runs for case %r in %s/instr (run bench/instr.sh)" % (case, OUT))
    (n1, f1), (n2, f2) = runs[0], runs[-1]
    a, b = functions(f1), functions(f2)
    return {k: (b.get(k, 0) - a.get(k, 0)) / (n2 - n1) for k in set(a) | set(b)}


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else "a"
    base = sys.argv[2] if len(sys.argv) > 2 else "baseline"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    c, b = per_request(case), per_request(base)
    rows = sorted(set(c) | set(b), key=lambda k: -abs(c.get(k, 0) - b.get(k, 0)))
    print("%10s %10s %10s  function (instructions per request, self cost)" % (case, base, "diff"))
    for k in rows[:top]:
        print("%10.0f %10.0f %+10.0f  %s" % (c.get(k, 0), b.get(k, 0), c.get(k, 0) - b.get(k, 0), k[:110]))
    print("%10.0f %10.0f %+10.0f  total" % (sum(c.values()), sum(b.values()), sum(c.values()) - sum(b.values())))


if __name__ == "__main__":
    main()
