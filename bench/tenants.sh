#!/usr/bin/env bash
# Tenant runners against their baselines, measured in one run (needs root:
# a real tenant user, runners, php-cgi).
#
#   bench/tenants.sh                  build/sbin/nginx, build/modules/, build/sbin/ngx-mruby-supervisor
#   PORT=... DURATION=5 PAIRS=3 SPAWNS=200 bench/tenants.sh
#
# 1. Hello-world PHP through an already-running owner runner
#    (`tenant_runner on; fastcgi_pass unix:$tenant_socket;`) against the
#    same php-cgi started by hand as the same user behind a plain
#    `fastcgi_pass unix:/path` (the per-user pool baseline). wrk -t1 -c1,
#    one worker, PAIRS alternating runs; ratio = median of the pair ratios.
#    Target: at least 0.95x.
# 2. First request of an owner with no runner (a spawn): every request
#    spawns (tenant_max_requests 1 recycles each runner after one request);
#    p50 and p99 of SPAWNS sequential requests. Target: p99 at most 50 ms.
#
# Not measured yet (README, Tenant runners): Ruby runners (not built), CGI
# against fcgiwrap, density with 1,000 owners.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${NGINX:-$ROOT/build/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/modules/ngx_http_mruby_module.so}
PORT=${PORT:-19950}
DURATION=${DURATION:-5}
PAIRS=${PAIRS:-3}
SPAWNS=${SPAWNS:-200}
OUT=${BENCH_OUT:-$ROOT/bench/out}
WORK=/tmp/ngx-tenants-bench
USER_NAME=ngxbench

die() { echo "tenants bench: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (a tenant user, runners)"
for t in wrk curl php-cgi setpriv useradd; do command -v $t >/dev/null || die "$t is not installed (make setup)"; done
[[ -x $NGINX && -f $MODULE ]] || die "run 'make build' first"

id -u $USER_NAME >/dev/null 2>&1 ||
    useradd -M -U -K UID_MIN=2000 -K GID_MIN=2000 -s /usr/sbin/nologin -d /nonexistent $USER_NAME
PLAIN_PID=
cleanup() {
    [[ -f $WORK/logs/nginx.pid ]] && kill "$(cat $WORK/logs/nginx.pid)" 2>/dev/null || true
    [[ -n $PLAIN_PID ]] && kill "$PLAIN_PID" 2>/dev/null || true
    sleep 0.5
}
trap cleanup EXIT
cleanup
rm -rf $WORK
mkdir -p $WORK/logs $WORK/site/htdocs $WORK/plain "$OUT"
chmod 0755 $WORK $WORK/site $WORK/plain
echo '<?php echo "Hello, world\n";' > $WORK/site/htdocs/hello.php
chown -R $USER_NAME:$USER_NAME $WORK/site/htdocs $WORK/plain
chmod 0711 $WORK/site/htdocs
chmod 0600 $WORK/site/htdocs/hello.php

write_conf() { # $1 = extra http lines
    cat > $WORK/nginx.conf <<CONF
load_module $MODULE;
user nobody nogroup;
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    tenant_interpreter .php /usr/bin/php-cgi;
    tenant_socket_dir $WORK/run;
    $1
    server {
        listen 127.0.0.1:$PORT;
        root $WORK/site/htdocs;
        location ~ \.php\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
        }
    }
    server {
        listen 127.0.0.1:$((PORT + 1));
        root $WORK/site/htdocs;
        location ~ \.php\$ {
            fastcgi_pass unix:$WORK/plain/php.sock;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
        }
    }
}
CONF
}

start_nginx() {
    "$NGINX" -p $WORK/ -c nginx.conf || die "nginx did not start"
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return; sleep 0.1; done
    die "nginx is not answering"
}

stop_nginx() {
    kill "$(cat $WORK/logs/nginx.pid)"
    for _ in $(seq 50); do [[ -f $WORK/logs/nginx.pid ]] || break; sleep 0.1; done
    sleep 0.5
}

rps() { # $1 = port
    wrk -t1 -c1 -d"${DURATION}s" "http://127.0.0.1:$1/hello.php" | awk '/Requests\/sec/ { print $2 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- 1. runner vs php-cgi by hand ------------------------------------------
write_conf ""
start_nginx
(cd $WORK/plain && umask 0 && exec setpriv --reuid=$USER_NAME --regid=$USER_NAME --clear-groups \
    env -i PATH=/usr/bin:/bin PHP_FCGI_CHILDREN=0 PHP_FCGI_MAX_REQUESTS=0 php-cgi -b $WORK/plain/php.sock) &
PLAIN_PID=$!
for _ in $(seq 50); do [[ -S $WORK/plain/php.sock ]] && break; sleep 0.1; done
[[ $(curl -s "http://127.0.0.1:$PORT/hello.php") == "Hello, world" ]] || die "the runner does not answer"
[[ $(curl -s "http://127.0.0.1:$((PORT + 1))/hello.php") == "Hello, world" ]] || die "the plain php-cgi does not answer"
wrk -t1 -c1 -d1s "http://127.0.0.1:$PORT/hello.php" >/dev/null
wrk -t1 -c1 -d1s "http://127.0.0.1:$((PORT + 1))/hello.php" >/dev/null
runner_all=() plain_all=() ratios=()
for _ in $(seq "$PAIRS"); do
    p=$(rps $((PORT + 1)))
    r=$(rps $PORT)
    plain_all+=("$p") runner_all+=("$r")
    ratios+=("$(awk -v r="$r" -v p="$p" 'BEGIN { printf "%.3f", r / p }')")
done
stop_nginx
kill $PLAIN_PID 2>/dev/null || true
PLAIN_PID=
runner=$(printf '%s\n' "${runner_all[@]}" | median)
plain=$(printf '%s\n' "${plain_all[@]}" | median)
ratio=$(printf '%s\n' "${ratios[@]}" | median)
verdict=$(awk -v x="$ratio" 'BEGIN { print (x >= 0.95) ? "MET" : "NOT MET" }')

# --- 2. spawn latency ---------------------------------------------------------
write_conf "tenant_max_requests 1; tenant_max_runners_per_owner 2;"
start_nginx
curl -s -o /dev/null "http://127.0.0.1:$PORT/hello.php"
for _ in $(seq "$SPAWNS"); do
    curl -s -o /dev/null -w '%{time_total}\n' -D $WORK/headers "http://127.0.0.1:$PORT/hello.php"
done > $WORK/spawn-times
spawned=$(grep -c 'tenants: supervisor: runner pid .* started' $WORK/logs/error.log || true)
stop_nginx
p50=$(sort -g $WORK/spawn-times | awk '{ v[NR] = $1 } END { printf "%.1f", v[int(NR * 0.50 + 0.5)] * 1000 }')
p99=$(sort -g $WORK/spawn-times | awk '{ v[NR] = $1 } END { i = int(NR * 0.99 + 0.5); if (i > NR) i = NR; printf "%.1f", v[i] * 1000 }')
spawn_verdict=$(awk -v x="$p99" 'BEGIN { print (x <= 50) ? "MET" : "NOT MET" }')

{
    echo "Tenant runners, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(php-cgi -v | head -1 | cut -d' ' -f1-2)"
    echo
    echo "| case | req/s | ratio | target | |"
    echo "|---|---:|---:|---:|---|"
    echo "| php-cgi by hand, plain fastcgi_pass (baseline) | $plain | 1.00x | - | |"
    echo "| owner runner (tenant_runner) | $runner | ${ratio}x | >= 0.95x | **$verdict** |"
    echo
    echo "pair ratios: ${ratios[*]} (wrk -t1 -c1 -d${DURATION}s, 1 worker)"
    echo
    echo "| spawn (first request of an owner) | p50 | p99 | target | |"
    echo "|---|---:|---:|---:|---|"
    echo "| $SPAWNS requests, $spawned runners started | $p50 ms | $p99 ms | p99 <= 50 ms | **$spawn_verdict** |"
} | tee "$OUT/tenants.md"
