#!/usr/bin/env bash
# Resource classes (issue 10) measured on this machine's cgroups (needs
# root: a real tenant user, runners, the cgroup hierarchy). Every figure is
# measured against a baseline in the same run.
#
#   bench/resources.sh
#   REPS=40 SIZES=1,2,4,6,10,20 LOAD_SECONDS=10 LOAD_MS=10 bench/resources.sh
#   CASES="share load instr" bench/resources.sh   (a subset)
#
# 1. share (the thesis' figure 6.5): a PHP script in the owner's runner
#    burns a given CPU time (getrusage: CPU time, not wall time) and
#    answers its CPU time and the wall time of the burn; share = CPU / wall.
#    Locations serve it in class `half` (cpu=50, the default period), in a
#    class `p<ms>` (cpu=50 cpu_period=<ms>ms) per period in PERIODS (default
#    "2 100": the shortest period at cpu=50 and the kernel's default), and without a class (the baseline:
#    about 100% on an idle CPU). For each size
#    in SIZES (ms), REPS rounds, each requesting the three in random order
#    after a random pause (a request starts at a random point of the CFS
#    period). Target (cpu=50): the median share within 45-55% from 2 ms up.
#    Plot: bench/results/resources-share.png (python3-matplotlib, installed
#    here with apt-get when missing; not part of `make setup`).
# 2. load: the per-request slowdown at concurrency 10: LOAD_SECONDS of 10
#    clients sending LOAD_MS-ms burns to the class `half`, then to no class
#    (same run, same nginx), and a mixed run of 5 + 5 at once. The 10
#    limited requests share the class's half core; the unlimited ones the
#    two CPUs, so about 4x is what the caps say.
# 3. instr: callgrind instructions per request in the nginx worker for a
#    PHP hello request WITHOUT a class, in a configuration with resource
#    directives (root, classes, resource_class_for elsewhere, checker)
#    against the same configuration without them (target at most +2%; the
#    thesis measured 1.8%). See bench/callgrind.sh. Callgrind counts user
#    space only; the worker's CPU time per request (kernel included) is
#    measured too, natively, in interleaved pairs.
#
# Writes bench/out/resources.md (the tables) next to printing them; the
# machine's load is recorded before and after each part (shares depend on
# it: run on a quiet machine).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=${NGINX:-$ROOT/build/sbin/nginx}
MODULE=${MODULE:-$ROOT/build/modules/ngx_http_mruby_module.so}
PORT=${PORT:-19970}
REPS=${REPS:-40}
SIZES=${SIZES:-1,2,4,6,10,20}
LOAD_SECONDS=${LOAD_SECONDS:-10}
LOAD_MS=${LOAD_MS:-10}
# periods (ms) measured next to the default one, each as a class
# `p<ms>` (cpu=50 cpu_period=<ms>ms) served under /p<ms>/
PERIODS=${PERIODS:-2 100}
CASES=${CASES:-share load instr}
OUT=${BENCH_OUT:-$ROOT/bench/out}
PNG=${PNG:-$ROOT/bench/results/resources-share.png}
# Debian's python3 (apt's python3-matplotlib is installed for it, not for
# another python3 that may come first in PATH)
PY=${PYTHON:-/usr/bin/python3}
WORK=/tmp/ngx-resources-bench
USER_NAME=ngxbench
CGROUP_ROOT=ngx-resources-bench

die() { echo "resources bench: $*" >&2; exit 1; }
note() { echo "[resources bench $(date +%H:%M:%S)] $*" >&2; }
[[ $(id -u) == 0 ]] || die "needs root (tenant users, runners, cgroups)"
for t in curl php-cgi useradd; do
    command -v $t >/dev/null || die "$t is not installed (make setup)"
done
[[ -x $NGINX && -f $MODULE ]] || die "run 'make build' first"
[[ -x $PY ]] || die "$PY is missing (set PYTHON)"
has_case() { [[ " $CASES " == *" $1 "* ]]; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if has_case share && ! $PY -c 'import matplotlib' 2>/dev/null; then
    note "installing python3-matplotlib for the plot"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >/dev/null ||
        note "could not install python3-matplotlib: no plot"
fi

id -u $USER_NAME >/dev/null 2>&1 ||
    useradd -M -U -K UID_MIN=2000 -K GID_MIN=2000 -s /usr/sbin/nologin -d /nonexistent $USER_NAME

cleanup() {
    [[ -f $WORK/logs/nginx.pid ]] && kill "$(cat $WORK/logs/nginx.pid)" 2>/dev/null || true
}
trap cleanup EXIT
rm -rf $WORK
mkdir -p $WORK/logs $WORK/site/htdocs "$OUT" "$(dirname "$PNG")"
chmod 0755 $WORK $WORK/site
SITE=$WORK/site/htdocs
# Burns ?ms= of CPU time (user + system, getrusage), then answers its CPU
# time and the wall time over the burn, in microseconds.
BURN='<?php
function cpu_us() {
    $r = getrusage();
    return $r["ru_utime.tv_sec"] * 1000000 + $r["ru_utime.tv_usec"] + $r["ru_stime.tv_sec"] * 1000000 + $r["ru_stime.tv_usec"];
}
$ms = (int)($_GET["ms"] ?? 1);
$w0 = hrtime(true);
$c0 = cpu_us();
$end = $c0 + $ms * 1000;
$n = 0;
do { for ($i = 0; $i < 100; $i++) { $n++; } } while (cpu_us() < $end);
$c1 = cpu_us();
$w1 = hrtime(true);
printf("cpu_us=%d wall_us=%d iter=%d\n", $c1 - $c0, intdiv($w1 - $w0, 1000), $n);
'
DIRS="half free"
for p in $PERIODS; do DIRS+=" p$p"; done
for dir in $DIRS; do
    mkdir -p $SITE/$dir
    echo "$BURN" > $SITE/$dir/burn.php
    echo '<?php echo "Hello, world\n";' > $SITE/$dir/hello.php
done
chown -R $USER_NAME:$USER_NAME $SITE
find $SITE -type d -exec chmod 0711 {} +
find $SITE -type f -exec chmod 0600 {} +

# $1: extra http lines (the resource directives, or none)
write_conf() {
    local php='
            tenant_runner on;
            fastcgi_pass unix:$tenant_socket;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param REDIRECT_STATUS 200;
            fastcgi_read_timeout 60s;'
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
    tenant_max_requests 0;
    tenant_max_runners 48;
    tenant_max_runners_per_owner 24;
    $1
    server {
        listen 127.0.0.1:$PORT;
        root $SITE;
        location = /probe {
            return 204;
        }
        location /half/ {
            ${2:-}$php
        }
CONF
    for p in $PERIODS; do
        printf '        location /p%s/ {\n            %s%s\n        }\n' "$p" "${3:+resource_class_for p$p;}" "$php" >> $WORK/nginx.conf
    done
    cat >> $WORK/nginx.conf <<CONF
        location /free/ {$php
        }
    }
}
CONF
}

CLASSES="resource_cgroup_root $CGROUP_ROOT;
    resource_class half cpu=50;"
for p in $PERIODS; do CLASSES+="
    resource_class p$p cpu=50 cpu_period=${p}ms;"; done

start_nginx() {
    rm -f $WORK/logs/error.log
    "$NGINX" -p $WORK/ -c nginx.conf || die "nginx did not start"
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/probe" && return; sleep 0.1; done
    die "nginx is not answering"
}

stop_nginx() {
    kill "$(cat $WORK/logs/nginx.pid)"
    for _ in $(seq 100); do [[ -f $WORK/logs/nginx.pid ]] || break; sleep 0.1; done
    sleep 0.5
}

check_errors() {
    if grep -E '\[(error|crit|alert|emerg)\]' $WORK/logs/error.log | head -5 >&2; then
        die "errors in $WORK/logs/error.log"
    fi
}

# CPU time (ns) of every process below $1 (not $1 itself), from schedstat.
tree_cpu_ns() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            for (p in parent) {
                q = parent[p]
                while (q != "" && q != root && q != 0 && q != 1) q = parent[q]
                if (q == root) print p
            }
        }' | while read -r pid; do
        cut -d' ' -f1 "/proc/$pid/schedstat" 2>/dev/null || true
    done | awk '{ s += $1 } END { printf "%d\n", s }'
}

REPORT=()
LOADS=()

# --- 1-2. share and load ------------------------------------------------------
if has_case share || has_case load; then
    write_conf "$CLASSES" "resource_class_for half;" on
    start_nginx
    # Warm up: start the runners the load part needs (and PHP's opcache).
    $PY "$ROOT/bench/resources-client.py" load $PORT 2 1 /free/burn.php:10 /half/burn.php:10 > /dev/null
    period=$(cat /sys/fs/cgroup/cpu/$CGROUP_ROOT/*/half/cpu.cfs_period_us 2>/dev/null ||
        find /sys/fs/cgroup/cpu* -path "*/$CGROUP_ROOT/*/half/cpu.cfs_period_us" -exec cat {} \; | head -1)
    quota=$(find /sys/fs/cgroup/cpu* -path "*/$CGROUP_ROOT/*/half/cpu.cfs_quota_us" -exec cat {} \; | head -1)
    note "class half: cfs_quota_us $quota per cfs_period_us $period"
    if has_case share; then
        LOADS+=("share: load average before $(loadavg)")
        note "share: $REPS rounds per size, sizes $SIZES ms"
        # shellcheck disable=SC2046 # one path per period
        $PY "$ROOT/bench/resources-client.py" share $PORT "$REPS" "$SIZES" \
            /half/burn.php $(printf '/p%s/burn.php ' $PERIODS) /free/burn.php | sed 's|burn\.php||' > "$OUT/resources-share.tsv"
        LOADS[-1]+=", after $(loadavg)"
        REPORT+=("### Share of a cpu=50 request (figure 6.5)" "" "$($PY "$ROOT/bench/resources-report.py" share "$OUT/resources-share.tsv" "$PNG")" "")
    fi
    if has_case load; then
        mkdir -p "$OUT/resources-load"
        LOADS+=("load: load average before $(loadavg)")
        note "load: ${LOAD_SECONDS}s at concurrency 10, $LOAD_MS ms burns: limited, unlimited, mixed"
        $PY "$ROOT/bench/resources-client.py" load $PORT "$LOAD_SECONDS" "$LOAD_MS" /half/burn.php:10 |
            sed 's|burn\.php||' > "$OUT/resources-load/c10-limited.tsv"
        $PY "$ROOT/bench/resources-client.py" load $PORT "$LOAD_SECONDS" "$LOAD_MS" /free/burn.php:10 |
            sed 's|burn\.php||' > "$OUT/resources-load/c10-unlimited.tsv"
        $PY "$ROOT/bench/resources-client.py" load $PORT "$LOAD_SECONDS" "$LOAD_MS" /half/burn.php:5 /free/burn.php:5 |
            sed 's|burn\.php||' > "$OUT/resources-load/mixed.tsv"
        LOADS[-1]+=", after $(loadavg)"
        REPORT+=("### Concurrency 10, $LOAD_MS ms requests, ${LOAD_SECONDS}s per run" "" "$($PY "$ROOT/bench/resources-report.py" load "$OUT"/resources-load/{c10-limited,c10-unlimited,mixed}.tsv)" "")
    fi
    check_errors
    stop_nginx
fi

# --- 3. instructions per unclassed request -----------------------------------------
if has_case instr; then
    # shellcheck source=bench/callgrind.sh
    source "$ROOT/bench/callgrind.sh"
    LOADS+=("instr: load average before $(loadavg)")
    INSTR_N1=${INSTR_N1:-200}
    INSTR_N2=${INSTR_N2:-1000}
    per=()
    for variant in without with; do
        if [[ $variant == with ]]; then
            write_conf "$CLASSES
    resource_checker cpu_user=1000 log=logs/heavy.log;" "resource_class_for half;" on
        else
            write_conf ""
        fi
        per+=("$(callgrind_worker_per_request "$WORK" /free/hello.php "$INSTR_N1" "$INSTR_N2" $'Hello, world\n' "$variant")")
        note "instr: $variant resource directives: ${per[-1]} instructions/request in the worker"
    done
    # Server-side CPU time per request (kernel included), natively: every
    # process under the master (worker, keeper, supervisor, runner),
    # from /proc/<pid>/schedstat (ns), CPU_REQUESTS keep-alive requests per
    # run, CPU_PAIRS interleaved pairs (each run its own nginx start).
    CPU_REQUESTS=${CPU_REQUESTS:-20000}
    CPU_PAIRS=${CPU_PAIRS:-5}
    cpu_run() { # $1 = without|with: prints ns per request
        local master before after
        if [[ $1 == with ]]; then
            write_conf "$CLASSES
    resource_checker cpu_user=1000 log=logs/heavy.log;" "resource_class_for half;" on
        else
            write_conf ""
        fi
        start_nginx
        master=$(cat $WORK/logs/nginx.pid)
        $PY "$ROOT/bench/kaclient.py" $PORT /free/hello.php 200 $'Hello, world\n' || die "client failed"
        before=$(tree_cpu_ns "$master")
        $PY "$ROOT/bench/kaclient.py" $PORT /free/hello.php "$CPU_REQUESTS" $'Hello, world\n' || die "client failed"
        after=$(tree_cpu_ns "$master")
        check_errors
        stop_nginx
        echo $(((after - before) / CPU_REQUESTS))
    }
    cw=() cr=() cratios=()
    for i in $(seq "$CPU_PAIRS"); do
        if ((i % 2)); then a=$(cpu_run without); b=$(cpu_run with); else b=$(cpu_run with); a=$(cpu_run without); fi
        cw+=("$a") cr+=("$b")
        cratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')")
        note "CPU per request: pair $i: without $a ns, with $b ns"
    done
    LOADS[-1]+=", after $(loadavg)"
    median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    cpu_without=$(printf '%s\n' "${cw[@]}" | median)
    cpu_with=$(printf '%s\n' "${cr[@]}" | median)
    cpu_ratio=$(printf '%s\n' "${cratios[@]}" | median)
    cpu_spread="$(printf '%s\n' "${cratios[@]}" | sort -g | head -1)-$(printf '%s\n' "${cratios[@]}" | sort -g | tail -1)"
    ratio=$(awk -v a="${per[1]}" -v b="${per[0]}" 'BEGIN { printf "%.3f", a / b }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (sprintf("%.2f", r) + 0 <= 1.02) ? "**MET**" : "**NOT MET**" }')
    REPORT+=("### Instructions per request without a class (the nginx worker, callgrind)" ""
        "| configuration | instr/req | ratio | target | |" "|---|---:|---:|---|---|"
        "| no resource directive | ${per[0]} | 1.00x | | |"
        "| resource_cgroup_root, two classes, resource_class_for in other locations, resource_checker | ${per[1]} | ${ratio}x | <= 1.02x | $verdict |" ""
        "Server-side CPU time per request, kernel included (worker + keeper + supervisor + PHP runner, /proc/<pid>/schedstat), $CPU_REQUESTS keep-alive requests per run, $CPU_PAIRS interleaved pairs: without $((cpu_without / 1000)) us, with $((cpu_with / 1000)) us: **${cpu_ratio}x** (pairs $cpu_spread)" "")
fi

{
    echo "Resource classes, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r) (CONFIG_HZ=$(zcat /proc/config.gz 2>/dev/null | sed -n 's/^CONFIG_HZ=//p')), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(php-cgi -v | head -1 | cut -d' ' -f1-2)"
    echo
    printf -- '- %s\n' "${LOADS[@]}"
    echo
    printf '%s\n' "${REPORT[@]}"
} | tee "$OUT/resources.md"
