#!/usr/bin/env bash
# Runs the node against a local dev stack, without Docker:
#   - OpenBao dev server (Vault API) on 127.0.0.1:${DEV_VAULT_PORT:-8200}, in memory,
#     with its file audit device writing .stack/vault-audit.log
#   - Tansu (Kafka protocol) on 127.0.0.1:${DEV_KAFKA_PORT:-9092}, in memory,
#     with the topics of contract.yaml (3 partitions each)
#   - the node itself (target/debug/onex-vault-adapter run), logging in via
#     AppRole with the least-privilege policy deploy/vault/onex-vault-adapter-policy.hcl
#     (never with the root token), health on 127.0.0.1:${ONEX_HTTP_PORT:-8085}/health
#
# The servers come from scripts/install-test-servers.sh (run first; idempotent).
# Everything lives under .stack/: the logs (openbao.log, tansu.log, node.log,
# and OpenBao's own audit log vault-audit.log),
# the AppRole credentials (role-id, secret-id) and the dev root token (root-token).
#
# Usage:
#   scripts/dev-stack.sh           start, print how to send a request, follow the
#                                  node's log; Ctrl-C (or SIGTERM) stops it all
#   scripts/dev-stack.sh --smoke   start, send examples/get-secret.json, check
#                                  the reply, stop; exit 0 (PASS) or 1 (FAIL)
#
# Environment:
#   DEV_VAULT_PORT        OpenBao port (default 8200; it also takes the next one up)
#   DEV_KAFKA_PORT        Tansu port (default 9092)
#   ONEX_HTTP_PORT        the node's health port (default 8085)
#   DEV_VAULT_ROOT_TOKEN  the dev root token (default: a fresh random one)
#   ONEX_TOOLS_DIR        where install-test-servers.sh installs (default .venv)
#   RUST_LOG              the node's log filter
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

readonly vault_port="${DEV_VAULT_PORT:-8200}"
readonly kafka_port="${DEV_KAFKA_PORT:-9092}"
readonly http_port="${ONEX_HTTP_PORT:-8085}"
readonly vault_addr="http://127.0.0.1:${vault_port}"
readonly kafka_bootstrap="127.0.0.1:${kafka_port}"
readonly kafka_url="tcp://${kafka_bootstrap}"
readonly health_url="http://127.0.0.1:${http_port}/health"

readonly stack_dir="${repo_root}/.stack"
readonly tools_dir="${ONEX_TOOLS_DIR:-${repo_root}/.venv}"
readonly tools_python="${tools_dir}/bin/python"
readonly node_bin="${CARGO_TARGET_DIR:-target}/debug/onex-vault-adapter"
readonly contract_file="contract.yaml"
readonly policy_file="deploy/vault/onex-vault-adapter-policy.hcl"
readonly example_request="examples/get-secret.json"

readonly approle_name="onex-vault-adapter"
readonly demo_secret_path="app/database"
readonly demo_secret_json='{"data":{"username":"app","password":"dev-password"}}'

readonly ready_timeout_seconds=60
readonly smoke_reply_timeout_seconds=60
# The contract's shutdown_timeout_seconds (30) plus a margin.
readonly node_stop_timeout_seconds=40
readonly server_stop_timeout_seconds=10

smoke=0
root_token=""
started_pid=""
bao_pid=""
tansu_pid=""
node_pid=""
tail_pid=""

log() { printf '[dev-stack] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

parse_arguments() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --smoke) smoke=1 ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
        shift
    done
}

# --- Ports -------------------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

refuse_if_ports_taken() {
    local name port taken=0
    for name in DEV_VAULT_PORT DEV_KAFKA_PORT ONEX_HTTP_PORT; do
        case "$name" in
            DEV_VAULT_PORT) port="$vault_port" ;;
            DEV_KAFKA_PORT) port="$kafka_port" ;;
            ONEX_HTTP_PORT) port="$http_port" ;;
        esac
        if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65534 ]; then
            die "${name}=${port} is not a port number"
        fi
        if port_in_use "$port"; then
            log "port ${port} (${name}) is already in use"
            taken=1
        fi
    done
    # The OpenBao dev server also listens on the next port up (cluster listener).
    if port_in_use "$((vault_port + 1))"; then
        log "port $((vault_port + 1)) (DEV_VAULT_PORT + 1, OpenBao's cluster listener) is already in use"
        taken=1
    fi
    if [ "$taken" -eq 1 ]; then
        die "refusing to start: stop whatever holds those ports (another dev stack?) or pick others, e.g.
    DEV_VAULT_PORT=8300 DEV_KAFKA_PORT=9192 ONEX_HTTP_PORT=8185 scripts/dev-stack.sh"
    fi
}

# --- Tools -------------------------------------------------------------------

install_servers() {
    log "installing the dev servers (scripts/install-test-servers.sh)"
    bash scripts/install-test-servers.sh
    # shellcheck source=/dev/null
    source "${tools_dir}/servers.env"
    [ -x "${ONEX_BAO_BIN:-}" ] || die "no executable OpenBao binary (ONEX_BAO_BIN) in ${tools_dir}/servers.env"
    [ -x "${ONEX_TANSU_BIN:-}" ] || die "no executable Tansu binary (ONEX_TANSU_BIN) in ${tools_dir}/servers.env"
    [ -x "$tools_python" ] || die "no Python in ${tools_dir}"
    ensure_curl
}

# curl provisions Vault and probes health; Debian's, if the machine lacks it.
ensure_curl() {
    command -v curl >/dev/null 2>&1 && return 0
    log "installing curl (apt-get)"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends curl; then
        die "curl is needed and could not be installed: apt-get install curl"
    fi
}

build_node() {
    log "cargo build --bin onex-vault-adapter"
    cargo build --bin onex-vault-adapter
    [ -x "$node_bin" ] || die "cargo build produced no ${node_bin}"
}

# --- Processes ---------------------------------------------------------------

# Clears what an earlier run left in .stack/ (its processes are gone: the
# ports were free).
prepare_stack_dir() {
    mkdir -p "$stack_dir"
    chmod 700 "$stack_dir"
    rm -f "$stack_dir"/*.log "$stack_dir"/role-id "$stack_dir"/secret-id \
        "$stack_dir"/root-token "$stack_dir"/smoke-reply.json "$stack_dir"/openbao-audit.hcl
}

# Starts "$@" in the background in its own session (so a Ctrl-C in the terminal
# reaches only this script, which then stops everything in order), with no
# stdin and its output in the log file $1. Prints nothing; sets $started_pid.
start_logged() {
    local log_file="$1"
    shift
    setsid "$@" >"$log_file" 2>&1 </dev/null &
    started_pid=$!
}

process_alive() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null
}

show_log_tail() {
    local log_file="$1"
    log "--- last lines of ${log_file#"$repo_root"/} ---"
    tail -n 30 "$log_file" >&2 || true
    log "---"
}

# Polls `"$@"` until it succeeds. Fails with the log's tail when the process
# $2 exits first or $ready_timeout_seconds pass.
wait_until_ready() {
    local what="$1" pid="$2" log_file="$3"
    shift 3
    local deadline=$((SECONDS + ready_timeout_seconds))
    until "$@" >/dev/null 2>&1; do
        if ! process_alive "$pid"; then
            show_log_tail "$log_file"
            die "${what} exited before it was ready"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_log_tail "$log_file"
            die "${what} not ready after ${ready_timeout_seconds}s"
        fi
        sleep 0.2
    done
    log "${what} is ready"
}

# Sends SIGTERM to process $2 and waits up to $3 seconds for it to exit, then
# SIGKILLs it. (This function and the next three run from the traps, which
# ShellCheck does not follow: hence the SC2317 directives.)
# shellcheck disable=SC2317
stop_process() {
    local what="$1" pid="$2" timeout_seconds="$3"
    process_alive "$pid" || return 0
    log "stopping ${what} (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout_seconds))
    while process_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    if process_alive "$pid"; then
        log "${what} still running after ${timeout_seconds}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317
stop_everything() {
    stop_process "the node" "$node_pid" "$node_stop_timeout_seconds"
    node_pid=""
    stop_process "the log follower" "$tail_pid" 2
    tail_pid=""
    stop_process "Tansu" "$tansu_pid" "$server_stop_timeout_seconds"
    tansu_pid=""
    stop_process "OpenBao" "$bao_pid" "$server_stop_timeout_seconds"
    bao_pid=""
}

# shellcheck disable=SC2317
on_exit() {
    local status=$?
    # Stopping is bounded (see the *_stop_timeout_seconds); further signals
    # must not cut it short and leave servers behind.
    trap - EXIT
    trap '' INT TERM HUP
    stop_everything
    exit "$status"
}

# shellcheck disable=SC2317
on_signal() {
    log "signal received: stopping the dev stack"
    exit 0 # runs on_exit
}

# --- OpenBao -----------------------------------------------------------------

random_hex() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# OpenBao's file audit device (Vault: `vault audit enable file file_path=...`).
# OpenBao 2.x refuses to enable audit devices through the API ("use
# declarative, config-based audit device management"), so it is declared in a
# configuration file the dev server reads beside its dev defaults.
readonly audit_log="${stack_dir}/vault-audit.log"

write_audit_config() {
    cat >"${stack_dir}/openbao-audit.hcl" <<HCL
audit "file" "file" {
  description = "onex-vault-adapter dev stack: every request and response, secrets HMAC-ed"
  options {
    file_path = "${audit_log}"
    mode      = "0600"
  }
}
HCL
}

start_openbao() {
    root_token="${DEV_VAULT_ROOT_TOKEN:-dev-root-$(random_hex)}"
    (umask 077 && printf '%s\n' "$root_token" >"${stack_dir}/root-token")
    write_audit_config
    log "starting OpenBao on ${vault_addr} (audit log .stack/vault-audit.log)"
    # Run from .stack/ so nothing lands in the work tree.
    start_logged "${stack_dir}/openbao.log" \
        env -C "$stack_dir" BAO_DEV_ROOT_TOKEN_ID="$root_token" \
        "$ONEX_BAO_BIN" server -dev -dev-no-store-token \
        "-dev-listen-address=127.0.0.1:${vault_port}" \
        "-config=${stack_dir}/openbao-audit.hcl"
    bao_pid="$started_pid"
    wait_until_ready "OpenBao" "$bao_pid" "${stack_dir}/openbao.log" \
        curl -fsS -o /dev/null "${vault_addr}/v1/sys/health"
    vault_api GET sys/audit | grep -q '"file/"' || die "OpenBao's file audit device is not enabled"
}

# Calls the Vault HTTP API with the root token: vault_api METHOD PATH [JSON].
# Prints the response body; fails with Vault's answer on an error status.
# The token goes to curl through its config on stdin, never on a command line.
vault_api() {
    local method="$1" path="$2" body="${3:-}"
    local args=(-sS --fail-with-body -X "$method" -K - "${vault_addr}/v1/${path}")
    if [ -n "$body" ]; then
        args+=(-H "Content-Type: application/json" --data-binary "$body")
    fi
    local response
    if ! response="$(printf 'header = "X-Vault-Token: %s"\n' "$root_token" | curl "${args[@]}")"; then
        die "Vault ${method} ${path} failed: ${response}"
    fi
    printf '%s' "$response"
}

# Prints the string at a key path of the JSON on stdin: json_field data role_id
json_field() {
    "$tools_python" -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[key]
print(value)' "$@"
}

write_policy() {
    log "writing policy ${approle_name} from ${policy_file}"
    local body
    body="$("$tools_python" -c '
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    print(json.dumps({"policy": f.read()}))' "$policy_file")"
    vault_api PUT "sys/policies/acl/${approle_name}" "$body" >/dev/null
}

create_approle() {
    log "enabling AppRole auth, role ${approle_name}"
    vault_api POST sys/auth/approle '{"type":"approle"}' >/dev/null
    vault_api POST "auth/approle/role/${approle_name}" \
        "{\"token_policies\":[\"${approle_name}\"],\"token_no_default_policy\":true,\"token_ttl\":\"1h\",\"token_max_ttl\":\"24h\"}" \
        >/dev/null
}

# Writes the role's role_id and a fresh secret_id to .stack/, readable by us only.
write_approle_credentials() {
    local role_id secret_id
    role_id="$(vault_api GET "auth/approle/role/${approle_name}/role-id" | json_field data role_id)"
    secret_id="$(vault_api POST "auth/approle/role/${approle_name}/secret-id" '{}' | json_field data secret_id)"
    (
        umask 077
        printf '%s\n' "$role_id" >"${stack_dir}/role-id"
        printf '%s\n' "$secret_id" >"${stack_dir}/secret-id"
    )
    log "AppRole credentials in .stack/role-id and .stack/secret-id"
}

write_demo_secret() {
    log "writing the demo secret secret/${demo_secret_path}"
    vault_api POST "secret/data/${demo_secret_path}" "$demo_secret_json" >/dev/null
}

provision_vault() {
    write_policy
    create_approle
    write_approle_credentials
    write_demo_secret
}

# --- Tansu -------------------------------------------------------------------

start_tansu() {
    log "starting Tansu on ${kafka_url}"
    start_logged "${stack_dir}/tansu.log" \
        env -C "$stack_dir" "$ONEX_TANSU_BIN" broker \
        --listener-url "$kafka_url" --advertised-listener-url "$kafka_url" \
        --storage-engine memory://tansu/
    tansu_pid="$started_pid"
    wait_until_ready "Tansu" "$tansu_pid" "${stack_dir}/tansu.log" port_in_use "$kafka_port"
}

# Creates the topics named in contract.yaml (deploy/kafka/contract-topics.sh
# reads them), 3 partitions each, and checks the broker lists them all.
create_topics() {
    local topics topic listed
    topics="$(sh deploy/kafka/contract-topics.sh "$contract_file")"
    [ -n "$topics" ] || die "found no topic names in ${contract_file} (event_bus)"
    for topic in $topics; do
        log "creating topic ${topic} (3 partitions)"
        timeout 20 "$ONEX_TANSU_BIN" topic create "$topic" --broker "$kafka_url" --partitions 3 \
            >>"${stack_dir}/tansu-topics.log" 2>&1 \
            || { show_log_tail "${stack_dir}/tansu-topics.log"; die "creating topic ${topic} failed"; }
    done
    listed="$(timeout 20 "$ONEX_TANSU_BIN" topic list --broker "$kafka_url")" \
        || die "tansu topic list failed"
    for topic in $topics; do
        grep -qF "\"name\":\"${topic}\"" <<<"$listed" || die "topic ${topic} missing after creation"
    done
}

# --- The node ----------------------------------------------------------------

start_node() {
    log "starting the node (AppRole login, health on ${health_url})"
    start_logged "${stack_dir}/node.log" \
        env -u VAULT_TOKEN -u VAULT_ROLE_ID -u VAULT_SECRET_ID -u VAULT_NAMESPACE \
        ONEX_CONTRACT="${repo_root}/${contract_file}" \
        KAFKA_BOOTSTRAP_SERVERS="$kafka_bootstrap" \
        VAULT_ADDR="$vault_addr" \
        VAULT_AUTH_METHOD=approle \
        VAULT_ROLE_ID_FILE="${stack_dir}/role-id" \
        VAULT_SECRET_ID_FILE="${stack_dir}/secret-id" \
        KAFKA_SESSION_TIMEOUT_MS=6000 \
        ONEX_HTTP_PORT="$http_port" \
        ONEX_LOG_FORMAT=pretty \
        ONEX_SECURITY_PROFILE="${ONEX_SECURITY_PROFILE:-dev}" \
        "$node_bin" run
    node_pid="$started_pid"
    wait_until_ready "the node" "$node_pid" "${stack_dir}/node.log" \
        curl -fsS -o /dev/null "$health_url"
}

print_banner() {
    cat <<EOF

  onex-vault-adapter dev stack is up
    Vault (OpenBao dev)  ${vault_addr}   root token: .stack/root-token
    Kafka (Tansu)        ${kafka_bootstrap}
    node health          ${health_url}
    logs                 .stack/node.log  .stack/openbao.log  .stack/tansu.log
    Vault audit log      .stack/vault-audit.log

  Send the example request (from another terminal):
    KAFKA_BOOTSTRAP_SERVERS=${kafka_bootstrap} ${node_bin} send ${example_request}
  (also examples/set-secret.json and examples/list-secrets.json)

  Ctrl-C stops the node, Tansu and OpenBao.

EOF
}

# Follows the node's log until a signal comes (exit 0) or the node exits by
# itself (exit 1).
follow_node_log() {
    log "following .stack/node.log"
    tail -n +1 -f --pid="$node_pid" "${stack_dir}/node.log" &
    tail_pid=$!
    local status=0
    wait "$node_pid" || status=$?
    node_pid=""
    die "the node exited by itself (status ${status}); see .stack/node.log"
}

# True when the reply in file $1 is a success whose data has username "app".
reply_has_demo_secret() {
    "$tools_python" - "$1" <<'PY'
import json, sys

with open(sys.argv[1], encoding="utf-8") as f:
    reply = json.load(f)

def has_username(value):
    if isinstance(value, dict):
        return value.get("username") == "app" or any(has_username(v) for v in value.values())
    if isinstance(value, list):
        return any(has_username(v) for v in value)
    return False

payload = reply.get("payload", {})
sys.exit(0 if payload.get("status") == "success" and has_username(payload.get("result")) else 1)
PY
}

# Sends the example request, checks the reply, prints PASS or FAIL; returns 0/1.
run_smoke_test() {
    local reply_file="${stack_dir}/smoke-reply.json" status=0
    log "smoke: ${node_bin} send ${example_request}"
    KAFKA_BOOTSTRAP_SERVERS="$kafka_bootstrap" \
        "$node_bin" send "$example_request" --timeout-seconds "$smoke_reply_timeout_seconds" \
        >"$reply_file" </dev/null || status=$?
    cat "$reply_file"
    if [ "$status" -eq 0 ] && reply_has_demo_secret "$reply_file"; then
        # Vault's own audit device saw the node's read (paths in clear,
        # secret values HMAC-ed).
        if ! grep -qF "\"path\":\"secret/data/${demo_secret_path}\"" "$audit_log"; then
            echo "FAIL: the node's read of secret/data/${demo_secret_path} is not in OpenBao's audit log (.stack/vault-audit.log)"
            return 1
        fi
        echo "PASS: get_secret secret/${demo_secret_path} answered with the demo secret (and is in OpenBao's audit log)"
        return 0
    fi
    show_log_tail "${stack_dir}/node.log"
    echo "FAIL: send exited ${status}; expected a success reply with username \"app\" (reply in .stack/smoke-reply.json)"
    return 1
}

main() {
    parse_arguments "$@"
    refuse_if_ports_taken
    install_servers
    build_node
    prepare_stack_dir

    trap on_exit EXIT
    trap on_signal INT TERM HUP

    start_openbao
    start_tansu
    provision_vault
    create_topics
    start_node

    if [ "$smoke" -eq 1 ]; then
        local status=0
        run_smoke_test || status=$?
        exit "$status" # on_exit stops everything
    fi
    print_banner
    follow_node_log
}

main "$@"
