#!/usr/bin/env bash
# Instructions per request of a static location with `vlimit ip` + `vlimit
# file`, against the same location without them (callgrind, one process:
# master off, daemon off). Per-request cost = (Ir at 1200 requests - Ir at
# 200 requests) / 1000, so startup and shutdown cancel out.
#
#   bench/vlimit.sh            uses build/sbin/nginx and build/modules/
#   NGINX=... MODULE=... PORT=... bench/vlimit.sh
#
# Target: the limited location costs at most +5% over the plain one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${NGINX:-$ROOT/build/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/modules/ngx_http_mruby_module.so}
PORT=${PORT:-19890}
LOW=${LOW:-200}
HIGH=${HIGH:-1200}
WORK=$(mktemp -d /tmp/vlimit-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
mkdir -p "$WORK/logs" "$WORK/html"
head -c 4096 /dev/zero > "$WORK/html/page.html"

write_conf() { # $1 = limits to put in the location
    cat > "$WORK/nginx.conf" <<CONF
load_module $MODULE;
master_process off;
daemon off;
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    vlimit_zone vl 1m;
    limit_conn_zone \$binary_remote_addr zone=by_addr:1m;
    limit_conn_zone \$request_filename zone=by_file:1m;
    server {
        listen 127.0.0.1:$PORT;
        root html;
        location / { $1 }
    }
}
CONF
}

# Total instructions of one nginx run serving $1 requests on one keep-alive connection.
instructions() {
    local n=$1 out="$WORK/callgrind.out"
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" --trace-children=no \
        "$NGINX" -p "$WORK/" -c nginx.conf >/dev/null 2>"$WORK/valgrind.log" &
    local vg=$!
    for _ in $(seq 1 200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/page.html" && break
        sleep 0.1
    done
    # one request was used to wait for startup
    curl -s -o /dev/null "http://127.0.0.1:$PORT/page.html?[2-$n]"
    # valgrind sometimes drops a signal that arrives during epoll_wait: repeat it
    for _ in $(seq 1 100); do
        kill -QUIT "$vg" 2>/dev/null || break
        sleep 0.3
    done
    wait "$vg" || true
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

per_request() { # $1 = limits
    write_conf "$1"
    local low high
    low=$(instructions "$LOW")
    high=$(instructions "$HIGH")
    echo $(( (high - low) / (HIGH - LOW) ))
}

plain=$(per_request "")
limited=$(per_request "vlimit ip 100 zone=vl; vlimit file 100 zone=vl;")
limit_conn=$(per_request "limit_conn by_addr 100; limit_conn by_file 100;")
ratio=$(awk -v a="$limited" -v b="$plain" 'BEGIN { printf "%.4f", a / b }')
pct=$(awk -v a="$limited" -v b="$plain" 'BEGIN { printf "%+.1f", (a / b - 1) * 100 }')
ref_pct=$(awk -v a="$limit_conn" -v b="$plain" 'BEGIN { printf "%+.1f", (a / b - 1) * 100 }')
verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 1.05) ? "MET" : "NOT MET" }')
echo "plain location:            $plain instructions/request"
echo "vlimit ip + vlimit file:   $limited instructions/request ($pct%)"
echo "limit_conn x2 (reference): $limit_conn instructions/request ($ref_pct%)"
echo "ratio: $ratio ($pct%), target <= +5%: $verdict"
