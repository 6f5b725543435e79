#!/usr/bin/env python3
"""Tables (markdown, on stdout) and the share plot of bench/resources.sh.

  resources-report.py share TSV PNG|-   TSV from `resources-client.py share`
  resources-report.py load TSV...       one TSV per case, named <case>.tsv
"""

import os
import statistics
import sys

BAND = (45.0, 55.0)
# The thesis (chapter 6, figure 6.5): a 50% cap held only for requests of
# 6 ms of CPU or more. Only that threshold is known here, not its values.
THESIS_FROM_MS = 6
LABELS = {
    "/half/": "cpu=50 (default period, 10 ms)",
    "/free/": "no class (baseline, same run)",
}


def label(path):
    if path in LABELS:
        return LABELS[path]
    ms = path.strip("/")[1:]
    return "cpu=50 cpu_period=%sms%s" % (ms, " (the kernel's default)" if ms == "100" else "")


def ordered(paths):
    """/half/, then /p<ms>/ by period, then /free/."""
    return sorted(paths, key=lambda p: (p == "/free/", p != "/half/", int(p.strip("/")[1:] or 0) if p.startswith("/p") else 0))


def pct(values, p):
    v = sorted(values)
    i = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[i]


def read_share(path):
    rows, work = {}, {}
    with open(path) as f:
        for line in f:
            where, ms, cpu, wall, it = line.split("\t")
            if int(wall) <= 0 or int(cpu) <= 0:
                continue
            rows.setdefault((where, int(ms)), []).append(100.0 * int(cpu) / int(wall))
            work.setdefault((where, int(ms)), []).append(int(it) / int(cpu))
    return rows, work


def work_table(work):
    """Loop iterations per CPU microsecond at the largest size, against no
    class: what throttling costs the throttled script itself (cache and
    TLB refills after each switch)."""
    ms = max(k[1] for k in work)
    base = work.get(("/free/", ms))
    if not base:
        return ""
    b = statistics.median(base)
    cells = ["%s %.3fx" % (label(p), statistics.median(work[(p, ms)]) / b)
             for p in ordered({k[0] for k in work}) if p != "/free/" and (p, ms) in work]
    return ("Work done per CPU second by the %d ms requests, against no class (median of the loop "
            "iterations per CPU us): %s." % (ms, "; ".join(cells)))


def share_table(rows):
    paths = ordered({k[0] for k in rows})
    sizes = sorted({k[1] for k in rows})
    out = []
    head = "| request CPU | " + " | ".join(
        "%s: median (p10-p90)" % label(p) for p in paths) + " | target (cpu=50, default period) | |"
    out.append(head)
    out.append("|---:|" + "---:|" * len(paths) + "---|---|")
    for ms in sizes:
        cells = []
        for p in paths:
            s = rows.get((p, ms), [])
            cells.append("%.0f%% (%.0f-%.0f)" % (statistics.median(s), pct(s, 10), pct(s, 90)) if s else "-")
        half = rows.get(("/half/", ms))
        if ms < 2 or not half:
            target, verdict = "none (below 2 ms)", ""
        else:
            m = statistics.median(half)
            target = "45-55%"
            verdict = "**MET**" if BAND[0] <= round(m) <= BAND[1] else "**NOT MET**"
        out.append("| %d ms | %s | %s | %s |" % (ms, " | ".join(cells), target, verdict))
    n = min(len(v) for v in rows.values())
    out.append("")
    out.append("share = the script's CPU time (getrusage) / its wall time over the burn, per request; "
               "median and 10th-90th percentile of %d requests per cell" % n)
    return "\n".join(out)


def plot(rows, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plot: python3-matplotlib is not installed)", file=sys.stderr)
        return
    sizes = sorted({k[1] for k in rows})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.fill_between([2, max(sizes) * 1.15], BAND[0], BAND[1], color="#c8e6c9", label="target: 45-55% from 2 ms")
    ax.axvspan(THESIS_FROM_MS, max(sizes) * 1.15, ymin=0, ymax=1, color="#e3f2fd", alpha=0.6,
               label="thesis: within the band only from %d ms" % THESIS_FROM_MS)
    styles = {"/half/": ("o-", "#1b5e20"), "/p2/": ("d-.", "#0d47a1"), "/p100/": ("s--", "#b71c1c"), "/free/": ("^:", "#616161")}
    others = iter([("D--", "#e65100"), ("v--", "#4a148c"), ("P--", "#006064"), ("X--", "#827717")])
    for p in ordered({k[0] for k in rows}):
        xs = [ms for ms in sizes if (p, ms) in rows]
        if not xs:
            continue
        med = [statistics.median(rows[(p, ms)]) for ms in xs]
        lo = [m - pct(rows[(p, ms)], 10) for m, ms in zip(med, xs)]
        hi = [pct(rows[(p, ms)], 90) - m for m, ms in zip(med, xs)]
        fmt, color = styles.get(p) or next(others)
        ax.errorbar(xs, med, yerr=[lo, hi], fmt=fmt, color=color, capsize=3, label=label(p))
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlim(min(sizes) * 0.85, max(sizes) * 1.15)
    ax.set_ylim(0, 110)
    ax.set_xlabel("CPU time the request burns (ms)")
    ax.set_ylabel("CPU share of the request (%)")
    ax.set_title("resource_class cpu=50: measured share per request (median, p10-p90)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    fig.savefig(png)
    print("(plot: %s)" % png, file=sys.stderr)


def load_table(files):
    cases = {}
    for f in files:
        name = os.path.basename(f)[: -len(".tsv")]
        by_path = {}
        with open(f) as fh:
            for line in fh:
                if not line.strip():
                    continue
                path, lat, cpu, wall = line.split("\t")
                by_path.setdefault(path, []).append((int(lat), int(cpu), int(wall)))
        cases[name] = by_path
    out = ["| run | requests | latency mean | p50 | p90 | share (server side, mean) |",
           "|---|---:|---:|---:|---:|---:|"]
    means = {}
    for name, by_path in cases.items():
        for path, reqs in sorted(by_path.items()):
            lats = [r[0] / 1000 for r in reqs]
            shares = [100.0 * r[1] / r[2] for r in reqs if r[2] > 0]
            means[(name, path)] = statistics.mean(lats)
            out.append("| %s: %s | %d | %.1f ms | %.1f ms | %.1f ms | %.0f%% |" % (
                name, label(path), len(reqs), statistics.mean(lats), pct(lats, 50), pct(lats, 90),
                statistics.mean(shares)))
    out.append("")
    a, b = means.get(("c10-limited", "/half/")), means.get(("c10-unlimited", "/free/"))
    if a and b:
        out.append("Per-request slowdown at concurrency 10, limited / unlimited: **%.2fx** "
                   "(mean latency %.1f ms / %.1f ms)" % (a / b, a, b))
    a, b = means.get(("mixed", "/half/")), means.get(("mixed", "/free/"))
    if a and b:
        out.append("")
        out.append("Mixed run (5 limited + 5 unlimited clients at once): limited / unlimited **%.2fx** "
                   "(%.1f ms / %.1f ms)" % (a / b, a, b))
    return "\n".join(out)


def main():
    mode = sys.argv[1]
    if mode == "share":
        rows, work = read_share(sys.argv[2])
        print(share_table(rows))
        print()
        print(work_table(work))
        if sys.argv[3] != "-":
            plot(rows, sys.argv[3])
    elif mode == "load":
        print(load_table(sys.argv[2:]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
