#!/bin/sh
# Entry point of the `vault` service of docker-compose.infrastructure.yml:
# starts the Vault server given as arguments (file storage, see server.hcl),
# then, on every start of the container:
#   - initialises Vault if it never was (one key share, threshold 1) and keeps
#     the unseal key and the initial root token in UNSEAL_DIR (the vault-unseal
#     volume, root-only files);
#   - unseals it with that key.
# So a restarted container (crash, `docker compose restart vault`, host
# reboot) comes back unsealed with everything vault-init set up; the vault
# healthcheck (`vault status`: exit 0 only when unsealed) turns healthy then.
#
# DEV ONLY: the unseal key sits next to the data it protects. In production
# keep the key shares with operators (Shamir, `vault operator init
# -key-shares=5 -key-threshold=3`) or use auto-unseal (a KMS or Transit seal
# stanza in server.hcl), and never store the root token.
#
# Environment: VAULT_ADDR (this server, as a client reaches it), UNSEAL_DIR
# (default /onex/unseal), VAULT_CLI (default vault; tests use OpenBao's bao).
# Usage: server.sh SERVER-COMMAND...   e.g. server.sh docker-entrypoint.sh server -config=...
set -eu

cli="${VAULT_CLI:-vault}"
unseal_dir="${UNSEAL_DIR:-/onex/unseal}"
[ $# -gt 0 ] || { echo "server.sh: no server command given" >&2; exit 2; }

"$@" &
server=$!
# Stop the server cleanly on docker stop (dumb-init forwards SIGTERM here).
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; exit 0' TERM INT

# `status` exits 0 when unsealed, 2 when sealed (or not initialised), 1 when
# the server does not answer.
status_code() {
    code=0
    "$cli" status >/dev/null 2>&1 || code=$?
    echo "$code"
}

while [ "$(status_code)" -eq 1 ]; do
    if ! kill -0 "$server" 2>/dev/null; then
        wait "$server" || exit $?
        exit 1
    fi
    sleep 1
done

mkdir -p "$unseal_dir"
chmod 0700 "$unseal_dir"
if "$cli" status -format=json 2>/dev/null | grep -Eq '"initialized": *false'; then
    echo "vault server.sh: initialising (first start of this data volume)"
    (
        umask 077
        "$cli" operator init -key-shares=1 -key-threshold=1 >"${unseal_dir}/init.txt"
        sed -n 's/^Unseal Key 1: //p' "${unseal_dir}/init.txt" | tr -d '\n' >"${unseal_dir}/unseal-key"
        sed -n 's/^Initial Root Token: //p' "${unseal_dir}/init.txt" | tr -d '\n' >"${unseal_dir}/root-token"
    )
    [ -s "${unseal_dir}/unseal-key" ] && [ -s "${unseal_dir}/root-token" ] \
        || { echo "vault server.sh: could not read the init output in ${unseal_dir}/init.txt" >&2; exit 1; }
    rm -f "${unseal_dir}/init.txt"
fi

if [ "$(status_code)" -eq 2 ]; then
    [ -s "${unseal_dir}/unseal-key" ] \
        || { echo "vault server.sh: Vault is sealed and ${unseal_dir}/unseal-key is missing" >&2; exit 1; }
    # The key goes in the request body from its file (`key=@file`), never on a
    # command line.
    "$cli" write -format=json sys/unseal "key=@${unseal_dir}/unseal-key" >/dev/null
    echo "vault server.sh: unsealed"
fi
[ "$(status_code)" -eq 0 ] || { echo "vault server.sh: Vault is still sealed" >&2; exit 1; }

# With HA storage (raft) the unsealed node serves once it is the active one.
waited=0
until "$cli" status -format=json 2>/dev/null | grep -Eq '"ha_enabled": *false|"is_self": *true'; do
    waited=$((waited + 1))
    [ "$waited" -le 60 ] || { echo "vault server.sh: not active after 60s" >&2; exit 1; }
    sleep 1
done
echo "vault server.sh: unsealed and active"

wait "$server"
