#!/bin/sh
# The vault-init service of docker-compose.infrastructure.yml (vault CLI image,
# VAULT_ADDR and the dev root token VAULT_TOKEN in its environment): sets up the
# dev Vault the way scripts/dev-stack.sh sets up its OpenBao:
#   - the least-privilege policy `onex-vault-adapter` from
#     onex-vault-adapter-policy.hcl (next to this script: the one source of truth)
#   - AppRole auth with the role `onex-vault-adapter` (that policy only, token
#     TTL 1h, max 24h)
#   - the role_id and a fresh secret_id as files in CREDENTIALS_DIR (a volume
#     the node mounts read-only), owned by the node's uid, mode 0600
#   - the demo secret secret/app/database
# Safe to run again (`docker compose up` restarts it): each step is idempotent.
set -eu

role="onex-vault-adapter"
here="$(dirname "$0")"
credentials_dir="${CREDENTIALS_DIR:-/onex/approle}"
node_uid="${NODE_UID:-10001}"

if vault auth list -format=json | grep -q '"approle/"'; then
    echo "vault-init: AppRole auth already enabled"
else
    vault auth enable approle
fi

vault policy write "$role" "${here}/onex-vault-adapter-policy.hcl"

vault write "auth/approle/role/${role}" \
    token_policies="$role" \
    token_no_default_policy=true \
    token_ttl=1h \
    token_max_ttl=24h

umask 077
mkdir -p "$credentials_dir"
vault read -field=role_id "auth/approle/role/${role}/role-id" >"${credentials_dir}/role-id"
vault write -f -field=secret_id "auth/approle/role/${role}/secret-id" >"${credentials_dir}/secret-id"
chown "${node_uid}:${node_uid}" "$credentials_dir" "${credentials_dir}/role-id" "${credentials_dir}/secret-id"
chmod 0700 "$credentials_dir"
chmod 0600 "${credentials_dir}/role-id" "${credentials_dir}/secret-id"
echo "vault-init: AppRole credentials written to ${credentials_dir}"

vault kv put secret/app/database username=app password=dev-password
# Transit, for the encrypt/decrypt/rewrap operations (idempotent).
vault secrets list -format=json | grep -q '"transit/"' || vault secrets enable transit
vault write -f transit/keys/onex-dev >/dev/null
echo "vault-init: done"
