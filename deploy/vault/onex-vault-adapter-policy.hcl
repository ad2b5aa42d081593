# Least-privilege Vault/OpenBao policy of the onex-vault-adapter node
# (node_infrastructure_vault_adapter_effect). One source of truth: scripts/dev-stack.sh and the
# vault-init service of docker-compose.infrastructure.yml both write this file
# as the ACL policy `onex-vault-adapter`, attached to the AppRole of the same name.
#
# It covers exactly what the node calls: KV v2 on the `secret/` mount, lease
# renewal/lookup for dynamic secrets, and its own token. `sys/health` needs no
# token. A request naming another KV mount is answered PERMISSION_DENIED until
# a policy grants that mount as well.

# KV v2 data: get_secret (read), set_secret (create/update, also with cas),
# delete_secret of the latest version (DELETE on data/).
path "secret/data/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# KV v2 metadata: list_secrets (list), read_metadata and delete_secret's
# lookup of the latest version (read), write_metadata (create/update) and
# all_versions (delete of the metadata and every version).
path "secret/metadata/*" {
  capabilities = ["create", "read", "update", "list", "delete"]
}

# The node's own configuration (its requester key list, access_policy.vault_keys,
# kept under secret/onex-node/): read only, whatever the rules above allow
# (Vault applies the most specific path). The node also refuses every
# request that names it, so no requester can rewrite the node's trust.
path "secret/data/onex-node/*" {
  capabilities = ["read"]
}

path "secret/metadata/onex-node/*" {
  capabilities = ["read"]
}

path "secret/delete/onex-node/*" {
  capabilities = ["deny"]
}

path "secret/destroy/onex-node/*" {
  capabilities = ["deny"]
}

path "secret/undelete/onex-node/*" {
  capabilities = ["deny"]
}

# Listing the mount's root folder.
path "secret/metadata" {
  capabilities = ["list"]
}

# Soft-delete, destroy and undelete of given versions.
path "secret/delete/*" {
  capabilities = ["update"]
}

path "secret/destroy/*" {
  capabilities = ["update"]
}

path "secret/undelete/*" {
  capabilities = ["update"]
}

# renew_lease (PUT sys/leases/renew) and lease lookups.
path "sys/leases/renew" {
  capabilities = ["update"]
}

path "sys/leases/lookup" {
  capabilities = ["update"]
}

# revoke_lease.
path "sys/leases/revoke" {
  capabilities = ["update"]
}

# The node's own token: renew_token and the TTL it reports in health events.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# The number of secrets engines, reported as `secret_engines_mounted` in the
# health event (mount names and types only, no secrets).
path "sys/mounts" {
  capabilities = ["read"]
}

# Transit (encrypt, decrypt, rewrap) with any key of the `transit/` mount;
# narrow to the keys your requesters use.
path "transit/encrypt/*" {
  capabilities = ["update"]
}

path "transit/decrypt/*" {
  capabilities = ["update"]
}

path "transit/rewrap/*" {
  capabilities = ["update"]
}

# Wrapped replies of results the node makes (rotate_secret, decrypt,
# issue_credentials).
path "sys/wrapping/wrap" {
  capabilities = ["update"]
}

# issue_credentials: dynamic credentials. Each engine endpoint a requester may
# be granted needs its own rule here; the node asks for nothing else. Database
# engine on `database/`: new credentials are a read of creds/ROLE. Narrow
# `*` to the roles your requesters use.
path "database/creds/*" {
  capabilities = ["read"]
}

# PKI on `pki/`: a certificate is an update (POST with common_name, ttl) of
# issue/ROLE. Its lease (roles with generate_lease) is revoked with
# sys/leases/revoke, above.
path "pki/issue/*" {
  capabilities = ["update"]
}
