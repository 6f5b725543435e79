#!/usr/bin/env python3
"""Summary table from bench/out/{instr,rps,rss}.tsv.

report.py OUT_DIR: prints the table (markdown) and writes OUT_DIR/results.md.
A ratio meets its target if, rounded to the two decimals printed, it is
at most the target.
"""

import csv
import os
import subprocess
import sys

LABELS = {
    "baseline": "baseline: `return 200` (same nginx)",
    "a": "(a) inline content handler",
    "b": "(b) file script, `cache`",
    "c": "(c) file script, no `cache`",
    "d": "(d) access + content handler",
    "e": "(e) `return 200` next to mruby locations",
    "stock": "stock: `return 200`, module not loaded",
}
TARGETS = {"a": 1.15, "b": 1.15, "c": 1.25, "d": 1.35, "e": 1.00}
C_NGX_MRUBY = {"a": "1.46x", "b": "1.47x", "c": "4.0x", "d": "1.89x", "e": "1.04x"}
ORDER = ["baseline", "a", "b", "c", "d", "e", "stock"]
RSS_TARGET = 2.0


def read_tsv(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {row["case"]: row for row in csv.DictReader(f, delimiter="\t")}


def env(name, default):
    return os.environ.get(name) or default


def verdict(value, target):
    return "MET" if round(value, 2) <= target else "NOT MET"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def main():
    out = sys.argv[1]
    instr = read_tsv(os.path.join(out, "instr.tsv"))
    rps = read_tsv(os.path.join(out, "rps.tsv"))
    rss = read_tsv(os.path.join(out, "rss.tsv"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    base_i = float(instr["baseline"]["instr_per_req"]) if "baseline" in instr else None
    base_r = float(rps["baseline"]["rps"]) if "baseline" in rps else None

    lines = []
    lines.append("| case | instr/req | ratio | target | | req/s | req/s ratio | C ngx_mruby (instr) |")
    lines.append("|---|---:|---:|---:|---|---:|---:|---:|")
    met_all = True
    for c in ORDER:
        if c not in instr and c not in rps:
            continue
        cells = [LABELS[c]]
        if c in instr and base_i:
            i = float(instr[c]["instr_per_req"])
            ratio = i / base_i
            cells += ["%d" % i, "%.2fx" % ratio]
            if c in TARGETS:
                v = verdict(ratio, TARGETS[c])
                met_all &= v == "MET"
                cells += ["<= %.2fx" % TARGETS[c], "**%s**" % v]
            else:
                cells += ["-", ""]
        else:
            cells += ["n/a", "n/a", "<= %.2fx" % TARGETS[c] if c in TARGETS else "-", ""]
        if c in rps:
            cells += ["%.0f" % float(rps[c]["rps"]), "%.2fx" % float(rps[c]["ratio"])]
        else:
            cells += ["n/a", "n/a"]
        cells.append(C_NGX_MRUBY.get(c, ""))
        lines.append("| " + " | ".join(cells) + " |")

    rss_lines = []
    if "c" in rss:
        row = rss["c"]
        growth = float(row["growth_pct"])
        v = "MET" if growth < RSS_TARGET else "NOT MET"
        met_all &= v == "MET"
        rss_lines.append("| case | requests | worker VmRSS | requests | worker VmRSS | growth | target | |")
        rss_lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        rss_lines.append(
            "| (c) file script, no `cache` | %s | %s kB | %s | %s kB | %+.2f%% | < %.0f%% | **%s** |"
            % (row["n1"], row["rss1_kb"], row["n2"], row["rss2_kb"], growth, RSS_TARGET, v)
        )

    n1 = n2 = "?"
    if instr:
        any_row = next(iter(instr.values()))
        n1, n2 = any_row["n1"], any_row["n2"]
    rev = sh("git", "-C", root, "rev-parse", "--short", "HEAD")
    if sh("git", "-C", root, "status", "--porcelain", "--untracked-files=no"):
        rev += " + uncommitted changes"
    nginx_v = sh("sh", "-c", "%s -v 2>&1" % os.path.join(root, "build/sbin/nginx")).replace("nginx version: ", "")
    cpu = sh("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    ncpu = os.cpu_count()
    load = open(os.path.join(out, "load.txt")).read().strip() if os.path.exists(os.path.join(out, "load.txt")) else ""

    md = []
    md.append("## Benchmark results")
    md.append("")
    md.append("Measured by `make bench` (bench/run.sh) at %s, %s, %s, %s CPUs (%s)." % (rev, nginx_v, cpu, ncpu, sh("date", "-u", "+%Y-%m-%d %H:%M UTC")))
    md.append("")
    md.append("Instructions per request: callgrind, (total(N2) - total(N1)) / (N2 - N1), "
              "N1 = %s, N2 = %s requests on one keep-alive connection; ratio = case / baseline "
              "(same nginx, same config). req/s: `wrk -t%s -c%s -d%ss`, 1 worker, %s pairs of "
              "runs (baseline, then the case, back to back) per case; req/s = median of the runs, "
              "req/s ratio = median of the pair ratios. Targets apply to the instruction ratio "
              "(MET if the ratio, rounded to 2 decimals, is at most the target)."
              % (n1, n2, env("BENCH_WRK_THREADS", "1"), env("BENCH_WRK_CONNECTIONS", "50"),
                 env("BENCH_WRK_DURATION", "5"), env("BENCH_WRK_PAIRS", "3")))
    md.append("")
    md += lines
    md.append("")
    if "stock" in instr and "e" in instr:
        md.append("Module cost for a location without Ruby, against an nginx that does not load "
                  "the module (same binary): (e) / stock = %.3fx instructions."
                  % (float(instr["e"]["instr_per_req"]) / float(instr["stock"]["instr_per_req"])))
        md.append("")
    if rps:
        md.append("req/s ratio of every pair: " + "; ".join(
            "%s %s" % (c, " / ".join("%.2f" % float(x) for x in rps[c]["ratios"].split(",")))
            for c in ORDER if c in rps and rps[c]["ratios"]) + ".")
        md.append("")
    if rss_lines:
        md.append("Worker RSS under (c) (wrk -t1 -c20, 1 worker):")
        md.append("")
        md += rss_lines
        md.append("")
    if load:
        md.append("Load average (1/5/15 min) before / after: %s. req/s is sensitive to other load "
                  "on the machine; instruction counts are not." % load)
        md.append("")
    evaluated = all(c in instr for c in TARGETS) and "baseline" in instr and bool(rss)
    if not evaluated:
        md.append("Not every target was measured in this run (see BENCH_STAGES / BENCH_CASES).")
    md.append("All measured targets met." if met_all else "Not all targets met.")
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
