#!/usr/bin/env bash
# Requests/sec with wrk for every case.
#
# Two nginx instances (master + 1 worker each, no valgrind): one with the
# mruby cases, one without the module for 'stock'. Each round runs, for
# every case in turn, a 1s warm-up and then `wrk -t1 -c50 -d5s`; a case's
# result is its best round (other load on the machine only ever lowers a
# run, so the best is the least disturbed). With 2+ CPUs nginx is pinned
# to CPU 0 and wrk to CPU 1 (BENCH_PIN=0 disables).
#
# Env: BENCH_WRK_ROUNDS (default 5), BENCH_WRK_DURATION (5),
# BENCH_WRK_CONNECTIONS (50), BENCH_WRK_THREADS (1), BENCH_CASES.
# Writes $OUT/rps.tsv (best, and every round).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${BENCH_WRK_ROUNDS:-5}
DURATION=${BENCH_WRK_DURATION:-5}
CONNS=${BENCH_WRK_CONNECTIONS:-50}
THREADS=${BENCH_WRK_THREADS:-1}
read -r -a cases <<<"${BENCH_CASES:-${CASES[*]}}"

require_build
require_tools wrk curl "$PYTHON"

NGX_PIN=()
WRK_PIN=()
if [[ ${BENCH_PIN:-1} == 1 ]] && command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    NGX_PIN=(taskset -c 0)
    WRK_PIN=(taskset -c 1)
fi

mkdir -p "$OUT"
rm -rf "$OUT/rps"
mkdir -p "$OUT/rps"
tsv=$OUT/rps.tsv

declare -A PORT_OF MASTER_OF DIR_OF

# start KIND: nginx for KIND (mruby|stock).
start() {
    local kind=$1 dir port after=18180
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

# measure CASE ROUND: prints "rps requests".
measure() {
    local c=$1 round=$2 url out rps reqs body
    url=http://127.0.0.1:${PORT_OF[$(case_conf "$c")]}$(case_path "$c")
    body=$(curl -sS --max-time 10 "$url") || die "case $c: curl $url failed"
    [[ $body == "Hello World" ]] || die "case $c: unexpected body from $url: $body"
    "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d1s "$url" >/dev/null
    out=$("${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$url")
    echo "$out" >"$OUT/rps/wrk-$c-$round.txt"
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

declare -A BEST ALL
for round in $(seq "$ROUNDS"); do
    for c in "${cases[@]}"; do
        res=$(measure "$c" "$round")
        rps=${res%% *}
        ALL[$c]="${ALL[$c]:-}${ALL[$c]:+,}$rps"
        if [[ -z ${BEST[$c]:-} ]] || awk -v a="$rps" -v b="${BEST[$c]}" 'BEGIN { exit !(a > b) }'; then
            BEST[$c]=$rps
        fi
        log "rps: round $round/$ROUNDS $(printf '%-8s' "$c") $rps req/s"
    done
done

for kind in "${!MASTER_OF[@]}"; do
    if grep -E '\[(emerg|alert|crit|error)\]' "${DIR_OF[$kind]}/logs/error.log"; then
        die "errors in ${DIR_OF[$kind]}/logs/error.log"
    fi
    stop_pid "${MASTER_OF[$kind]}" QUIT 30
done

printf 'case\trps_best\trps_rounds\n' >"$tsv"
for c in "${cases[@]}"; do
    printf '%s\t%s\t%s\n' "$c" "${BEST[$c]}" "${ALL[$c]}" >>"$tsv"
done
log "rps: done in $((SECONDS - t_start))s -> $tsv"
