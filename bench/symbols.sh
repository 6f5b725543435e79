#!/usr/bin/env bash
# The hello request's cost after a worker interned many symbols, against
# its cost in a fresh worker, in instructions under callgrind (the symbol
# target of issue 8: at most 1.05x after 100,000 requests that each intern
# a distinct symbol).
#
# Single-process nginx runs under `valgrind --tool=callgrind`, each with
# the bench config plus `/i-intern`, whose script interns "s_<query>" (a
# new symbol per request), and `/i-lookup`, which looks a name up
# (`"Hello World\n".to_sym`); both answer like `/a-inline`. For each
# measured path (`/a-inline`, the hello request, and `/i-lookup`):
#   fresh-N1, fresh-N2:   N1 (N2) requests to the path
#   interned-N1, -N2:     SYMBOLS `/i-intern?<n>` requests, then N1 (N2)
#                         requests to the path
# Instructions per hello request = (total(N2) - total(N1)) / (N2 - N1)
# within each pair (startup, the interning and shutdown cancel), and the
# ratio interned / fresh is printed with the target. The two runs of a pair
# go at once (2 cores); counts do not depend on timing. N1/N2 are large
# enough to average out the GC: a worker that grew a bigger heap while
# interning collects less often, so the ratio can come out below 1.
#
# Env: BENCH_N1 (default 1000), BENCH_N2 (default 5000), BENCH_SYMBOLS
# (default 100000). Writes $OUT/symbols.tsv. Not a stage of `make bench`
# (about 2 minutes on 2 cores): run it on its own.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$BENCH_DIR/callgrind.sh"
rm -rf "$OUT/symbols"

N1=${BENCH_N1:-1000}
N2=${BENCH_N2:-5000}
SYMBOLS=${BENCH_SYMBOLS:-100000}
TARGET=1.05
(( N2 > N1 )) || die "BENCH_N2 ($N2) must be larger than BENCH_N1 ($N1)"

require_build
require_tools valgrind "$PYTHON"
mkdir -p "$OUT"
tsv=$OUT/symbols.tsv

# launch DIR PORT: nginx under callgrind with the bench config and
# /i-intern; sets LAUNCHED (its pid).
launch() {
    local dir=$1 port=$2
    rm -rf "$dir"
    write_conf "$dir" "$port" mruby off
    # shellcheck disable=SC2016 # Ruby interpolation, not shell
    local intern='        location = /i-intern {\n            mruby_content_handler_code '"'"'"s_#{Nginx::Request.new.args}".to_sym; Nginx.rputs "Hello World\\n"'"'"';\n        }\n\n'
    intern+='        location = /i-lookup {\n            mruby_content_handler_code '"'"'Nginx.rputs "Hello World\\n".to_sym.to_s'"'"';\n        }\n\n'
    sed -i "s|^        location = /e-return {|$intern        location = /e-return {|" "$dir/conf/nginx.conf"
    grep -q '/i-intern' "$dir/conf/nginx.conf" || die "could not add /i-intern to $dir/conf/nginx.conf"
    callgrind_nginx "$dir/callgrind.out" "$dir" "$dir/conf/nginx.conf" "$dir/valgrind.log" -e "$dir/logs/error.log"
}

# client PORT PID SYMBOLS PATH N: SYMBOLS interning requests (none for 0),
# then N requests to PATH; runs in the background, sets CLIENT (its pid).
client() {
    local port=$1 pid=$2 symbols=$3 path=$4 n=$5
    (
        export BENCH_WATCH_PID=$pid
        if (( symbols > 0 )); then
            "$PYTHON" "$BENCH_DIR/kaclient.py" "$port" '/i-intern?{i}' "$symbols"
        fi
        "$PYTHON" "$BENCH_DIR/kaclient.py" "$port" "$path" "$n"
    ) &
    CLIENT=$!
}

# total DIR: instructions of the whole run.
total() { callgrind_total "$1/callgrind.out" || die "see $1/valgrind.log, $1/logs/error.log"; }

# pair NAME SYMBOLS PATH: runs the N1 and N2 runs; prints instructions
# per request to PATH.
pair() {
    local name=$1 symbols=$2 path=$3 p1 p2 d1 d2 pid1 pid2 cl1 cl2 ok=1
    p1=$(free_port "$((PORT_BASE + 300))")
    p2=$(free_port $((p1 + 1)))
    d1=$OUT/symbols/$name-$N1
    d2=$OUT/symbols/$name-$N2
    launch "$d1" "$p1"; pid1=$LAUNCHED
    launch "$d2" "$p2"; pid2=$LAUNCHED
    client "$p1" "$pid1" "$symbols" "$path" "$N1"; cl1=$CLIENT
    client "$p2" "$pid2" "$symbols" "$path" "$N2"; cl2=$CLIENT
    wait "$cl1" || ok=0
    wait "$cl2" || ok=0
    sleep 0.5
    stop_pid "$pid1" QUIT 120
    stop_pid "$pid2" QUIT 120
    (( ok )) || die "$name: client failed (see $d1/logs/error.log, $d2/logs/error.log)"
    if grep -qE '\[(emerg|alert|crit|error)\]' "$d1/logs/error.log" "$d2/logs/error.log"; then
        die "$name: errors in nginx's error_log: $(grep -hE '\[(emerg|alert|crit|error)\]' "$d1/logs/error.log" "$d2/logs/error.log" | head -n3)"
    fi
    local t1 t2
    t1=$(total "$d1")
    t2=$(total "$d2")
    callgrind_per_request "$t1" "$t2" "$N1" "$N2"
}

t0=$SECONDS
log "symbols: requests in a fresh worker vs after $SYMBOLS requests that each intern a distinct symbol"
printf 'path\tfresh\tinterned\tsymbols\tratio\ttarget\tverdict\n' >"$tsv"
for path in /a-inline /i-lookup; do
    name=${path#/}
    fresh=$(pair "fresh-$name" 0 "$path")
    interned=$(pair "interned-$name" "$SYMBOLS" "$path")
    ratio=$(awk -v a="$fresh" -v b="$interned" 'BEGIN { printf "%.3f", b / a }')
    verdict=$(awk -v r="$ratio" -v t="$TARGET" 'BEGIN { print ((sprintf("%.2f", r) + 0 <= t) ? "MET" : "NOT MET") }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$fresh" "$interned" "$SYMBOLS" "$ratio" "$TARGET" "$verdict" >>"$tsv"
    log "symbols: $path: $fresh instructions/request fresh, $interned after $SYMBOLS symbols: ${ratio}x (target <= ${TARGET}x): $verdict"
done
log "symbols: done in $((SECONDS - t0))s -> $tsv"
