#!/usr/bin/env bash
# Tenant runners against their baselines, every ratio measured in this one
# run (needs root: real tenant users, runners, php-cgi, fcgiwrap).
#
#   bench/tenants.sh
#   PORT=19950 DURATION=5 PAIRS=7 SPAWNS=200 OWNERS=1000 bench/tenants.sh
#   CASES="php ruby cgi spawn density" bench/tenants.sh   (a subset)
#
# One nginx, one worker, wrk -t1 -c1 (so a request's cost is its latency,
# not how well it overlaps with others). A ratio is measured in PAIRS
# interleaved pairs (A then B, then B then A, ...; each run DURATION s,
# after one untimed request on each side so neither starts cold); the
# table shows the median of the pair ratios and their spread (min-max).
#
# 1. php: hello-world PHP through an already-running owner runner
#    (`tenant_runner on; fastcgi_pass unix:$tenant_socket;`) against the
#    same php-cgi started by hand as the same user behind a plain
#    `fastcgi_pass unix:/path` (the per-user pool baseline, which never
#    recycles: PHP_FCGI_MAX_REQUESTS=0, like php-fpm's default
#    pm.max_requests). Target: at least 0.95x, with the same policy
#    (`tenant_max_requests 0`, as for cases 2 and 3). A second row measures
#    the default `tenant_max_requests 1000` (recycling, with its standby
#    runner started ahead) against the same baseline, for information.
#    req/s on a shared 2-CPU machine swing with other jobs, so the PHP case
#    also measures CPU time per request of everything on the server side
#    (the nginx worker, the PHP process, and for the runner the supervisor
#    and keeper too: /proc/<pid>/stat, CPU_REQUESTS requests over one
#    keep-alive connection, CPU_PAIRS interleaved pairs): that figure
#    hardly moves with the load.
# 2. ruby: hello-world Ruby (`Nginx.rputs`) in the owner's Ruby runner
#    against the same file run in the worker (`mruby_content_handler`,
#    no cache, like the runner): ratio reported, no target. Against the
#    same answer from a CGI program (`#!/bin/sh`, the cheapest CGI) run by
#    fcgiwrap started by hand as the owner (the suEXEC-style baseline):
#    target at least 5x.
# 3. cgi: that CGI program through the owner's CGI runner (`tenant_cgi on`)
#    against fcgiwrap: both fork and exec the program per request, so the
#    ratio shows what the runner adds (no target in issue 9).
# 4. spawn: the first request of an owner with no runner. Every request
#    spawns (tenant_max_requests 1 recycles each runner after one
#    request); p50 and p99 of SPAWNS sequential requests per kind, next to
#    what php-cgi alone takes to start (`php-cgi -v`, no request).
#    Target (PHP): p99 at most 50 ms.
# 5. density: OWNERS real users (created here, removed at the end), one
#    site each (`root .../$host/htdocs`), `tenant_max_runners 64`, each
#    owner's PHP hit once in random order by DENSITY_CLIENTS concurrent
#    clients: every request must be served (200, the right body), and the
#    memory of the supervisor + runners (sum of RSS and PSS, sampled) must
#    follow the cap, not the number of owners.
#
# Writes bench/out/tenants.md (the tables) next to printing them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${NGINX:-$ROOT/build/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/modules/ngx_http_mruby_module.so}
PORT=${PORT:-19950}
DURATION=${DURATION:-5}
PAIRS=${PAIRS:-7}
SPAWNS=${SPAWNS:-200}
CPU_REQUESTS=${CPU_REQUESTS:-20000}
CPU_PAIRS=${CPU_PAIRS:-3}
OWNERS=${OWNERS:-1000}
DENSITY_CAP=${DENSITY_CAP:-64}
DENSITY_CLIENTS=${DENSITY_CLIENTS:-4}
CASES=${CASES:-php ruby cgi spawn density}
OUT=${BENCH_OUT:-$ROOT/bench/out}
WORK=/tmp/ngx-tenants-bench
USER_NAME=ngxbench
DENSITY_PREFIX=ngxd

die() { echo "tenants bench: $*" >&2; exit 1; }
note() { echo "[tenants bench $(date +%H:%M:%S)] $*" >&2; }
[[ $(id -u) == 0 ]] || die "needs root (tenant users, runners)"
for t in wrk curl php-cgi fcgiwrap setpriv useradd userdel python3; do
    command -v $t >/dev/null || die "$t is not installed (make setup)"
done
[[ -x $NGINX && -f $MODULE ]] || die "run 'make build' first"
has_case() { [[ " $CASES " == *" $1 "* ]]; }

id -u $USER_NAME >/dev/null 2>&1 ||
    useradd -M -U -K UID_MIN=2000 -K GID_MIN=2000 -s /usr/sbin/nologin -d /nonexistent $USER_NAME

HAND_PIDS=()
DENSITY_USERS=()
cleanup() {
    [[ -f $WORK/logs/nginx.pid ]] && kill "$(cat $WORK/logs/nginx.pid)" 2>/dev/null || true
    local pid
    for pid in "${HAND_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    if ((${#DENSITY_USERS[@]})); then
        note "removing ${#DENSITY_USERS[@]} density users"
        for u in "${DENSITY_USERS[@]}"; do userdel "$u" 2>/dev/null || true; done
    fi
}
trap cleanup EXIT
rm -rf $WORK
mkdir -p $WORK/logs $WORK/site/htdocs $WORK/hand "$OUT"
chmod 0755 $WORK $WORK/site $WORK/hand
SITE=$WORK/site/htdocs
echo '<?php echo "Hello, world\n";' > $SITE/hello.php
echo 'Nginx.rputs "Hello, world\n"' > $SITE/hello.rb
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\nHello, world\\n"\n' > $SITE/hello.cgi
chown -R $USER_NAME:$USER_NAME $SITE $WORK/hand
chmod 0711 $SITE
chmod 0600 $SITE/hello.php
chmod 0644 $SITE/hello.rb # the worker reads it for mruby_content_handler
chmod 0700 $SITE/hello.cgi

# --- nginx -------------------------------------------------------------------
# PORT: the tenant runners. PORT+1: the baselines started by hand (php-cgi,
# fcgiwrap) and the worker's own mruby. PORT+2: density, one site per host.
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
    keepalive_requests 100000000;
    tenant_interpreter .php /usr/bin/php-cgi;
    tenant_socket_dir $WORK/run;
    $1
    server {
        listen 127.0.0.1:$PORT;
        root $SITE;
        location ~ \.(php|rb)\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
            add_header X-Runner-Pid \$tenant_runner_pid;
        }
        location ~ \.cgi\$ {
            tenant_runner on;
            tenant_cgi on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
        }
    }
    server {
        listen 127.0.0.1:$((PORT + 1));
        root $SITE;
        location ~ \.php\$ {
            fastcgi_pass unix:$WORK/hand/php.sock;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
        }
        location = /hello.rb {
            mruby_content_handler $SITE/hello.rb;
        }
        location ~ \.cgi\$ {
            fastcgi_pass unix:$WORK/hand/fcgiwrap.sock;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
        }
    }
    server {
        listen 127.0.0.1:$((PORT + 2));
        root $WORK/dsites/\$host/htdocs;
        location ~ \.php\$ {
            tenant_runner on;
            fastcgi_pass unix:\$tenant_socket;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param REDIRECT_STATUS 200;
        }
    }
}
CONF
}

start_nginx() {
    rm -f $WORK/logs/error.log
    "$NGINX" -p $WORK/ -c nginx.conf || die "nginx did not start"
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return; sleep 0.1; done
    die "nginx is not answering"
}

stop_nginx() {
    kill "$(cat $WORK/logs/nginx.pid)"
    for _ in $(seq 50); do [[ -f $WORK/logs/nginx.pid ]] || break; sleep 0.1; done
    sleep 0.5
}

# Runs a program as the tenant in $WORK/hand, in the background.
start_by_hand() { # $1 = socket to wait for, rest = command
    local socket=$1
    shift
    (cd $WORK/hand && umask 0 && exec setpriv --reuid=$USER_NAME --regid=$USER_NAME --clear-groups \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@") &
    HAND_PIDS+=($!)
    for _ in $(seq 50); do [[ -S $socket ]] && return; sleep 0.1; done
    die "$* did not create $socket"
}

expect_hello() { # $1 = port, $2 = path
    local body
    body=$(curl -s "http://127.0.0.1:$1$2")
    [[ $body == "Hello, world" ]] || die "http://127.0.0.1:$1$2 answered \"$body\", not Hello, world"
}

# --- measuring ----------------------------------------------------------------
# req/s of one wrk run; dies if any answer was not a 2xx or a socket failed.
rps() { # $1 = port, $2 = path
    expect_hello "$1" "$2"
    local out
    out=$(wrk -t1 -c1 -d"${DURATION}s" "http://127.0.0.1:$1$2")
    if grep -q -E 'Non-2xx|Socket errors' <<<"$out"; then
        die "wrk on :$1$2 saw failures: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')"
    fi
    awk '/Requests\/sec/ { print $2 }' <<<"$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
percentile() { # $1 = 0..100, stdin = numbers
    sort -g | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100 + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'
}

# CPU time (utime + stime, in clock ticks) of processes, summed.
cpu_ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/$pid/stat)))
    done
    echo $total
}

# Server-side CPU microseconds per request: $1 = port, $2 = path, rest = pids.
cpu_per_request() {
    local port=$1 path=$2 before after
    shift 2
    before=$(cpu_ticks "$@")
    python3 "$ROOT/bench/kaclient.py" "$port" "$path" "$CPU_REQUESTS" $'Hello, world\n' ||
        die "keep-alive client on :$port$path failed"
    after=$(cpu_ticks "$@")
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$CPU_REQUESTS" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'
}

ROWS=()
CPU_ROWS=()
# One comparison: PAIRS interleaved pairs of runs, ratio = a / b per pair.
compare() { # $1 = label, $2 = port a, $3 = path a, $4 = port b, $5 = path b, $6 = target ratio or -
    local label=$1 pa=$2 qa=$3 pb=$4 qb=$5 target=$6 a b i
    local as=() bs=() ratios=()
    for i in $(seq "$PAIRS"); do
        if ((i % 2)); then a=$(rps "$pa" "$qa"); b=$(rps "$pb" "$qb"); else b=$(rps "$pb" "$qb"); a=$(rps "$pa" "$qa"); fi
        as+=("$a") bs+=("$b")
        ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')")
        note "$label: pair $i: $a / $b = ${ratios[-1]}"
    done
    local ma mb mr lo hi verdict=""
    ma=$(printf '%s\n' "${as[@]}" | median)
    mb=$(printf '%s\n' "${bs[@]}" | median)
    mr=$(printf '%s\n' "${ratios[@]}" | median)
    lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)
    hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
    if [[ $target != - ]]; then
        verdict=$(awk -v x="$mr" -v t="$target" 'BEGIN { print (x >= t) ? "**MET**" : "**NOT MET**" }')
        target=">= ${target}x"
    fi
    ROWS+=("| $label | $ma | $mb | ${mr}x | $lo-$hi | $target | $verdict |")
}

# --- 1-3. hot runners against their baselines ---------------------------------
if has_case php || has_case ruby || has_case cgi; then
    write_conf "tenant_max_requests 0;"
    start_nginx
    start_by_hand $WORK/hand/php.sock PHP_FCGI_CHILDREN=0 PHP_FCGI_MAX_REQUESTS=0 php-cgi -b $WORK/hand/php.sock
    start_by_hand $WORK/hand/fcgiwrap.sock fcgiwrap -c 1 -s unix:$WORK/hand/fcgiwrap.sock
    if has_case php; then
        compare "PHP: owner runner / php-cgi by hand (neither recycles)" $PORT /hello.php $((PORT + 1)) /hello.php 0.95
        worker=$(pgrep -P "$(cat $WORK/logs/nginx.pid)" | head -1)
        keeper=$(pgrep -f "ngx-mruby-supervisor keeper --dir $WORK/run/" | head -1)
        supervisor=$(pgrep -P "$keeper" | head -1)
        runner_pid=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PORT/hello.php" | awk -F': ' 'tolower($1) == "x-runner-pid" { print $2 + 0 }')
        [[ -n $worker && -n $keeper && -n $supervisor && -n $runner_pid ]] || die "cannot find the processes to measure"
        hand_php=${HAND_PIDS[0]}
        cr=() cb=() cratios=()
        for i in $(seq "$CPU_PAIRS"); do
            r=$(cpu_per_request $PORT /hello.php "$worker" "$runner_pid" "$supervisor" "$keeper")
            b=$(cpu_per_request $((PORT + 1)) /hello.php "$worker" "$hand_php")
            cr+=("$r") cb+=("$b")
            cratios+=("$(awk -v a="$r" -v b="$b" 'BEGIN { printf "%.3f", b / a }')")
            note "CPU per request: pair $i: runner $r us, by hand $b us"
        done
        CPU_ROWS+=("| PHP: owner runner / php-cgi by hand (neither recycles) | $(printf '%s\n' "${cr[@]}" | median) us | $(printf '%s\n' "${cb[@]}" | median) us | $(printf '%s\n' "${cratios[@]}" | median)x | $(printf '%s\n' "${cratios[@]}" | sort -g | head -1)-$(printf '%s\n' "${cratios[@]}" | sort -g | tail -1) |")
    fi
    if has_case ruby; then
        compare "Ruby: owner runner / the worker's mruby" $PORT /hello.rb $((PORT + 1)) /hello.rb -
        compare "Ruby: owner runner / CGI by fcgiwrap" $PORT /hello.rb $((PORT + 1)) /hello.cgi 5
    fi
    if has_case cgi; then
        compare "CGI: owner CGI runner / CGI by fcgiwrap" $PORT /hello.cgi $((PORT + 1)) /hello.cgi -
    fi
    grep -E '\[(crit|alert|emerg)\]' $WORK/logs/error.log | head -5 >&2 || true
    stop_nginx
    if has_case php; then
        write_conf ""
        start_nginx
        compare "PHP: owner runner, default tenant_max_requests 1000 / php-cgi by hand" \
            $PORT /hello.php $((PORT + 1)) /hello.php -
        recycled=$(grep -c 'recycling runner' $WORK/logs/error.log || true)
        standbys=$(grep -c 'standby runner' $WORK/logs/error.log || true)
        stop_nginx
    fi
    for pid in "${HAND_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    HAND_PIDS=()
fi

# --- 4. spawn latency ---------------------------------------------------------
SPAWN_ROWS=()
if has_case spawn; then
    write_conf "tenant_max_requests 1; tenant_max_runners_per_owner 2;"
    start_nginx
    for path in /hello.php /hello.rb /hello.cgi; do
        expect_hello $PORT $path
        for _ in $(seq "$SPAWNS"); do
            curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$PORT$path"
        done > $WORK/spawn-times
        bad=$(awk '$1 != 200' $WORK/spawn-times | wc -l)
        ((bad == 0)) || die "$bad of the spawn requests to $path failed"
        p50=$(awk '{ print $2 * 1000 }' $WORK/spawn-times | percentile 50)
        p99=$(awk '{ print $2 * 1000 }' $WORK/spawn-times | percentile 99)
        target="" verdict=""
        if [[ $path == /hello.php ]]; then
            target="p99 <= 50 ms"
            verdict=$(awk -v x="$p99" 'BEGIN { print (x <= 50) ? "**MET**" : "**NOT MET**" }')
        fi
        SPAWN_ROWS+=("| ${path#/hello} runner, $SPAWNS requests, each on a new runner | $(printf %.1f "$p50") ms | $(printf %.1f "$p99") ms | $target | $verdict |")
    done
    spawned=$(grep -c 'runner pid .* started' $WORK/logs/error.log || true)
    stop_nginx
    for _ in $(seq $((SPAWNS / 2))); do
        t0=$EPOCHREALTIME
        php-cgi -v >/dev/null
        t1=$EPOCHREALTIME
        echo "$t0 $t1"
    done > $WORK/php-start-times
    p50=$(awk '{ print ($2 - $1) * 1000 }' $WORK/php-start-times | percentile 50)
    p99=$(awk '{ print ($2 - $1) * 1000 }' $WORK/php-start-times | percentile 99)
    SPAWN_ROWS+=("| for comparison: \`php-cgi -v\` alone (start and exit, no request), $((SPAWNS / 2)) runs | $(printf %.1f "$p50") ms | $(printf %.1f "$p99") ms | | |")
fi

# --- 5. density -------------------------------------------------------------------
DENSITY_LINES=()
if has_case density; then
    note "creating $OWNERS users ${DENSITY_PREFIX}0001.. and their sites"
    mkdir -p $WORK/dsites
    chmod 0755 $WORK/dsites
    for i in $(seq -f '%04g' 1 "$OWNERS"); do
        u=$DENSITY_PREFIX$i
        if ! id -u "$u" >/dev/null 2>&1; then
            useradd -M -U -K UID_MIN=3000 -K GID_MIN=3000 -s /usr/sbin/nologin -d /nonexistent "$u" ||
                die "useradd $u failed"
        fi
        DENSITY_USERS+=("$u")
        d=$WORK/dsites/$u/htdocs
        mkdir -p $d
        chmod 0755 $WORK/dsites/$u
        echo '<?php echo "Hello, world\n";' > $d/hello.php
        chown -R "$u:$u" $d
        chmod 0711 $d
        chmod 0600 $d/hello.php
    done
    write_conf "tenant_max_runners $DENSITY_CAP;"
    start_nginx
    printf '%s\n' "${DENSITY_USERS[@]}" > $WORK/density-owners
    python3 "$ROOT/bench/tenants-density.py" --port $((PORT + 2)) --owners $WORK/density-owners \
        --clients "$DENSITY_CLIENTS" --cap "$DENSITY_CAP" --run-dir $WORK/run > $WORK/density.md ||
        die "density: $(cat $WORK/density.md)"
    mapfile -t DENSITY_LINES < $WORK/density.md
    stop_nginx
fi

{
    echo "Tenant runners, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(php-cgi -v | head -1 | cut -d' ' -f1-2)"
    echo
    if ((${#ROWS[@]})); then
        echo "wrk -t1 -c1, ${DURATION}s per run, $PAIRS interleaved pairs, 1 worker; req/s are medians, ratio = median of the pair ratios (spread: min-max)"
        echo
        echo "| case (a / b) | a req/s | b req/s | ratio | spread | target | |"
        echo "|---|---:|---:|---:|---|---|---|"
        printf '%s\n' "${ROWS[@]}"
        echo
        if ((${#CPU_ROWS[@]})); then
            echo "Server-side CPU time per request (nginx worker + PHP process, + supervisor and keeper for the runner), $CPU_REQUESTS keep-alive requests per run, $CPU_PAIRS interleaved pairs; ratio = b / a (above 1: the runner costs less)"
            echo
            echo "| case (a / b) | a CPU/request | b CPU/request | ratio | spread |"
            echo "|---|---:|---:|---:|---|"
            printf '%s\n' "${CPU_ROWS[@]}"
            echo
        fi
        [[ -n ${recycled:-} ]] && echo "With the default tenant_max_requests: $recycled recycles during those runs, $standbys standby runners started ahead." && echo
    fi
    if ((${#SPAWN_ROWS[@]})); then
        echo "| spawn (first request of an owner) | p50 | p99 | target | |"
        echo "|---|---:|---:|---|---|"
        printf '%s\n' "${SPAWN_ROWS[@]}"
        echo
    fi
    if ((${#DENSITY_LINES[@]})); then
        printf '%s\n' "${DENSITY_LINES[@]}"
    fi
} | tee "$OUT/tenants.md"
