#!/usr/bin/env bash
# Worker RSS growth under case (c) (file script without cache).
#
# A separate nginx (master + 1 worker) serves (c). wrk (-t1 -c20, with
# bench/stop-after.lua) sends BENCH_RSS_FIRST (200k) requests, then more
# up to BENCH_RSS_REQUESTS (2M) in total; the counts are wrk's (it may
# count a few more than asked: responses already read when it stops).
# The worker's VmRSS (/proc/<pid>/status) is read at both points (also
# in $OUT/rss/samples.tsv); growth = (rss2 - rss1) / rss1.
#
# Env: BENCH_RSS_FIRST (default 200000), BENCH_RSS_REQUESTS (2000000),
# BENCH_RSS_CASE (default c; any case of lib.sh, for comparison).
# Writes $OUT/rss.tsv.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIRST=${BENCH_RSS_FIRST:-200000}
TOTAL=${BENCH_RSS_REQUESTS:-2000000}
(( TOTAL > FIRST )) || die "BENCH_RSS_REQUESTS ($TOTAL) must be larger than BENCH_RSS_FIRST ($FIRST)"
CASE=${BENCH_RSS_CASE:-c}

require_build
require_tools wrk curl "$PYTHON"

set_pinning

dir=$OUT/rss
rm -rf "$dir"
port=$(free_port $((PORT_BASE + 200)))
write_conf "$dir" "$port" mruby on
"${NGX_PIN[@]}" "$NGINX" -p "$dir/" -e "$dir/logs/error.log" -c "$dir/conf/nginx.conf" \
    >"$dir/stdout.log" 2>&1 &
master=$!
BENCH_PIDS+=("$master")
wait_port "$port" 30 || die "nginx did not start: $(tail -n5 "$dir/logs/error.log")"
worker=$(worker_pid "$master")
url=http://127.0.0.1:$port$(case_path "$CASE")
body=$(curl -sS --max-time 10 "$url") || die "curl $url failed"
[[ $body == "Hello World" ]] || die "unexpected body from $url: $body"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$worker/status"; }

done_reqs=1   # the curl above
samples=$dir/samples.tsv
printf 'requests\tvmrss_kb\n' >"$samples"
printf '%s\t%s\n' "$done_reqs" "$(rss_kb)" >>"$samples"

# hit_until TARGET: one wrk run that stops after TARGET - done_reqs
# responses (bench/stop-after.lua); adds the count wrk reports.
hit_until() {
    local target=$1 marker=$dir/wrk.done out n rps wrk_pid
    (( done_reqs < target )) || return 0
    rm -f "$marker"
    "${WRK_PIN[@]}" wrk -t1 -c20 -d3600s -s "$BENCH_DIR/stop-after.lua" "$url" \
        -- "$((target - done_reqs))" "$marker" >"$dir/wrk.out" 2>&1 &
    wrk_pid=$!
    BENCH_PIDS+=("$wrk_pid")
    while [[ ! -e $marker ]] && kill -0 "$wrk_pid" 2>/dev/null; do
        sleep 0.1
    done
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || true
    forget_pid "$wrk_pid"
    out=$(cat "$dir/wrk.out")
    [[ -e $marker ]] || die "wrk ended before $target requests: $out"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        die "wrk saw errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out")"
    fi
    n=$(awk '/ requests in / { print $1 }' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' <<<"$out")
    [[ -n $n && -n $rps ]] || die "cannot parse wrk output: $out"
    done_reqs=$((done_reqs + n))
    kill -0 "$worker" 2>/dev/null || die "worker $worker is gone (see $dir/logs/error.log)"
    printf '%s\t%s\n' "$done_reqs" "$(rss_kb)" >>"$samples"
    log "rss: $done_reqs requests, VmRSS $(rss_kb) kB, $rps req/s"
}

t_start=$SECONDS
hit_until "$FIRST"
n1=$done_reqs rss1=$(rss_kb)
hit_until "$TOTAL"
n2=$done_reqs rss2=$(rss_kb)
[[ $(pgrep -P "$master" | head -n1) == "$worker" ]] || die "the worker was replaced during the run"
check_log "$dir/logs/error.log"
stop_pid "$master" QUIT 30

growth=$(awk -v a="$rss1" -v b="$rss2" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
printf 'case\tn1\trss1_kb\tn2\trss2_kb\tgrowth_pct\n%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$CASE" "$n1" "$rss1" "$n2" "$rss2" "$growth" >"$OUT/rss.tsv"
log "rss: $rss1 kB at $n1 requests, $rss2 kB at $n2 requests: ${growth}% ($((SECONDS - t_start))s) -> $OUT/rss.tsv"
