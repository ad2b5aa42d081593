#!/bin/sh
# The vault-init service of docker-compose.infrastructure.yml (vault CLI image):
# sets up the compose Vault the way scripts/dev-stack.sh sets up its OpenBao:
#   - KV v2 at secret/ and transit/ (with the key onex-dev)
#   - Vault's own file audit device (AUDIT_FILE_PATH, default
#     /vault/logs/audit.log in the vault-audit volume), beside the node's own
#     audit topic
#   - the least-privilege policy `onex-vault-adapter` from
#     onex-vault-adapter-policy.hcl (next to this script: the one source of truth)
#   - AppRole auth with the role `onex-vault-adapter` (that policy only, token
#     TTL 1h, max 24h)
#   - the role_id and a fresh secret_id as files in CREDENTIALS_DIR (a volume
#     the node mounts read-only), owned by NODE_UID (when set), mode 0600
#   - the demo secret secret/app/database
# Vault keeps all of it in its file storage, so a restart of Vault alone needs
# no new run. Safe to run again (every `docker compose up` does): each step is
# idempotent.
#
# Environment: VAULT_ADDR; VAULT_TOKEN, else the token in VAULT_TOKEN_FILE
# (compose: the root token deploy/vault/server.sh kept at the first start);
# CREDENTIALS_DIR, NODE_UID, AUDIT_FILE_PATH; VAULT_CLI (default vault; the
# tests use OpenBao's bao).
set -eu

role="onex-vault-adapter"
here="$(dirname "$0")"
cli="${VAULT_CLI:-vault}"
credentials_dir="${CREDENTIALS_DIR:-/onex/approle}"
node_uid="${NODE_UID:-}"
audit_file_path="${AUDIT_FILE_PATH:-/vault/logs/audit.log}"

if [ -z "${VAULT_TOKEN:-}" ]; then
    [ -r "${VAULT_TOKEN_FILE:-}" ] || { echo "vault-init: set VAULT_TOKEN or VAULT_TOKEN_FILE" >&2; exit 1; }
    VAULT_TOKEN="$(cat "$VAULT_TOKEN_FILE")"
    export VAULT_TOKEN
fi

# Vault's own audit device first, so every later request is in its log.
if "$cli" audit list -format=json 2>/dev/null | grep -q '"file/"'; then
    echo "vault-init: file audit device already enabled"
else
    "$cli" audit enable file "file_path=${audit_file_path}"
fi

mounts="$("$cli" secrets list -format=json)"
echo "$mounts" | grep -q '"secret/"' || "$cli" secrets enable -path=secret -version=2 kv
echo "$mounts" | grep -q '"transit/"' || "$cli" secrets enable transit
"$cli" write -f transit/keys/onex-dev >/dev/null

if "$cli" auth list -format=json | grep -q '"approle/"'; then
    echo "vault-init: AppRole auth already enabled"
else
    "$cli" auth enable approle
fi

"$cli" policy write "$role" "${here}/onex-vault-adapter-policy.hcl"

"$cli" write "auth/approle/role/${role}" \
    token_policies="$role" \
    token_no_default_policy=true \
    token_ttl=1h \
    token_max_ttl=24h

umask 077
mkdir -p "$credentials_dir"
"$cli" read -field=role_id "auth/approle/role/${role}/role-id" >"${credentials_dir}/role-id"
"$cli" write -f -field=secret_id "auth/approle/role/${role}/secret-id" >"${credentials_dir}/secret-id"
if [ -n "$node_uid" ]; then
    chown "${node_uid}:${node_uid}" "$credentials_dir" "${credentials_dir}/role-id" "${credentials_dir}/secret-id"
fi
chmod 0700 "$credentials_dir"
chmod 0600 "${credentials_dir}/role-id" "${credentials_dir}/secret-id"
echo "vault-init: AppRole credentials written to ${credentials_dir}"

"$cli" kv put secret/app/database username=app password=dev-password >/dev/null
echo "vault-init: done"
