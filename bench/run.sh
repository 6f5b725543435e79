#!/usr/bin/env bash
# ngx-mruby-rs benchmarks: `make bench` runs this after `make build`.
#
# Stages (BENCH_STAGES, default "instr rps rss http-compat stream"):
#   instr        instructions per request under callgrind      (bench/instr.sh)
#   rps          requests/sec with wrk                         (bench/rps.sh)
#   rss          worker RSS growth over 200k -> 2M requests    (bench/rss.sh)
#   http-compat  body filter over 64 KB and a sub_request fan-out, against
#                the same responses without Ruby                (bench/http-compat.sh)
#   stream       instructions per connection of a TCP proxy choosing its
#                upstream in mruby_stream_code vs the same proxy (bench/stream.sh)
# then bench/report.py prints the summary table and writes
# bench/out/results.md. Everything else lands in bench/out/ (gitignored).
# See bench/README.md for the method and the knobs.

set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$BENCH_DIR/lib.sh"

require_build
require_tools "$PYTHON"
read -r -a stages <<<"${BENCH_STAGES:-instr rps rss http-compat stream}"
for s in "${stages[@]}"; do
    case $s in
        instr | rps | rss | http-compat | stream) ;;
        *) die "unknown stage '$s' in BENCH_STAGES (instr, rps, rss, http-compat, stream)" ;;
    esac
done

mkdir -p "$OUT"
# The report only shows what this run measured.
rm -f "$OUT/instr.tsv" "$OUT/rps.tsv" "$OUT/rss.tsv" "$OUT/http-compat.tsv" "$OUT/stream.tsv" "$OUT/results.md" "$OUT/load.txt"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS
log "nginx: $NGINX ($("$NGINX" -v 2>&1 | sed 's/nginx version: //'))"
log "module: $MODULE"
log "stages: ${stages[*]}; output in $OUT"

for s in "${stages[@]}"; do
    # In the background so a signal to run.sh reaches the stage (via the
    # cleanup trap of lib.sh), which then stops its own nginx.
    "$BENCH_DIR/$s.sh" &
    stage=$!
    BENCH_PIDS+=("$stage")
    wait "$stage" || die "stage $s failed"
    forget_pid "$stage"
done

echo "$load_before / $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/load.txt"
echo
"$PYTHON" "$BENCH_DIR/report.py" "$OUT"
echo
log "done in $((SECONDS - t0))s; table written to $OUT/results.md"
