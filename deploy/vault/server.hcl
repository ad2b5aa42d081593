# Vault server configuration of the `vault` service of
# docker-compose.infrastructure.yml: file storage in the vault-data volume, so
# secrets, policies, the AppRole role and the audit device survive a restart
# of the container (unlike dev mode, which keeps everything in memory).
# deploy/vault/server.sh initialises Vault on first start and unseals it on
# every start. Plain HTTP on the compose network and on loopback: dev only.
storage "file" {
  path = "/vault/file"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

api_addr      = "http://vault:8200"
ui            = false
disable_mlock = false
