#!/usr/bin/env bash
# Instructions per connection of a TCP proxy whose upstream server is
# chosen in Ruby (mruby_stream_code + Nginx::Stream::Connection) against
# the same proxy without Ruby, in the same nginx. Target (issue 11): at
# most +10% (ratio <= 1.10).
#
# Method as bench/instr.sh: nginx under callgrind (daemon off, one
# process, error_log warn) serves N1 then N2 connections (two runs) from
# bench/stream_client.py; per connection = (total2 - total1) / (N2 - N1).
# Both proxies connect to the same backend, a stream server in the same
# nginx answering `return "Hello World\n"`, so a connection costs two
# sessions in both cases and only the Ruby differs.
#
# Env: BENCH_N1 (default 100), BENCH_N2 (default 400). Writes $OUT/stream.tsv.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N1=${BENCH_N1:-100}
N2=${BENCH_N2:-400}
(( N2 > N1 )) || die "BENCH_N2 ($N2) must be larger than BENCH_N1 ($N1)"
TARGET=1.10
require_build
require_tools valgrind "$PYTHON"
mkdir -p "$OUT"
tsv=$OUT/stream.tsv
printf 'case\tn1\ttotal1\tn2\ttotal2\tinstr_per_conn\n' >"$tsv"

# write_stream_conf PREFIX BACKEND PLAIN RUBY: the three stream servers.
write_stream_conf() {
    local prefix=$1 backend=$2 plain=$3 ruby=$4
    mkdir -p "$prefix/conf" "$prefix/logs"
    cat >"$prefix/conf/nginx.conf" <<CONF
load_module $MODULE;
daemon off;
master_process off;
worker_processes 1;
error_log $prefix/logs/error.log warn;
pid $prefix/logs/nginx.pid;

events {
    worker_connections 1024;
}

stream {
    upstream backend {
        server 127.0.0.1:$backend;
    }

    server {
        listen 127.0.0.1:$backend;
        return "Hello World\n";
    }

    # baseline: the proxy without Ruby
    server {
        listen 127.0.0.1:$plain;
        proxy_pass backend;
    }

    # the same proxy, its upstream server chosen in Ruby
    server {
        listen 127.0.0.1:$ruby;
        mruby_stream_code '
            c = Nginx::Stream::Connection.new "backend"
            c.upstream_server = "127.0.0.1:$backend"
        ';
        proxy_pass backend;
    }
}
CONF
}

# measure CASE PORT_KIND: prints instructions per connection
measure() {
    local case=$1 n total=() dir backend plain ruby port pid
    for n in "$N1" "$N2"; do
        dir=$OUT/stream/$case-$n
        rm -rf "$dir"
        backend=$(free_port "$((PORT_BASE + 300))")
        plain=$(free_port $((backend + 1)))
        ruby=$(free_port $((plain + 1)))
        write_stream_conf "$dir" "$backend" "$plain" "$ruby"
        if [[ $case == ruby ]]; then port=$ruby; else port=$plain; fi
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" --log-file="$dir/valgrind.log" \
            "$NGINX" -p "$dir/" -e "$dir/logs/error.log" -c "$dir/conf/nginx.conf" >"$dir/stdout.log" 2>&1 </dev/null &
        pid=$!
        BENCH_PIDS+=("$pid")
        BENCH_WATCH_PID=$pid "$PYTHON" "$BENCH_DIR/stream_client.py" "$port" "$n" $'Hello World\n' 2>"$dir/client.err" ||
            die "client failed for $case (see $dir/client.err, $dir/logs/error.log)"
        sleep 0.5
        stop_pid "$pid" QUIT 120
        if grep -qE '\[(emerg|alert|crit|error)\]' "$dir/logs/error.log"; then
            die "case $case: errors in $dir/logs/error.log: $(grep -hE '\[(emerg|alert|crit|error)\]' "$dir/logs/error.log" | head -n3)"
        fi
        total+=("$(awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out")")
        [[ -n ${total[-1]} ]] || die "no callgrind totals in $dir"
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$N1" "${total[0]}" "$N2" "${total[1]}" \
        $(( (total[1] - total[0]) / (N2 - N1) )) >>"$tsv"
    echo $(( (total[1] - total[0]) / (N2 - N1) ))
}

t0=$SECONDS
plain=$(measure plain) || exit 1
ruby=$(measure ruby) || exit 1
ratio=$("$PYTHON" -c "print('%.2f' % ($ruby / $plain))")
verdict=$("$PYTHON" -c "print('MET' if round($ruby / $plain, 2) <= $TARGET else 'NOT MET')")
printf 'TCP proxy, upstream server chosen in mruby_stream_code: %d vs %d instructions/connection without Ruby = %sx (target <= %sx: %s)\n' \
    "$ruby" "$plain" "$ratio" "$TARGET" "$verdict"
log "stream: done in $((SECONDS - t0))s -> $tsv"
