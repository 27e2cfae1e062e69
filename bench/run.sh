#!/usr/bin/env bash
# Benchmark postern's public gate against nginx as a reverse proxy.
#
# Starts an nginx upstream, nginx as a reverse proxy to it, and postern with
# one app routed to it, all on 127.0.0.1. Then it runs wrk (HTTP/1.1
# keep-alive) against the upstream directly, through nginx and through
# postern, and measures postern's peak RSS while many idle keep-alive
# connections to it stay open. Writes a markdown report to stdout and to
# bench/results/latest.md, and stops every process it started, also on failure.
#
# Usage: bench/run.sh
# Settings come from the environment variables below, which show the defaults.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# nginx is in /usr/sbin, which is not on every user's PATH.
PATH=$PATH:/usr/sbin:/sbin
REPO_DIR=$(dirname -- "$BENCH_DIR")

POSTERN_BIN=${POSTERN_BIN:-$REPO_DIR/target/release/postern}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_SECONDS=${WRK_SECONDS:-15}
WARMUP_SECONDS=${WARMUP_SECONDS:-3}
ROUNDS=${ROUNDS:-3}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_HOLD_SECONDS=${IDLE_HOLD_SECONDS:-5}
# Written to limits.max_connections in postern's config. It must exceed
# IDLE_CONNECTIONS, so that the limit does not reject idle connections, and
# stay 64 below the open-file limit, or postern logs a warning at startup.
MAX_CONNECTIONS=${MAX_CONNECTIONS:-$((IDLE_CONNECTIONS + 2000))}
# nginx worker processes. The default, one per CPU, is tokio's default number
# of worker threads. The report lists the threads postern actually started.
WORKER_PROCESSES=${WORKER_PROCESSES:-$(nproc)}
RESULTS_FILE=${RESULTS_FILE:-$BENCH_DIR/results/latest.md}
KEEP_WORK_DIR=${KEEP_WORK_DIR:-0}

# A machine token used only by this benchmark.
TOKEN=pst_bench_only_token_0001
HOST_HEADER=bench.bench.test
TARGETS=(upstream nginx postern)

WORK_DIR=""
STARTED_PIDS=()
COMMANDS=()
WARNINGS=()
CONFIG_NOTES=()
declare -A TARGET_PORT=()
declare -A NGINX_MASTER_PID=()

log() {
    printf '[bench] %s\n' "$*" >&2
}

die() {
    printf '[bench] error: %s\n' "$*" >&2
    exit 1
}

# Append a command to the report's command list, quoted so it can be pasted.
record_command() {
    local quoted
    quoted=$(printf '%q ' "$@")
    COMMANDS+=("${quoted% }")
}

# ---------------------------------------------------------------- setup

install_missing_tools() {
    local -a missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v ss >/dev/null || missing+=(iproute2)
    command -v pgrep >/dev/null || missing+=(procps)
    ((${#missing[@]} == 0)) && return

    [[ $EUID -eq 0 ]] || die "missing packages: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}"
    log "installing ${missing[*]} with apt-get"
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
}

# Raise the open-file limit so that postern can keep MAX_CONNECTIONS client
# connections open, and the idle-connection client IDLE_CONNECTIONS.
raise_open_file_limit() {
    local needed=$((MAX_CONNECTIONS + 1024))
    if (($(ulimit -Sn) < needed)); then
        if (($(ulimit -Hn) < needed)) && [[ $EUID -eq 0 ]]; then
            ulimit -Hn "$needed"
        fi
        ulimit -Sn "$needed" || die "cannot raise the open-file limit to $needed (hard limit $(ulimit -Hn))"
    fi
}

create_work_dir() {
    WORK_DIR=$(mktemp -d /tmp/postern-bench.XXXXXX)
    # nginx runs as the user nobody when this script runs as root, so it must be able
    # to enter this directory. The postern subdirectory stays private.
    chmod 755 "$WORK_DIR"
    mkdir -m 700 "$WORK_DIR/postern"
    mkdir "$WORK_DIR/nginx-upstream" "$WORK_DIR/nginx-proxy"
    if [[ $EUID -eq 0 ]]; then
        chown nobody:nogroup "$WORK_DIR/nginx-upstream" "$WORK_DIR/nginx-proxy"
    fi
}

# Print COUNT free TCP ports on 127.0.0.1, one per line. The sockets stay
# bound until all ports are chosen, so the ports differ from each other.
pick_free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
for s in sockets:
    print(s.getsockname()[1])
EOF
}

# Copy TEMPLATE to OUTPUT with each @NAME@ replaced by the value of a NAME=VALUE argument.
render_template() {
    local template=$1 output=$2
    shift 2
    local -a sed_args=()
    local pair
    for pair in "$@"; do
        sed_args+=(-e "s|@${pair%%=*}@|${pair#*=}|g")
    done
    sed "${sed_args[@]}" "$template" >"$output"
    if grep -q '@[A-Z_]*@' "$output"; then
        die "placeholders left in $output: $(grep -o '@[A-Z_]*@' "$output" | sort -u | tr '\n' ' ')"
    fi
}

# ---------------------------------------------------------------- processes

# Stop a process started by this script: SIGTERM, then SIGKILL after 5 s.
stop_process() {
    local pid=$1 tries
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((tries = 0; tries < 50; tries++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true

    local -a remaining=()
    local started
    for started in "${STARTED_PIDS[@]}"; do
        [[ $started == "$pid" ]] || remaining+=("$started")
    done
    STARTED_PIDS=("${remaining[@]}")
}

cleanup() {
    local exit_status=$?
    local index
    for ((index = ${#STARTED_PIDS[@]} - 1; index >= 0; index--)); do
        stop_process "${STARTED_PIDS[index]}"
    done

    if ((exit_status != 0)) && [[ -n $WORK_DIR ]]; then
        local log_file
        for log_file in "$WORK_DIR"/nginx-*/error.log "$WORK_DIR"/postern/*.stderr.log; do
            [[ -s $log_file ]] || continue
            log "last lines of $log_file:"
            tail -n 20 "$log_file" >&2
        done
    fi
    if [[ -n $WORK_DIR ]]; then
        if [[ $KEEP_WORK_DIR == 1 ]]; then
            log "kept $WORK_DIR"
        else
            rm -rf "$WORK_DIR"
        fi
    fi
}

# Poll URL until it returns EXPECTED_STATUS. Fails when PID exits or after TIMEOUT seconds.
wait_for_http() {
    local url=$1 expected_status=$2 timeout_seconds=$3 pid=$4 name=$5
    local deadline=$((SECONDS + timeout_seconds)) status
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) exited before $url was ready"
        status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ $status == "$expected_status" ]] && return 0
        sleep 0.2
    done
    die "$name did not return $expected_status on $url within ${timeout_seconds}s (last status: $status)"
}

# Start nginx from TEMPLATE in WORK_DIR/NAME, listening on PORT, and wait
# until GET / returns READY_STATUS. Extra NAME=VALUE arguments fill more
# placeholders of the template.
start_nginx() {
    local name=$1 template=$2 port=$3 ready_status=$4
    shift 4
    local prefix=$WORK_DIR/$name
    render_template "$template" "$prefix/nginx.conf" \
        PREFIX="$prefix" LISTEN_PORT="$port" WORKER_PROCESSES="$WORKER_PROCESSES" "$@"

    local -a command=(nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g 'daemon off;')
    # Run the master unprivileged: as the user nobody when this script runs as root,
    # otherwise as the current user.
    if [[ $EUID -eq 0 ]]; then
        command=(setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs "${command[@]}")
    fi
    record_command "${command[@]}"
    "${command[@]}" &
    local pid=$!
    STARTED_PIDS+=("$pid")
    NGINX_MASTER_PID[$name]=$pid
    wait_for_http "http://127.0.0.1:$port/" "$ready_status" 15 "$pid" "$name"
    log "$name is listening on 127.0.0.1:$port (pid $pid)"
}

write_postern_config() {
    local config_dir=$WORK_DIR/postern
    POSTERN_CONFIG=$config_dir/vars.yaml
    local token_sha256
    token_sha256=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)

    render_template "$BENCH_DIR/postern-vars.yaml.in" "$POSTERN_CONFIG" \
        PUBLIC_PORT="${TARGET_PORT[postern]}" ADMIN_PORT="$ADMIN_PORT" \
        UPSTREAM_PORT="${TARGET_PORT[upstream]}" TOKEN_SHA256="$token_sha256" \
        MAX_CONNECTIONS="$MAX_CONNECTIONS"
    printf 'endpoints: []\n' >"$config_dir/endpoints.yaml"
}

# Run `postern check` on the config. When it rejects only the limits block,
# drop the block, note that in the report and check again.
check_postern_config() {
    local output
    record_command "$POSTERN_BIN" check "$POSTERN_CONFIG"
    if output=$("$POSTERN_BIN" check "$POSTERN_CONFIG" 2>&1); then
        return 0
    fi
    if grep -q 'limits' <<<"$output"; then
        CONFIG_NOTES+=("postern check rejected the limits block, so the benchmark ran without limits.max_connections. postern printed: $(tr '\n' ' ' <<<"$output")")
        sed -i '/^limits:$/,/^$/d' "$POSTERN_CONFIG"
        output=$("$POSTERN_BIN" check "$POSTERN_CONFIG" 2>&1) \
            || die "postern check rejected $POSTERN_CONFIG:"$'\n'"$output"
        return 0
    fi
    log "generated config $POSTERN_CONFIG:"
    cat -n "$POSTERN_CONFIG" >&2
    die "postern check rejected $POSTERN_CONFIG:"$'\n'"$output"
}

# Start postern with the benchmark config. LABEL names its log files:
# the access log (stdout) and the diagnostic log (stderr).
start_postern() {
    local label=$1
    POSTERN_ACCESS_LOG=$WORK_DIR/postern/$label.access.log
    POSTERN_STDERR_LOG=$WORK_DIR/postern/$label.stderr.log
    record_command "$POSTERN_BIN" serve --config "$POSTERN_CONFIG"
    # Append mode, so that truncating the access log between runs works
    # while postern keeps writing to it.
    "$POSTERN_BIN" serve --config "$POSTERN_CONFIG" >>"$POSTERN_ACCESS_LOG" 2>>"$POSTERN_STDERR_LOG" &
    POSTERN_PID=$!
    STARTED_PIDS+=("$POSTERN_PID")
    wait_for_http "http://127.0.0.1:$ADMIN_PORT/readyz" 200 30 "$POSTERN_PID" postern
    log "postern ($label) is ready on 127.0.0.1:${TARGET_PORT[postern]}, admin 127.0.0.1:$ADMIN_PORT (pid $POSTERN_PID)"
}

# ---------------------------------------------------------------- checks

# Check that URL returns EXPECTED_STATUS (and body "ok" for 200) with the given curl arguments.
expect_response() {
    local description=$1 expected_status=$2 url=$3
    shift 3
    local body_file=$WORK_DIR/curl-body status
    status=$(curl -sS -o "$body_file" -w '%{http_code}' --max-time 5 -H "Host: $HOST_HEADER" "$@" "$url")
    [[ $status == "$expected_status" ]] \
        || die "$description: expected status $expected_status, got $status, body: $(head -c 300 "$body_file")"
    if [[ $expected_status == 200 && $(cat "$body_file") != ok ]]; then
        die "$description: expected body \"ok\", got: $(head -c 300 "$body_file")"
    fi
    log "$description: $status"
}

check_targets_respond() {
    local auth=(-H "Authorization: Bearer $TOKEN")
    expect_response "upstream, direct" 200 "http://127.0.0.1:${TARGET_PORT[upstream]}/" "${auth[@]}"
    expect_response "nginx proxy with token" 200 "http://127.0.0.1:${TARGET_PORT[nginx]}/" "${auth[@]}"
    expect_response "nginx proxy without token" 401 "http://127.0.0.1:${TARGET_PORT[nginx]}/"
    expect_response "postern with token" 200 "http://127.0.0.1:${TARGET_PORT[postern]}/" "${auth[@]}"
    expect_response "postern without token" 401 "http://127.0.0.1:${TARGET_PORT[postern]}/"
    expect_response "postern with wrong token" 401 "http://127.0.0.1:${TARGET_PORT[postern]}/" \
        -H "Authorization: Bearer wrong_token"
}

# ---------------------------------------------------------------- wrk

# Print the access log of TARGET, or nothing for the upstream, which logs nothing.
access_log_of() {
    case $1 in
        nginx) echo "$WORK_DIR/nginx-proxy/access.log" ;;
        postern) echo "$POSTERN_ACCESS_LOG" ;;
    esac
}

# Print the CPU time in milliseconds (user plus system) that the processes
# serving TARGET have used so far: the nginx master and its workers, or postern.
cpu_ms_of() {
    local -a pids
    case $1 in
        upstream) pids=("${NGINX_MASTER_PID[nginx-upstream]}") ;;
        nginx) pids=("${NGINX_MASTER_PID[nginx-proxy]}") ;;
        postern) pids=("$POSTERN_PID") ;;
    esac
    if [[ $1 != postern ]]; then
        mapfile -t -O 1 pids < <(pgrep -P "${pids[0]}")
    fi

    local pid stat ticks=0
    local -a fields
    for pid in "${pids[@]}"; do
        stat=$(cat "/proc/$pid/stat")
        # The fields after the command name, which may contain spaces, start
        # with the state (field 3), so utime (field 14) is at index 11.
        read -r -a fields <<<"${stat##*) }"
        ticks=$((ticks + fields[11] + fields[12]))
    done
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}

# Print two numbers in milliseconds, summed over all CPUs: the busy (not idle)
# CPU time of the whole machine since boot, and the total CPU time.
# Interrupt time counts as busy because the kernel's tick-based CPU accounting
# also charges it to the process that was running, so the per-process times
# include it. NOTE: with CONFIG_IRQ_TIME_ACCOUNTING the kernel does not charge
# it to processes, and the share of other processes comes out too high.
system_cpu_ms() {
    local label user nice system idle iowait irq softirq steal rest
    read -r label user nice system idle iowait irq softirq steal rest </proc/stat
    local busy=$((user + nice + system + irq + softirq + steal))
    local ms_per_tick=$((1000 / $(getconf CLK_TCK)))
    echo $((busy * ms_per_tick)) $(((busy + idle + iowait) * ms_per_tick))
}

# Print the CPU time in milliseconds of this shell's children that have
# exited and been waited for, such as wrk (cutime and cstime).
finished_children_cpu_ms() {
    local stat
    local -a fields
    stat=$(cat "/proc/$$/stat")
    read -r -a fields <<<"${stat##*) }"
    echo $(((fields[13] + fields[14]) * 1000 / $(getconf CLK_TCK)))
}

# Run wrk against TARGET for SECONDS. ROUND is a round number, or "warmup"
# for a run that is not recorded. Appends one row to WORK_DIR/runs.tsv.
run_wrk() {
    local target=$1 seconds=$2 round=$3
    local output_file=$WORK_DIR/wrk-$target-$round.txt
    local -a command=(wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${seconds}s" --latency
        -s "$BENCH_DIR/wrk-report.lua"
        -H "Host: $HOST_HEADER" -H "Authorization: Bearer $TOKEN"
        "http://127.0.0.1:${TARGET_PORT[$target]}/")
    [[ $round == 1 ]] && record_command "${command[@]}"

    log "wrk $target, $round, ${seconds}s"
    # CPU time of the target, the upstream, wrk and the whole machine, so
    # that the CPU used by other processes during the run can be reported.
    local cpu_ms_before cpu_ms_after upstream_ms_before upstream_ms_after
    local wrk_ms_before wrk_ms_after system_before system_after
    cpu_ms_before=$(cpu_ms_of "$target")
    upstream_ms_before=$(cpu_ms_of upstream)
    wrk_ms_before=$(finished_children_cpu_ms)
    system_before=$(system_cpu_ms)
    timeout $((seconds + 30)) "${command[@]}" >"$output_file" 2>&1 \
        || die "wrk against $target failed: $(cat "$output_file")"
    system_after=$(system_cpu_ms)
    wrk_ms_after=$(finished_children_cpu_ms)
    upstream_ms_after=$(cpu_ms_of upstream)
    cpu_ms_after=$(cpu_ms_of "$target")

    local log_file log_lines=-
    log_file=$(access_log_of "$target")
    if [[ -n $log_file ]]; then
        sleep 2 # nginx flushes its access-log buffer every second
        log_lines=$(wc -l <"$log_file")
        [[ -s $WORK_DIR/$target-access-sample.log ]] || head -n 1 "$log_file" >"$WORK_DIR/$target-access-sample.log"
        : >"$log_file"
    fi
    [[ $round == warmup ]] && return 0

    local result_line
    result_line=$(sed -n 's/^WRK_RESULT //p' "$output_file")
    [[ -n $result_line ]] || die "wrk printed no WRK_RESULT line for $target: $(cat "$output_file")"
    local -A result=()
    local pair
    for pair in $result_line; do
        result[${pair%%=*}]=${pair#*=}
    done

    local socket_errors=$((result[connect_errors] + result[read_errors] + result[write_errors] + result[timeouts]))
    local requests_per_second cpu_us_per_request
    requests_per_second=$(awk -v n="${result[requests]}" -v us="${result[duration_us]}" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
    cpu_us_per_request=$(awk -v n="${result[requests]}" -v ms=$((cpu_ms_after - cpu_ms_before)) 'BEGIN { printf "%.1f", ms * 1000 / n }')

    local bench_ms=$((upstream_ms_after - upstream_ms_before + wrk_ms_after - wrk_ms_before))
    [[ $target == upstream ]] || bench_ms=$((bench_ms + cpu_ms_after - cpu_ms_before))
    local other_cpu_percent
    other_cpu_percent=$(awk -v before="$system_before" -v after="$system_after" -v bench="$bench_ms" '
        BEGIN {
            split(before, b, " "); split(after, a, " ")
            other = (a[1] - b[1]) - bench
            printf "%.0f", (other > 0 ? other : 0) * 100 / (a[2] - b[2])
        }')
    if ((other_cpu_percent > 5)); then
        WARNINGS+=("wrk $target round $round: other processes used ${other_cpu_percent}% of the CPUs during the run")
    fi
    if ((result[non_2xx_3xx] > 0)); then
        WARNINGS+=("wrk $target round $round: ${result[non_2xx_3xx]} responses with status >= 400")
    fi
    if ((socket_errors > 0)); then
        WARNINGS+=("wrk $target round $round: socket errors connect ${result[connect_errors]}, read ${result[read_errors]}, write ${result[write_errors]}, timeout ${result[timeouts]}")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$requests_per_second" \
        "${result[p50_us]}" "${result[p99_us]}" "${result[non_2xx_3xx]}" "$socket_errors" \
        "${result[requests]}" "$log_lines" "$cpu_us_per_request" "$other_cpu_percent" >>"$WORK_DIR/runs.tsv"
}

run_throughput_benchmark() {
    local target round
    : >"$WORK_DIR/runs.tsv"
    # Drop the lines of the readiness and curl checks, so that the sample
    # line in the report comes from wrk. nginx flushes its access-log buffer
    # every second, so wait for that first.
    sleep 2
    : >"$(access_log_of nginx)"
    : >"$(access_log_of postern)"
    for target in "${TARGETS[@]}"; do
        run_wrk "$target" "$WARMUP_SECONDS" warmup
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in "${TARGETS[@]}"; do
            run_wrk "$target" "$WRK_SECONDS" "$round"
        done
    done
}

# Print the median of column COLUMN (1-based, of runs.tsv) over the rounds of TARGET.
median_of() {
    local target=$1 column=$2
    awk -F'\t' -v target="$target" -v column="$column" '$1 == target { print $column }' "$WORK_DIR/runs.tsv" \
        | sort -n \
        | awk '{ values[NR] = $1 }
               END { if (NR % 2) print values[(NR + 1) / 2]; else print (values[NR / 2] + values[NR / 2 + 1]) / 2 }'
}

# ---------------------------------------------------------------- memory

# Restart postern so that VmHWM covers only the idle-connection test, then
# keep IDLE_CONNECTIONS idle keep-alive connections open to it.
measure_idle_memory() {
    stop_process "$POSTERN_PID"
    start_postern idle
    POSTERN_THREADS=$(cat /proc/"$POSTERN_PID"/task/*/comm | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')

    local -a command=(python3 "$BENCH_DIR/idle_connections.py"
        --port "${TARGET_PORT[postern]}" --pid "$POSTERN_PID"
        --count "$IDLE_CONNECTIONS" --hold "$IDLE_HOLD_SECONDS"
        --host-header "$HOST_HEADER" --header "Authorization: Bearer $TOKEN")
    record_command "${command[@]}"
    log "opening $IDLE_CONNECTIONS idle connections to postern"
    IDLE_RESULT=$(timeout 300 "${command[@]}") || die "the idle-connection client failed"
    log "idle-connection client: $IDLE_RESULT"
}

# Print the field NAME of the idle-connection client's JSON output.
idle_field() {
    python3 -c 'import json, sys; value = json.loads(sys.argv[1])[sys.argv[2]]; print(value if isinstance(value, (int, float, str)) else json.dumps(value))' \
        "$IDLE_RESULT" "$1"
}

# ---------------------------------------------------------------- report

first_line_of() {
    "$@" 2>&1 | head -n 1 || true
}

describe_machine() {
    local cpu memory os
    cpu=$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    memory=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    os=$(. /etc/os-release && echo "$PRETTY_NAME")
    cat <<EOF
| | |
|---|---|
| date (UTC) | $(date -u '+%Y-%m-%d %H:%M:%S') |
| CPUs (nproc) | $(nproc) |
| CPU model | $cpu |
| memory | $memory |
| OS, kernel | $os, $(uname -r) |
| postern | $(first_line_of "$POSTERN_BIN" --version) ($POSTERN_BIN) |
| nginx | $(first_line_of nginx -v) |
| wrk | $(first_line_of wrk -v) |
| Python | $(first_line_of python3 --version) |
| repository | $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo "no commit yet") |
| load average (1, 5, 15 min) at start and end | $LOAD_AT_START; $(cut -d' ' -f1-3 /proc/loadavg) |
EOF
}

format_ms() {
    awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'
}

format_ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

format_mib() {
    awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'
}

# Print "met" or "not met" for VALUE OPERATOR LIMIT, with OPERATOR ">=" or "<=".
check_target() {
    awk -v value="$1" -v operator="$2" -v limit="$3" \
        'BEGIN { met = operator == ">=" ? value >= limit : value <= limit; print met ? "met" : "not met" }'
}

write_throughput_section() {
    local target
    echo "## Throughput and latency (wrk, HTTP/1.1 keep-alive)"
    echo
    echo "Median of $ROUNDS rounds of ${WRK_SECONDS}s each, after one ${WARMUP_SECONDS}s warm-up run per target;"
    echo "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS. Each median is taken separately, so one row may mix rounds."
    echo
    echo "| target | req/s | p50 (ms) | p99 (ms) | CPU per request (µs) |"
    echo "|---|---:|---:|---:|---:|"
    for target in "${TARGETS[@]}"; do
        printf '| %s | %s | %s | %s | %s |\n' "$target" "$(median_of "$target" 3)" \
            "$(format_ms "$(median_of "$target" 4)")" "$(format_ms "$(median_of "$target" 5)")" \
            "$(median_of "$target" 10)"
    done
    echo
    echo "CPU per request is the user plus system CPU time of the target's own processes"
    echo "during the run, divided by wrk's request count: the upstream nginx for \"upstream\","
    echo "the proxy nginx without the upstream for \"nginx\", and postern without the upstream."
    echo

    local rps_ratio p50_ratio p99_ratio
    rps_ratio=$(format_ratio "$(median_of postern 3)" "$(median_of nginx 3)")
    p50_ratio=$(format_ratio "$(median_of postern 4)" "$(median_of nginx 4)")
    p99_ratio=$(format_ratio "$(median_of postern 5)" "$(median_of nginx 5)")
    echo "| postern / nginx | ratio | target |"
    echo "|---|---:|---|"
    echo "| req/s | $rps_ratio | at least 1.0: $(check_target "$rps_ratio" '>=' 1.0) |"
    echo "| p50 latency | $p50_ratio | |"
    echo "| p99 latency | $p99_ratio | at most 1.1: $(check_target "$p99_ratio" '<=' 1.1) |"
    echo

    echo "Every round:"
    echo
    echo "\"other CPU\" is the CPU time that processes other than wrk, the upstream and the target"
    echo "used during the run, as a share of all CPUs (estimated from /proc/stat). More than a few"
    echo "percent means that other work on the machine disturbed the run."
    echo
    echo "| target | round | req/s | p50 (ms) | p99 (ms) | CPU per request (µs) | other CPU (%) | status >= 400 | socket errors | requests | access-log lines |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local round rps p50 p99 bad_status socket_errors requests log_lines cpu_us other_cpu
    while IFS=$'\t' read -r target round rps p50 p99 bad_status socket_errors requests log_lines cpu_us other_cpu; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$target" "$round" "$rps" \
            "$(format_ms "$p50")" "$(format_ms "$p99")" "$cpu_us" "$other_cpu" "$bad_status" "$socket_errors" "$requests" "$log_lines"
    done < <(sort -t$'\t' -k1,1 -k2,2n "$WORK_DIR/runs.tsv")
    echo
}

write_memory_section() {
    local hwm rss
    hwm=$(idle_field vm_hwm_kib)
    rss=$(idle_field vm_rss_kib)
    echo "## postern memory with $IDLE_CONNECTIONS idle keep-alive connections"
    echo
    echo "A fresh postern process; each connection sent one authenticated request, read"
    echo "the response and then stayed idle for ${IDLE_HOLD_SECONDS}s before the numbers were read."
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| peak RSS (VmHWM) | $(format_mib "$hwm") MiB ($hwm KiB); target at most 64 MiB: $(check_target "$hwm" '<=' 65536) |"
    echo "| RSS at the end (VmRSS) | $(format_mib "$rss") MiB ($rss KiB) |"
    echo "| RSS before the connections | $(format_mib "$(idle_field vm_rss_kib_before)") MiB |"
    echo "| connections answered and kept | $(idle_field connected_with_response) of $(idle_field requested), opened in $(idle_field open_seconds)s |"
    echo "| response status counts | $(idle_field status_counts) |"
    echo "| failed connections | $(idle_field failures) |"
    echo "| closed by postern during the idle time | $(idle_field closed_by_server_during_hold) |"
    echo "| postern open files during the idle time | $(idle_field server_open_files_during_hold) |"
    echo "| client source addresses | $(idle_field source_addresses) |"
    echo "| postern threads (name x count) | $POSTERN_THREADS |"
    echo
}

write_setup_section() {
    cat <<EOF
## Setup

- All processes run on 127.0.0.1 of one machine and share its $(nproc) CPUs: wrk, the
  upstream, the proxy under test and, in the memory test, the Python client. No CPU pinning.
- upstream: nginx (${WORKER_PROCESSES} workers) returning \`ok\n\` (3 bytes) with status 200,
  keep-alive, no access log (\`bench/nginx-upstream.conf.in\`).
- nginx: reverse proxy with \`worker_processes ${WORKER_PROCESSES}\`, the same number as postern's
  worker threads (tokio's default of one per CPU). HTTP/1.1 to the upstream with a
  keep-alive pool (\`keepalive 64\`, \`proxy_http_version 1.1\`, \`proxy_set_header Connection ""\`).
  To do the same per-request work as postern, it checks the bearer token, removes
  \`Authorization\`, sets \`X-Auth-Request-User\` and \`X-Forwarded-*\`, and writes a JSON access
  log line per request to a file (\`bench/nginx-proxy.conf.in\`).
- postern: public gate only, app \`bench\` routed by \`Host: $HOST_HEADER\`, machine token
  checked by SHA-256, access log on stdout redirected to a file (\`bench/postern-vars.yaml.in\`).
- All three targets get the same request: \`GET /\` with \`Host: $HOST_HEADER\` and
  \`Authorization: Bearer <token>\`.
- Before the runs, curl checked: 200 and body \`ok\` from every target with the token,
  401 from nginx and postern without it, 401 from postern with a wrong token.
- Access-log lines are counted per run and compared with wrk's request count; wrk does
  not count requests still in flight when it stops, so the log may have a few more.

EOF
}

write_commands_section() {
    echo "## Commands"
    echo
    echo '```sh'
    # postern serve runs twice with the same command, so print each command once.
    printf '%s\n' "${COMMANDS[@]}" | awk '!seen[$0]++'
    echo '```'
    echo
    echo "postern config (\`vars.yaml\`, with an empty \`endpoints.yaml\` beside it):"
    echo
    echo '```yaml'
    grep -v '^#' "$POSTERN_CONFIG"
    echo '```'
    echo
}

# Count warnings and errors in postern's diagnostic logs and list the first few.
write_logs_section() {
    local log_file lines
    echo "## Logs"
    echo
    for log_file in "$WORK_DIR"/postern/*.stderr.log; do
        lines=$(grep -cE 'WARN|ERROR' "$log_file" || true)
        echo "- \`$(basename "$log_file")\`: $(wc -l <"$log_file") lines, $lines with WARN or ERROR"
        grep -E 'WARN|ERROR' "$log_file" | head -n 5 | sed 's/^/    /' || true
        ((lines == 0)) || WARNINGS+=("postern wrote $lines WARN or ERROR lines to $(basename "$log_file")")
    done
    local target
    for target in nginx postern; do
        if [[ -s $WORK_DIR/$target-access-sample.log ]]; then
            echo "- first $target access-log line:"
            echo
            echo '  ```'
            sed 's/^/  /' "$WORK_DIR/$target-access-sample.log"
            echo '  ```'
        fi
    done
    local nginx_errors
    nginx_errors=$(cat "$WORK_DIR"/nginx-*/error.log | grep -cvE '\[notice\]' || true)
    echo "- nginx error logs: $nginx_errors lines above notice level"
    echo
}

collect_idle_warnings() {
    local kept closed
    kept=$(idle_field connected_with_response)
    closed=$(idle_field closed_by_server_during_hold)
    ((kept == IDLE_CONNECTIONS)) || WARNINGS+=("only $kept of $IDLE_CONNECTIONS idle connections got a response")
    ((closed == 0)) || WARNINGS+=("postern closed $closed idle connections within ${IDLE_HOLD_SECONDS}s")
}

write_warnings_section() {
    echo "## Warnings"
    echo
    if ((${#WARNINGS[@]} + ${#CONFIG_NOTES[@]} == 0)); then
        echo "None."
    fi
    local warning
    for warning in "${WARNINGS[@]}" "${CONFIG_NOTES[@]}"; do
        echo "- $warning"
    done
}

# Write the report to RESULTS_FILE, then print it. The sections run in this
# shell, not in a subshell, because they add to WARNINGS.
write_report() {
    collect_idle_warnings
    {
        echo "# postern benchmark"
        echo
        describe_machine
        echo
        write_throughput_section
        write_memory_section
        write_logs_section
        write_setup_section
        write_commands_section
        write_warnings_section
    } >"$RESULTS_FILE"
    cat "$RESULTS_FILE"
    log "wrote $RESULTS_FILE"
}

# ---------------------------------------------------------------- main

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    # Other work on the machine skews the numbers, so the report shows the load.
    LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
    [[ -x $POSTERN_BIN ]] || die "postern binary not found at $POSTERN_BIN. Build it with cargo build --release or set POSTERN_BIN."
    install_missing_tools
    raise_open_file_limit
    create_work_dir
    mkdir -p "$(dirname -- "$RESULTS_FILE")"

    local -a ports
    mapfile -t ports < <(pick_free_ports 4)
    TARGET_PORT[upstream]=${ports[0]}
    TARGET_PORT[nginx]=${ports[1]}
    TARGET_PORT[postern]=${ports[2]}
    ADMIN_PORT=${ports[3]}

    start_nginx nginx-upstream "$BENCH_DIR/nginx-upstream.conf.in" "${TARGET_PORT[upstream]}" 200
    # The proxy returns 401 to a request without the token.
    start_nginx nginx-proxy "$BENCH_DIR/nginx-proxy.conf.in" "${TARGET_PORT[nginx]}" 401 \
        UPSTREAM_PORT="${TARGET_PORT[upstream]}" TOKEN="$TOKEN"
    write_postern_config
    check_postern_config
    start_postern wrk

    check_targets_respond
    run_throughput_benchmark
    measure_idle_memory
    write_report
}

main "$@"
