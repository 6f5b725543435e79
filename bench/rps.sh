#!/usr/bin/env bash
# Requests/sec with wrk for every case.
#
# Two nginx instances (master + 1 worker each, no valgrind): one with the
# mruby cases, one without the module for 'stock'. Each case is measured
# in BENCH_WRK_PAIRS pairs: `wrk -t1 -c50 -d5s` against the baseline,
# then the same against the case, back to back, so both halves of a pair
# see the same background load. A case's ratio is the median of its pair
# ratios; its req/s the median of its runs; the baseline's req/s the
# median of all baseline runs. With 2+ CPUs nginx is pinned to CPU 0 and
# wrk to CPU 1 (BENCH_PIN=0 disables).
#
# Env: BENCH_WRK_PAIRS (default 3), BENCH_WRK_DURATION (5),
# BENCH_WRK_CONNECTIONS (50), BENCH_WRK_THREADS (1), BENCH_CASES.
# Writes $OUT/rps.tsv.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PAIRS=${BENCH_WRK_PAIRS:-3}
DURATION=${BENCH_WRK_DURATION:-5}
CONNS=${BENCH_WRK_CONNECTIONS:-50}
THREADS=${BENCH_WRK_THREADS:-1}
read -r -a cases <<<"${BENCH_CASES:-${CASES[*]}}"

require_build
require_tools wrk curl "$PYTHON"

set_pinning

mkdir -p "$OUT"
rm -rf "$OUT/rps"
mkdir -p "$OUT/rps"
tsv=$OUT/rps.tsv

declare -A PORT_OF MASTER_OF DIR_OF

# start KIND: nginx for KIND (mruby|stock).
start() {
    local kind=$1 dir port after=$((PORT_BASE + 100))
    dir=$OUT/rps/$kind
    [[ -n ${PORT_OF[mruby]:-} ]] && after=$((PORT_OF[mruby] + 1))
    port=$(free_port "$after")
    write_conf "$dir" "$port" "$kind" on
    "${NGX_PIN[@]}" "$NGINX" -p "$dir/" -e "$dir/logs/error.log" -c "$dir/conf/nginx.conf" \
        >"$dir/stdout.log" 2>&1 &
    MASTER_OF[$kind]=$!
    BENCH_PIDS+=("$!")
    PORT_OF[$kind]=$port
    DIR_OF[$kind]=$dir
    wait_port "$port" 30 || die "nginx ($kind) did not start: $(tail -n5 "$dir/logs/error.log")"
}

# measure CASE: prints "rps requests".
measure() {
    local c=$1 url out rps reqs
    url=http://127.0.0.1:${PORT_OF[$(case_conf "$c")]}$(case_path "$c")
    out=$("${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$url")
    echo "$out" >>"$OUT/rps/wrk-$c.txt"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        die "case $c: wrk saw errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out")"
    fi
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    reqs=$(awk '/ requests in / { print $1 }' <<<"$out")
    [[ -n $rps && -n $reqs ]] || die "case $c: cannot parse wrk output: $out"
    echo "$rps $reqs"
}

t_start=$SECONDS
start mruby
[[ " ${cases[*]} " == *" stock "* ]] && start stock

# rps_of CASE: one measurement; prints req/s.
rps_of() {
    local res
    res=$(measure "$1")
    echo "${res%% *}"
}

# warm CASE: check the answer, 1s of wrk.
warm() {
    local url body
    url=http://127.0.0.1:${PORT_OF[$(case_conf "$1")]}$(case_path "$1")
    body=$(curl -sS --max-time 10 "$url") || die "case $1: curl $url failed"
    [[ $body == "Hello World" ]] || die "case $1: unexpected body from $url: $body"
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d1s "$url" >/dev/null
}

warm baseline
declare -A RUNS RATIOS
BASE_RUNS=
for c in "${cases[@]}"; do
    [[ $c == baseline ]] && continue
    warm "$c"
    for pair in $(seq "$PAIRS"); do
        b=$(rps_of baseline)
        r=$(rps_of "$c")
        ratio=$(awk -v r="$r" -v b="$b" 'BEGIN { printf "%.4f", r / b }')
        BASE_RUNS="$BASE_RUNS${BASE_RUNS:+,}$b"
        RUNS[$c]="${RUNS[$c]:-}${RUNS[$c]:+,}$r"
        RATIOS[$c]="${RATIOS[$c]:-}${RATIOS[$c]:+,}$ratio"
        log "rps: $(printf '%-8s' "$c") pair $pair/$PAIRS: baseline $b, $c $r req/s (${ratio}x)"
    done
done

for kind in "${!MASTER_OF[@]}"; do
    check_log "${DIR_OF[$kind]}/logs/error.log"
    stop_pid "${MASTER_OF[$kind]}" QUIT 30
done

# median of a comma-separated list
median() {
    tr ',' '\n' <<<"$1" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf 'case\trps\tratio\truns\tratios\n' >"$tsv"
if [[ -n $BASE_RUNS ]]; then
    printf 'baseline\t%s\t1\t%s\t\n' "$(median "$BASE_RUNS")" "$BASE_RUNS" >>"$tsv"
fi
for c in "${cases[@]}"; do
    [[ $c == baseline ]] && continue
    printf '%s\t%s\t%s\t%s\t%s\n' "$c" "$(median "${RUNS[$c]}")" "$(median "${RATIOS[$c]}")" \
        "${RUNS[$c]}" "${RATIOS[$c]}" >>"$tsv"
done
log "rps: done in $((SECONDS - t_start))s -> $tsv"
