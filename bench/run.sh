#!/usr/bin/env bash
# Benchmark postern's public gate against nginx and HAProxy as reverse proxies.
#
# Starts an nginx upstream, nginx as a reverse proxy to it that checks a
# static bearer token, HAProxy as a reverse proxy to it that verifies a bearer
# JWT, and postern with one app routed to it, all on 127.0.0.1. Then it runs
# wrk (HTTP/1.1 keep-alive) against the upstream directly, through nginx,
# through HAProxy, and through postern three times: with a machine token,
# with a bearer JWT (the same token HAProxy verifies) and with a session
# cookie. Last, it measures postern's peak RSS while many idle keep-alive
# connections to it stay open. Writes a markdown report to stdout and to
# bench/results/latest.md, and stops every process it started, also on failure.
#
# Usage: bench/run.sh
# Settings come from the environment variables below, which show the defaults.
set -euo pipefail

BENCH_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# nginx and haproxy are in /usr/sbin, which is not on every user's PATH.
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
# postern serves its login page on auth.<cluster hostname>.
AUTH_HOST=auth.bench.test
# The claims of the benchmark's JWT. The issuer is set once the upstream's
# port is known, because the upstream serves the issuer's JWKS.
JWT_AUDIENCE=bench-gateway
JWT_SUBJECT=bench-jwt-client
JWT_KID=bench-rs256
BENCH_USER=bench-user
# The postern-* targets are one postern process reached with three kinds of
# credential.
TARGETS=(upstream nginx haproxy postern-token postern-jwt postern-cookie)

WORK_DIR=""
POSTERN_RSS_KIB=()
JWT=""
SESSION_COOKIE=""
STARTED_PIDS=()
COMMANDS=()
WARNINGS=()
CONFIG_NOTES=()
declare -A TARGET_PORT=()
# The credential header that wrk and the checks send to each target.
declare -A TARGET_HEADER=()
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
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v openssl >/dev/null || missing+=(openssl)
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
    # nginx and HAProxy run as the user nobody when this script runs as root, so
    # they must be able to enter this directory. The postern subdirectory and the
    # JWT signer's (private key, tokens) stay private.
    chmod 755 "$WORK_DIR"
    mkdir -m 700 "$WORK_DIR/postern" "$WORK_DIR/jwt-signer"
    mkdir "$WORK_DIR/nginx-upstream" "$WORK_DIR/nginx-proxy" "$WORK_DIR/haproxy" "$WORK_DIR/jwks"
    if [[ $EUID -eq 0 ]]; then
        chown nobody:nogroup "$WORK_DIR/nginx-upstream" "$WORK_DIR/nginx-proxy"
    fi
}

# Make an RS256 key pair and sign the benchmark's tokens with it (bench/make_jwt.py).
# The JWKS goes where the upstream nginx serves it to postern, and the public
# key PEM where HAProxy reads it. RS256 rather than ES256 because it is the
# cheaper of the two to verify with OpenSSL, which favours HAProxy, whose
# jwt_verify checks the signature on every request.
make_jwt_files() {
    local signer_dir=$WORK_DIR/jwt-signer
    JWT_ISSUER=http://127.0.0.1:${TARGET_PORT[upstream]}
    JWKS_URI=$JWT_ISSUER/.well-known/jwks.json
    JWT_PUBLIC_KEY=$WORK_DIR/haproxy/jwt-public.pem

    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$signer_dir/private.pem" 2>/dev/null \
        || die "openssl could not make an RSA key in $signer_dir"
    openssl pkey -in "$signer_dir/private.pem" -pubout -out "$JWT_PUBLIC_KEY"
    python3 "$BENCH_DIR/make_jwt.py" --key "$signer_dir/private.pem" --kid "$JWT_KID" \
        --issuer "$JWT_ISSUER" --audience "$JWT_AUDIENCE" --subject "$JWT_SUBJECT" \
        --out-dir "$signer_dir"
    mv "$signer_dir/jwks.json" "$WORK_DIR/jwks/jwks.json"
    chmod 644 "$WORK_DIR/jwks/jwks.json" "$JWT_PUBLIC_KEY"
    JWT=$(cat "$signer_dir/token")
}

# Print the bench JWT variant NAME (token-expired, token-wrong-audience, ...).
jwt_variant() {
    cat "$WORK_DIR/jwt-signer/$1"
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
        for log_file in "$WORK_DIR"/nginx-*/error.log "$WORK_DIR"/haproxy/error.log "$WORK_DIR"/postern/*.stderr.log; do
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

# Start HAProxy from bench/haproxy.cfg.in, verifying the bench JWT, and wait
# until GET / without a token returns 401. Its access log is its stdout.
start_haproxy() {
    local prefix=$WORK_DIR/haproxy port=${TARGET_PORT[haproxy]}
    render_template "$BENCH_DIR/haproxy.cfg.in" "$prefix/haproxy.cfg" \
        THREADS="$WORKER_PROCESSES" LISTEN_PORT="$port" UPSTREAM_PORT="${TARGET_PORT[upstream]}" \
        PUBLIC_KEY="$JWT_PUBLIC_KEY" ISSUER="$JWT_ISSUER" AUDIENCE="$JWT_AUDIENCE"

    local -a command=(haproxy -db -f "$prefix/haproxy.cfg")
    if [[ $EUID -eq 0 ]]; then
        command=(setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs "${command[@]}")
    fi
    record_command "${command[@]}"
    # Append mode, so that truncating the access log between runs works.
    "${command[@]}" >>"$prefix/access.log" 2>>"$prefix/error.log" &
    HAPROXY_PID=$!
    STARTED_PIDS+=("$HAPROXY_PID")
    wait_for_http "http://127.0.0.1:$port/" 401 15 "$HAPROXY_PID" haproxy
    log "haproxy is listening on 127.0.0.1:$port (pid $HAPROXY_PID)"
}

# Print the argon2id hash of PASSWORD as `postern passwd` makes it.
hash_password() {
    local output hash
    output=$(printf '%s' "$1" | "$POSTERN_BIN" passwd "$BENCH_USER") \
        || die "postern passwd $BENCH_USER failed: $output"
    hash=$(grep -o '\$argon2id\$[^"'"'"' ]*' <<<"$output" | head -n 1)
    [[ -n $hash ]] || die "no argon2id hash in the output of postern passwd: $output"
    printf '%s' "$hash"
}

write_postern_config() {
    local config_dir=$WORK_DIR/postern
    POSTERN_CONFIG=$config_dir/vars.yaml
    local token_sha256
    token_sha256=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)

    # A new session key and user password for every run. curl reads the
    # password from its file, which keeps it off the command line.
    openssl rand -base64 48 >"$config_dir/session-key"
    openssl rand -hex 16 | tr -d '\n' >"$config_dir/password"
    local password_hash
    password_hash=$(hash_password "$(cat "$config_dir/password")")

    render_template "$BENCH_DIR/postern-vars.yaml.in" "$POSTERN_CONFIG" \
        PUBLIC_PORT="${TARGET_PORT[postern]}" ADMIN_PORT="$ADMIN_PORT" \
        UPSTREAM_PORT="${TARGET_PORT[upstream]}" TOKEN_SHA256="$token_sha256" \
        MAX_CONNECTIONS="$MAX_CONNECTIONS" JWT_ISSUER="$JWT_ISSUER" JWKS_URI="$JWKS_URI" \
        JWT_AUDIENCE="$JWT_AUDIENCE" PASSWORD_HASH="$password_hash"
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
    # /readyz returns 200 only once the JWKS of the bench issuer is loaded.
    wait_for_http "http://127.0.0.1:$ADMIN_PORT/readyz" 200 30 "$POSTERN_PID" postern
    log "postern ($label) is ready on 127.0.0.1:${TARGET_PORT[postern]}, admin 127.0.0.1:$ADMIN_PORT (pid $POSTERN_PID)"
}

# Sign in as the bench user on postern's login page, as a browser would, and
# keep the session cookie for wrk. The Origin header names the auth host, so
# the login form's same-origin check passes.
sign_in() {
    local headers_file=$WORK_DIR/postern/login-headers status
    local -a command=(curl -sS -o /dev/null -D "$headers_file" -w '%{http_code}' --max-time 10
        -H "Host: $AUTH_HOST" -H "Origin: http://$AUTH_HOST"
        --data-urlencode "username=$BENCH_USER" --data-urlencode "password@$WORK_DIR/postern/password"
        "http://127.0.0.1:${TARGET_PORT[postern]}/login")
    record_command "${command[@]}"
    status=$("${command[@]}") || die "the sign-in request to postern failed"
    [[ $status == 303 ]] || die "sign-in as $BENCH_USER: expected status 303, got $status: $(head -c 300 "$headers_file")"

    # Keep every Set-Cookie of the session cookie that sets a value, chunks
    # included. A Set-Cookie with an empty value deletes a cookie.
    SESSION_COOKIE=$(tr -d '\r' <"$headers_file" \
        | sed -n 's/^[Ss]et-[Cc]ookie: \(_postern[^=;]*=[^;][^;]*\).*/\1/p' \
        | paste -sd ';' - | sed 's/;/; /g')
    [[ -n $SESSION_COOKIE ]] || die "sign-in as $BENCH_USER returned no session cookie: $(cat "$headers_file")"
    log "signed in as $BENCH_USER; the session cookie has $(wc -c <<<"$SESSION_COOKIE") bytes"
}

# Print the session cookie with one character of its value changed.
tampered_session_cookie() {
    local name=${SESSION_COOKIE%%=*} value=${SESSION_COOKIE#*=}
    local middle=$((${#value} / 2))
    local replacement=A
    [[ ${value:middle:1} == A ]] && replacement=B
    printf '%s=%s%s%s' "$name" "${value:0:middle}" "$replacement" "${value:middle+1}"
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

# Check every target with its own credential, and that the proxies reject a
# request without one or with a bad one, so that wrk measures the checks.
check_targets_respond() {
    local target
    for target in "${TARGETS[@]}"; do
        expect_response "$target with its credential" 200 "http://127.0.0.1:${TARGET_PORT[$target]}/" \
            -H "${TARGET_HEADER[$target]}"
    done

    local nginx=http://127.0.0.1:${TARGET_PORT[nginx]}/
    expect_response "nginx without token" 401 "$nginx"

    local postern=http://127.0.0.1:${TARGET_PORT[postern]}/
    expect_response "postern without credential" 401 "$postern"
    expect_response "postern with wrong token" 401 "$postern" -H "Authorization: Bearer wrong_token"
    expect_response "postern with tampered session cookie" 401 "$postern" -H "Cookie: $(tampered_session_cookie)"

    # The same bad JWTs go to postern and HAProxy, so both are seen to check
    # the signature, exp and aud.
    local proxy variant
    for proxy in postern haproxy; do
        for variant in token-expired token-wrong-audience token-bad-signature; do
            expect_response "$proxy with JWT $variant" 401 "http://127.0.0.1:${TARGET_PORT[$proxy]}/" \
                -H "Authorization: Bearer $(jwt_variant "$variant")"
        done
    done
    expect_response "haproxy without token" 401 "http://127.0.0.1:${TARGET_PORT[haproxy]}/"
    expect_response "haproxy with the machine token" 401 "http://127.0.0.1:${TARGET_PORT[haproxy]}/" \
        -H "Authorization: Bearer $TOKEN"
}

# ---------------------------------------------------------------- wrk

# Print the access log of TARGET, or nothing for the upstream, which logs nothing.
access_log_of() {
    case $1 in
        nginx) echo "$WORK_DIR/nginx-proxy/access.log" ;;
        haproxy) echo "$WORK_DIR/haproxy/access.log" ;;
        postern*) echo "$POSTERN_ACCESS_LOG" ;;
    esac
}

# Print the CPU time in milliseconds (user plus system) that the processes
# serving TARGET have used so far: the nginx master and its workers, or the
# one process of HAProxy or postern (their threads count in the process).
cpu_ms_of() {
    local -a pids
    case $1 in
        upstream) pids=("${NGINX_MASTER_PID[nginx-upstream]}") ;;
        nginx) pids=("${NGINX_MASTER_PID[nginx-proxy]}") ;;
        haproxy) pids=("$HAPROXY_PID") ;;
        postern*) pids=("$POSTERN_PID") ;;
    esac
    if [[ $1 == upstream || $1 == nginx ]]; then
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
        -H "Host: $HOST_HEADER" -H "${TARGET_HEADER[$target]}"
        "http://127.0.0.1:${TARGET_PORT[$target]}/")
    # The report shows placeholders for the JWT and the session cookie, which
    # are made anew for every run.
    if [[ $round == 1 ]]; then
        local -a shown=("${command[@]//"$JWT"/<bench JWT>}")
        record_command "${shown[@]//"$SESSION_COOKIE"/<session cookie>}"
    fi

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
        # HAProxy keeps writing at its own offset after the truncation below,
        # so its log starts with a hole of NUL bytes, which tr removes.
        [[ -s $WORK_DIR/$target-access-sample.log ]] \
            || head -n 1 "$log_file" | tr -d '\000' >"$WORK_DIR/$target-access-sample.log"
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
    : >"$(access_log_of haproxy)"
    : >"$(access_log_of postern-token)"
    for target in "${TARGETS[@]}"; do
        run_wrk "$target" "$WARMUP_SECONDS" warmup
    done
    # postern's RSS after the warm-up and after every round: growth between
    # rounds that serve the same load would be a leak.
    POSTERN_RSS_KIB=("$(rss_kib "$POSTERN_PID")")
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in "${TARGETS[@]}"; do
            run_wrk "$target" "$WRK_SECONDS" "$round"
        done
        POSTERN_RSS_KIB+=("$(rss_kib "$POSTERN_PID")")
    done
}

# Print the resident memory of process PID in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status
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
| HAProxy | $(first_line_of haproxy -v) |
| OpenSSL | $(first_line_of openssl version) |
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

# Print the comparison table: ratios of the medians, and the targets.
write_comparisons() {
    echo "| comparison (medians) | req/s | p50 latency | p99 latency | targets |"
    echo "|---|---:|---:|---:|---|"
    write_comparison_row postern-token nginx "req/s >= 1.0" "p99 <= 1.1"
    write_comparison_row postern-jwt postern-token "req/s >= 0.9"
    write_comparison_row postern-jwt haproxy "req/s >= 1.0"
    write_comparison_row postern-cookie postern-token
    write_comparison_row haproxy nginx
    echo
}

# Print one comparison row, TARGET / BASELINE, then check each TARGETS
# argument, such as "req/s >= 0.9" or "p99 <= 1.1", against its ratio.
write_comparison_row() {
    local target=$1 baseline=$2
    shift 2
    local -A ratio=()
    ratio[req/s]=$(format_ratio "$(median_of "$target" 3)" "$(median_of "$baseline" 3)")
    ratio[p50]=$(format_ratio "$(median_of "$target" 4)" "$(median_of "$baseline" 4)")
    ratio[p99]=$(format_ratio "$(median_of "$target" 5)" "$(median_of "$baseline" 5)")

    local goal metric operator limit checked=""
    for goal in "$@"; do
        read -r metric operator limit <<<"$goal"
        checked+="${checked:+; }$goal: $(check_target "${ratio[$metric]}" "$operator" "$limit")"
    done
    printf '| %s / %s | %s | %s | %s | %s |\n' "$target" "$baseline" \
        "${ratio[req/s]}" "${ratio[p50]}" "${ratio[p99]}" "${checked:-none set}"
}

# Print the req/s ratios of the comparisons within each round, because the
# load of a busy machine changes between rounds more than within one.
write_round_ratios() {
    local -a pairs=(postern-token/nginx postern-jwt/postern-token postern-jwt/haproxy postern-cookie/postern-token)
    echo "req/s ratios within each round:"
    echo
    printf '| round |'
    printf ' %s |' "${pairs[@]}"
    echo
    printf '|---:|'
    printf -- '---:|%.0s' "${pairs[@]}"
    echo
    local round pair
    for ((round = 1; round <= ROUNDS; round++)); do
        printf '| %s |' "$round"
        for pair in "${pairs[@]}"; do
            printf ' %s |' "$(format_ratio "$(rps_in_round "${pair%/*}" "$round")" "$(rps_in_round "${pair#*/}" "$round")")"
        done
        echo
    done
    echo
}

# Print the req/s of TARGET in ROUND.
rps_in_round() {
    awk -F'\t' -v target="$1" -v round="$2" '$1 == target && $2 == round { print $3 }' "$WORK_DIR/runs.tsv"
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
    echo "the proxy nginx without the upstream for \"nginx\", and HAProxy or postern without"
    echo "the upstream."
    echo

    write_comparisons
    write_round_ratios

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
    echo "RSS of the postern process that served the throughput runs, after the"
    echo "warm-up and after each round (KiB): ${POSTERN_RSS_KIB[*]}."
    echo
}

write_setup_section() {
    local jwt_bytes=${#JWT} cookie_bytes=${#SESSION_COOKIE}
    cat <<EOF
## Setup

- All processes run on 127.0.0.1 of one machine and share its $(nproc) CPUs: wrk, the
  upstream, the proxy under test and, in the memory test, the Python client. No CPU pinning.
- upstream: nginx (${WORKER_PROCESSES} workers) returning \`ok\n\` (3 bytes) with status 200,
  keep-alive, no access log (\`bench/nginx-upstream.conf.in\`). It also serves the JWKS
  of the bench JWT issuer at \`/.well-known/jwks.json\`, which postern fetches.
- nginx: reverse proxy with \`worker_processes ${WORKER_PROCESSES}\`, the same number as postern's
  worker threads (one per CPU). HTTP/1.1 to the upstream with a
  keep-alive pool (\`keepalive 64\`, \`proxy_http_version 1.1\`, \`proxy_set_header Connection ""\`).
  To do the same per-request work as postern, it checks the bearer token, removes
  \`Authorization\`, sets \`X-Auth-Request-User\` and \`X-Forwarded-*\`, and writes a JSON access
  log line per request to a file (\`bench/nginx-proxy.conf.in\`).
- haproxy: HAProxy with \`nbthread ${WORKER_PROCESSES}\`, verifying the bench JWT with
  \`jwt_verify\` (\`bench/haproxy.cfg.in\`): \`alg\` must be RS256, the signature must verify
  with the public key PEM, \`iss\` and \`aud\` must equal the expected strings, and \`exp\`
  must be in the future (no leeway). It does not check \`nbf\`, \`iat\`, \`kid\` or \`typ\`,
  takes a static key file instead of a JWKS, and verifies the signature on every
  request: HAProxy 2.6 has no cache of verified tokens. Otherwise it does the same
  work as the nginx proxy, and logs to stdout, redirected to a file.
- postern: public gate only, app \`bench\` routed by \`Host: $HOST_HEADER\`, access log on
  stdout redirected to a file (\`bench/postern-vars.yaml.in\`). One process serves the three
  postern targets:
  - postern-token: the machine token, checked by SHA-256.
  - postern-jwt: the same JWT as haproxy, from the issuer in \`identities.jwt_issuers\`
    (JWKS fetched from the upstream; signature, \`iss\`, \`aud\`, \`exp\`, \`nbf\`, \`iat\`
    checked with 30 s leeway). postern keeps verified tokens in a cache keyed by
    the token's SHA-256 until they expire, so after the first request of the run
    it hashes the token and finds the verdict instead of checking the signature.
    A client that sends a new token on every request would pay for the signature
    check each time; this benchmark does not measure that.
  - postern-cookie: the session cookie of the built-in user \`$BENCH_USER\`, got by one
    \`POST /login\` on \`$AUTH_HOST\` before the runs. The session is sealed in the
    cookie (AES-256-GCM, no Redis), and postern opens it on every request.
- The JWT is RS256 with a 2048-bit RSA key made for this run, signed by
  \`bench/make_jwt.py\` with \`openssl dgst -sha256 -sign\`; valid for a day, \`aud\` one
  string. RS256 rather than ES256 because OpenSSL verifies RS256 faster, which is
  the better case for HAProxy.
- Every target gets \`GET /\` with \`Host: $HOST_HEADER\` and one credential header:
  \`Authorization: Bearer <machine token>\` for upstream, nginx and postern-token,
  \`Authorization: Bearer <JWT>\` ($jwt_bytes bytes) for haproxy and postern-jwt, and
  \`Cookie: <session cookie>\` ($cookie_bytes bytes) for postern-cookie.
- Before the runs, curl checked: 200 and body \`ok\` from every target with its
  credential; 401 from nginx, haproxy and postern without one; 401 from postern with a
  wrong machine token and with a tampered session cookie; 401 from postern and haproxy
  with an expired JWT, a JWT for another audience and a JWT with a changed signature;
  401 from haproxy with the machine token.
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
    for target in nginx haproxy postern-token postern-jwt postern-cookie; do
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
    local haproxy_errors
    haproxy_errors=$(wc -l <"$WORK_DIR/haproxy/error.log")
    echo "- HAProxy error log (its stderr): $haproxy_errors lines"
    grep -v '^$' "$WORK_DIR/haproxy/error.log" | head -n 5 | sed 's/^/    /' || true
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
    [[ -x $POSTERN_BIN ]] || die "postern binary not found at $POSTERN_BIN. Build it with cargo build --release -p postern or set POSTERN_BIN."
    install_missing_tools
    raise_open_file_limit
    create_work_dir
    mkdir -p "$(dirname -- "$RESULTS_FILE")"

    local -a ports
    mapfile -t ports < <(pick_free_ports 5)
    TARGET_PORT[upstream]=${ports[0]}
    TARGET_PORT[nginx]=${ports[1]}
    TARGET_PORT[haproxy]=${ports[2]}
    TARGET_PORT[postern]=${ports[3]}
    ADMIN_PORT=${ports[4]}
    local credential
    for credential in token jwt cookie; do
        TARGET_PORT[postern-$credential]=${TARGET_PORT[postern]}
    done

    make_jwt_files
    start_nginx nginx-upstream "$BENCH_DIR/nginx-upstream.conf.in" "${TARGET_PORT[upstream]}" 200 \
        JWKS_FILE="$WORK_DIR/jwks/jwks.json"
    # The proxies return 401 to a request without a token.
    start_nginx nginx-proxy "$BENCH_DIR/nginx-proxy.conf.in" "${TARGET_PORT[nginx]}" 401 \
        UPSTREAM_PORT="${TARGET_PORT[upstream]}" TOKEN="$TOKEN"
    start_haproxy
    write_postern_config
    check_postern_config
    start_postern wrk
    sign_in

    # The upstream ignores the header; it gets the machine token as before.
    TARGET_HEADER[upstream]="Authorization: Bearer $TOKEN"
    TARGET_HEADER[nginx]="Authorization: Bearer $TOKEN"
    TARGET_HEADER[postern-token]="Authorization: Bearer $TOKEN"
    TARGET_HEADER[postern-jwt]="Authorization: Bearer $JWT"
    TARGET_HEADER[haproxy]="Authorization: Bearer $JWT"
    TARGET_HEADER[postern-cookie]="Cookie: $SESSION_COOKIE"
    check_targets_respond
    run_throughput_benchmark
    measure_idle_memory
    write_report
}

main "$@"
