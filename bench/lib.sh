# Shared helpers for the bench/ scripts. Sourced, not executed.
#
# Provides: paths (ROOT, NGINX, MODULE, OUT), die/log, free_port,
# write_conf, start_nginx/stop_nginx with a cleanup trap, and the case
# table (CASES, case_path, case_label, case_target).

set -euo pipefail
shopt -s inherit_errexit

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
NGINX=$ROOT/build/sbin/nginx
MODULE=$ROOT/build/modules/ngx_http_mruby_module.so
OUT=${BENCH_OUT:-$BENCH_DIR/out}
# First port tried by each stage: instr BASE, rps BASE+100, rss BASE+200
# (t/005-demo-conf.t takes 18180-18379, Test::Nginx 1984 and up).
PORT_BASE=${BENCH_PORT_BASE:-18500}
PYTHON=${PYTHON:-python3}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

require_build() {
    [[ -x $NGINX ]] || die "$NGINX is missing: run 'make build' first"
    [[ -f $MODULE ]] || die "$MODULE is missing: run 'make build' first"
}

require_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "'$t' is not installed (make setup installs it)"
    done
}

# The cases, in report order. 'stock' is location (e) in an nginx without
# load_module (same binary, same locations, each a plain return 200): it
# shows what loading the module costs a location that does not use it.
# All paths are 9 bytes long, like /baseline: request parsing costs
# instructions per byte, and a shorter path would look cheaper.
CASES=(baseline a b c d e stock)

case_path() {
    case $1 in
        baseline) echo /baseline ;;
        a) echo /a-inline ;;
        b) echo /b-cached ;;
        c) echo /c-script ;;
        d) echo /d-access ;;
        e) echo /e-return ;;
        stock) echo /e-return ;;
        *) die "unknown case $1" ;;
    esac
}

case_label() {
    case $1 in
        baseline) echo 'baseline: return 200 (same nginx)' ;;
        a) echo '(a) inline content handler (cached)' ;;
        b) echo '(b) file script, cache' ;;
        c) echo '(c) file script, no cache' ;;
        d) echo '(d) access + content handler' ;;
        e) echo '(e) return 200 next to mruby locations' ;;
        stock) echo 'stock: return 200, module not loaded' ;;
    esac
}

# Maximum instructions-per-request ratio against the baseline; '-' = none.
case_target() {
    case $1 in
        a | b) echo 1.15 ;;
        c) echo 1.25 ;;
        d) echo 1.35 ;;
        e) echo 1.00 ;;
        *) echo - ;;
    esac
}

# Which config a case runs in: the mruby one or the stock one.
case_conf() {
    if [[ $1 == stock ]]; then echo stock; else echo mruby; fi
}

# free_port START: first port >= START nobody listens on or is bound to.
free_port() {
    "$PYTHON" - "$1" <<'PY'
import socket, sys
start = int(sys.argv[1])
for port in range(start, start + 500):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit("no free port from %d" % start)
PY
}

# write_conf PREFIX PORT KIND MASTER
#   KIND: mruby (module loaded, all cases) or stock (no module; the same
#   locations, all plain return 200)
#   MASTER: on (master + 1 worker, for wrk/RSS) or off (single process, for valgrind)
write_conf() {
    local prefix=$1 port=$2 kind=$3 master=$4
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"
    printf 'Nginx.rputs "Hello World\\n"\n' >"$prefix/hello.rb"
    # 64 KB body for the filter case (bench/http-compat.sh)
    head -c 65536 /dev/zero | tr '\0' 'a' >"$prefix/big.txt"
    {
        if [[ $kind == mruby ]]; then
            echo "load_module $MODULE;"
        fi
        cat <<CONF
daemon off;
master_process $master;
worker_processes 1;
error_log $prefix/logs/error.log warn;
pid $prefix/logs/nginx.pid;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $prefix/tmp/client_body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    default_type text/plain;
    # Measure requests, not reconnects (wrk keeps its 50 connections).
    keepalive_requests 100000000;
    keepalive_timeout 300s;

    server {
        listen 127.0.0.1:$port backlog=1024;
        server_name localhost;

        location = /baseline {
            return 200 "Hello World\n";
        }
CONF
        if [[ $kind == mruby ]]; then
            cat <<CONF

        location = /a-inline {
            mruby_content_handler_code 'Nginx.rputs "Hello World\n"';
        }

        location = /b-cached {
            mruby_content_handler $prefix/hello.rb cache;
        }

        location = /c-script {
            mruby_content_handler $prefix/hello.rb;
        }

        location = /d-access {
            mruby_access_handler_code 'Nginx.return Nginx::DECLINED if false';
            mruby_content_handler_code 'Nginx.rputs "Hello World\n"';
        }

        # bench/http-compat.sh: a body filter over 64 KB, and a fan-out of
        # four subrequests, each against the same response without Ruby
        location = /f-filter {
            alias $prefix/big.txt;
            mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body.upcase';
        }
        location = /f-static {
            alias $prefix/big.txt;
        }
        location = /f-passth {
            alias $prefix/big.txt;
            mruby_output_body_filter_code 'f = Nginx::Filter.new; f.body = f.body';
        }
        location = /g-fanout {
            mruby_content_handler_code 'Nginx.rputs((1..4).map { Nginx::Async::HTTP.sub_request("/sub-part").body }.join)';
        }
        location = /g-ssi-4x {
            ssi on;
            ssi_types text/plain;
            return 200 '<!--# include virtual="/sub-part" --><!--# include virtual="/sub-part" --><!--# include virtual="/sub-part" --><!--# include virtual="/sub-part" -->';
        }
        location = /sub-part {
            return 200 "part\n";
        }
CONF
        else
            # The same locations without Ruby, so the location tree is the same.
            local p
            for p in /a-inline /b-cached /c-script /d-access; do
                printf '\n        location = %s {\n            return 200 "Hello World\\n";\n        }\n' "$p"
            done
        fi
        cat <<CONF

        location = /e-return {
            return 200 "Hello World\n";
        }
CONF
        cat <<CONF
    }
}
CONF
    } >"$prefix/conf/nginx.conf"
}

# Processes started by these scripts; killed on exit.
BENCH_PIDS=()

cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${BENCH_PIDS[@]}"; do
        local i
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local pid=$1 kept=() p
    for p in "${BENCH_PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    BENCH_PIDS=("${kept[@]+"${kept[@]}"}")
}

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
# Opens one connection (use only where that does not matter).
wait_port() {
    "$PYTHON" - "$1" "$2" <<'PY'
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + limit
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("nothing listens on port %d after %ss" % (port, limit))
PY
}

# stop_pid PID SIGNAL SECONDS: signal and wait for exit (KILL after SECONDS).
stop_pid() {
    local pid=$1 sig=$2 secs=$3 i
    kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not exit after SIG$sig in ${secs}s; killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# check_log FILE: dies on [emerg]/[alert]/[crit], and on [error] lines of
# requests for the bench's own locations. Other [error] lines (requests
# from some other program that found our port) are only reported.
check_log() {
    local file=$1 bad foreign
    bad=$(grep -E '\[(emerg|alert|crit)\]|\[error\].*request: "[A-Z]+ /(baseline|a-inline|b-cached|c-script|d-access|e-return)[ ?]' "$file" || true)
    [[ -z $bad ]] || die "errors in $file: $(head -n3 <<<"$bad")"
    foreign=$(grep -c '\[error\]' "$file" || true)
    if (( foreign > 0 )); then
        log "warning: $file has $foreign [error] lines for requests that are not the bench's (another program on our port?)"
    fi
}

# worker_pid MASTER_PID: the (single) worker's pid.
worker_pid() {
    local i w
    for i in $(seq 100); do
        w=$(pgrep -P "$1" | head -n1 || true)
        if [[ -n $w ]]; then echo "$w"; return 0; fi
        sleep 0.1
    done
    die "no worker under nginx master $1"
}

# set_pinning: with 2+ CPUs (and BENCH_PIN not 0), nginx runs on CPU 0 and
# wrk on CPU 1, so they do not compete; sets NGX_PIN and WRK_PIN (prefixes).
set_pinning() {
    NGX_PIN=()
    WRK_PIN=()
    if [[ ${BENCH_PIN:-1} == 1 ]] && command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
        NGX_PIN=(taskset -c 0)
        WRK_PIN=(taskset -c 1)
    fi
}
