# Callgrind helpers shared by bench/instr.sh, bench/symbols.sh and
# bench/resources.sh. Sourced, not executed; needs valgrind.
#
# The method everywhere: run nginx under `valgrind --tool=callgrind` twice,
# serving N1 and then N2 requests over one keep-alive connection
# (bench/kaclient.py), and take (total(N2) - total(N1)) / (N2 - N1):
# startup, configuration, the connection and shutdown cancel.

CALLGRIND_BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# callgrind_nginx OUT_FILE PREFIX CONF LOG_FILE [nginx args...]: starts
# nginx under callgrind in the background; sets LAUNCHED to its pid (and
# adds it to BENCH_PIDS when lib.sh is loaded). OUT_FILE may contain %p
# (one file per process: the worker of a master_process nginx).
callgrind_nginx() {
    local out=$1 prefix=$2 conf=$3 log_file=$4
    shift 4
    valgrind --tool=callgrind --callgrind-out-file="$out" --log-file="$log_file" \
        "$NGINX" -p "$prefix/" -c "$conf" "$@" >"$log_file.stdout" 2>&1 </dev/null &
    LAUNCHED=$!
    if declare -p BENCH_PIDS >/dev/null 2>&1; then
        BENCH_PIDS+=("$LAUNCHED")
    fi
}

# callgrind_total FILE: instructions of the whole run of one process.
callgrind_total() {
    local f=$1 v
    [[ -s $f ]] || { echo "no callgrind output in $f" >&2; return 1; }
    v=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
    [[ -n $v ]] || { echo "no totals in $f" >&2; return 1; }
    echo "$v"
}

# callgrind_per_request TOTAL1 TOTAL2 N1 N2: instructions per request.
callgrind_per_request() {
    awk -v a="$1" -v b="$2" -v n1="$3" -v n2="$4" 'BEGIN { printf "%.0f\n", (b - a) / (n2 - n1) }'
}

# callgrind_worker_per_request PREFIX PATH N1 N2 BODY [NAME]: instructions per
# request in the worker of a master_process nginx (PREFIX/nginx.conf,
# listening on $PORT; needed where the master must run, e.g. tenant
# runners, whose supervisor is exec'd by the master and so runs natively:
# valgrind follows forks, not execs). Two runs, one after the other,
# N1 and N2 requests to PATH, each answered with BODY. The worker may run
# as another user: the output directory (PREFIX/callgrind-NAME-N) is
# world-writable.
callgrind_worker_per_request() {
    local prefix=$1 path=$2 n1=$3 n2=$4 body=$5 name=${6:-run} n totals=() dir master worker f t
    for n in "$n1" "$n2"; do
        dir=$prefix/callgrind-$name-$n
        rm -rf "$dir"
        mkdir -p "$dir"
        chmod 1777 "$dir"
        callgrind_nginx "$dir/callgrind.%p.out" "$prefix" "$prefix/nginx.conf" "$dir/valgrind.log" -g 'daemon off;'
        master=$LAUNCHED
        BENCH_WATCH_PID=$master "${PY:-python3}" "$CALLGRIND_BENCH_DIR/kaclient.py" "$PORT" "$path" "$n" "$body" >&2 ||
            { kill "$master"; echo "callgrind: client failed, see $prefix/logs/error.log" >&2; return 1; }
        sleep 0.5
        kill -QUIT "$master"
        wait "$master" || true
        # the worker is the busiest process that is not the master (a child
        # forked to exec the supervisor may leave a small file too)
        worker=0
        for f in "$dir"/callgrind.*.out; do
            [[ $f == */callgrind.$master.out ]] && continue
            t=$(callgrind_total "$f") || continue
            ((t > worker)) && worker=$t
        done
        ((worker > 0)) || { echo "callgrind: no worker output in $dir" >&2; return 1; }
        totals+=("$worker")
    done
    callgrind_per_request "${totals[0]}" "${totals[1]}" "$n1" "$n2"
}
