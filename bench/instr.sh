#!/usr/bin/env bash
# Instructions per request under callgrind, for every case.
#
# For each case, nginx (daemon off, master_process off, 1 process,
# error_log warn) runs twice under `valgrind --tool=callgrind`: once
# serving N1 requests, once N2, each over one keep-alive connection from
# bench/kaclient.py. Instructions per request = (total2 - total1) / (N2 - N1):
# startup, config parsing, mruby VM setup, the connection and shutdown
# are the same in both runs and cancel.
#
# Env: BENCH_N1 (default 200), BENCH_N2 (default 1000), BENCH_CASES
# (default: all). Writes $OUT/instr.tsv.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$BENCH_DIR/callgrind.sh"
rm -rf "$OUT/instr"

N1=${BENCH_N1:-200}
N2=${BENCH_N2:-1000}
(( N2 > N1 )) || die "BENCH_N2 ($N2) must be larger than BENCH_N1 ($N1)"
read -r -a cases <<<"${BENCH_CASES:-${CASES[*]}}"

require_build
require_tools valgrind "$PYTHON"

mkdir -p "$OUT"
tsv=$OUT/instr.tsv
printf 'case\tn1\ttotal1\tn2\ttotal2\tinstr_per_req\n' >"$tsv"

# launch DIR PORT KIND: start nginx under callgrind; sets LAUNCHED (its pid).
launch() {
    local dir=$1 port=$2 kind=$3
    rm -rf "$dir"
    write_conf "$dir" "$port" "$kind" off
    callgrind_nginx "$dir/callgrind.out" "$dir" "$dir/conf/nginx.conf" "$dir/valgrind.log" -e "$dir/logs/error.log"
}

# total DIR: instructions of the whole run.
total() { callgrind_total "$1/callgrind.out" || die "see $1/valgrind.log, $1/logs/error.log"; }

start_all=$SECONDS
for c in "${cases[@]}"; do
    path=$(case_path "$c")
    kind=$(case_conf "$c")
    p1=$(free_port "$PORT_BASE")
    p2=$(free_port $((p1 + 1)))
    d1=$OUT/instr/$c-$N1
    d2=$OUT/instr/$c-$N2
    t0=$SECONDS
    # Both runs of a case at once (2 cores); counts do not depend on timing.
    launch "$d1" "$p1" "$kind"; pid1=$LAUNCHED
    launch "$d2" "$p2" "$kind"; pid2=$LAUNCHED
    BENCH_WATCH_PID=$pid1 "$PYTHON" "$BENCH_DIR/kaclient.py" "$p1" "$path" "$N1" & cl1=$!
    BENCH_WATCH_PID=$pid2 "$PYTHON" "$BENCH_DIR/kaclient.py" "$p2" "$path" "$N2" & cl2=$!
    ok=1
    wait "$cl1" || ok=0
    wait "$cl2" || ok=0
    # Let nginx see the client's close, then a graceful stop (callgrind
    # writes its counters at exit).
    sleep 0.5
    stop_pid "$pid1" QUIT 120
    stop_pid "$pid2" QUIT 120
    (( ok )) || die "case $c: client failed (see $d1/logs/error.log, $d2/logs/error.log)"
    # Any other traffic would falsify the counts: here every [error] is fatal.
    if grep -qE '\[(emerg|alert|crit|error)\]' "$d1/logs/error.log" "$d2/logs/error.log"; then
        die "case $c: errors in nginx's error_log: $(grep -hE '\[(emerg|alert|crit|error)\]' "$d1/logs/error.log" "$d2/logs/error.log" | head -n3)"
    fi
    t1=$(total "$d1")
    t2=$(total "$d2")
    per=$(callgrind_per_request "$t1" "$t2" "$N1" "$N2")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$N1" "$t1" "$N2" "$t2" "$per" >>"$tsv"
    log "instr: $(printf '%-8s' "$c") $per instructions/request ($N1 req: $t1, $N2 req: $t2; $((SECONDS - t0))s)"
done
log "instr: done in $((SECONDS - start_all))s -> $tsv"
