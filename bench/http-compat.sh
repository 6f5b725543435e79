#!/usr/bin/env bash
# Instructions per request for two ngx_mruby-compatibility paths, each
# against the same response produced without Ruby, in the same nginx:
#   f: mruby_output_body_filter upcasing a 64 KB static file  vs  the static file
#      (and the same filter writing the body back unchanged, for its own cost)
#   g: Nginx::Async::HTTP.sub_request x4 joined in Ruby       vs  SSI including the same 4 subrequests
# Method as bench/instr.sh: two callgrind runs (N1, N2 requests on one
# keep-alive connection), (total2 - total1) / (N2 - N1). No targets are set
# by the issue for these; the ratios are printed for the README.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N1=${BENCH_N1:-100}
N2=${BENCH_N2:-300}
require_build
require_tools valgrind "$PYTHON"
mkdir -p "$OUT"
tsv=$OUT/http-compat.tsv
printf 'case\tpath\tinstr_per_req\n' >"$tsv"

big=$("$PYTHON" -c 'print("a" * 65536, end="")')
fanout=$'part\npart\npart\npart\n'

# measure PATH EXPECTED_BODY: prints instructions per request
measure() {
    local path=$1 body=$2 n total=() dir port pid
    for n in "$N1" "$N2"; do
        dir=$OUT/http-compat${path//\//-}-$n
        rm -rf "$dir"
        port=$(free_port "$PORT_BASE")
        write_conf "$dir" "$port" mruby off
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --log-file="$dir/valgrind.log" \
            "$NGINX" -p "$dir/" -e "$dir/logs/error.log" -c "$dir/conf/nginx.conf" >"$dir/stdout.log" 2>&1 </dev/null &
        pid=$!
        BENCH_PIDS+=("$pid")
        BENCH_WATCH_PID=$pid "$PYTHON" "$BENCH_DIR/kaclient.py" "$port" "$path" "$n" "$body" 2>"$dir/client.err" ||
            die "client failed for $path (see $dir/logs/error.log)"
        kill -QUIT "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; kill -QUIT "$pid" 2>/dev/null; done
        wait "$pid" 2>/dev/null
        total+=("$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out")")
    done
    echo $(( (total[1] - total[0]) / (N2 - N1) ))
}

report() {
    local label=$1 ruby=$2 plain=$3
    printf '%s: %d vs %d instructions/request = %s\n' "$label" "$ruby" "$plain" \
        "$("$PYTHON" -c "print('%.2fx' % ($ruby / $plain))")"
}

f=$(measure /f-filter "${big^^}") || exit 1
fp=$(measure /f-passth "$big") || exit 1
f0=$(measure /f-static "$big") || exit 1
g=$(measure /g-fanout "$fanout") || exit 1
g0=$(measure /g-ssi-4x "$fanout") || exit 1
printf 'f\t/f-filter\t%s\nfp\t/f-passth\t%s\nf0\t/f-static\t%s\ng\t/g-fanout\t%s\ng0\t/g-ssi-4x\t%s\n' \
    "$f" "$fp" "$f0" "$g" "$g0" >>"$tsv"
report "body filter, 64 KB, f.body = f.body.upcase vs static file" "$f" "$f0"
report "body filter, 64 KB, f.body = f.body (the filter's own cost) vs static file" "$fp" "$f0"
report "sub_request fan-out x4 in Ruby vs SSI x4" "$g" "$g0"
