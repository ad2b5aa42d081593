# Container image of the onex-vault-adapter node (node_infrastructure_vault_adapter_effect).
#
#   docker build -t onex-vault-adapter .
#   docker run --rm onex-vault-adapter check-contract    # needs the env vars below
#
# The image runs `onex-vault-adapter run` as the non-root user `onex` (uid 10001)
# with the contract at /app/contract.yaml (ONEX_CONTRACT). Configure it with the
# environment variables the contract names: KAFKA_BOOTSTRAP_SERVERS, VAULT_ADDR,
# VAULT_AUTH_METHOD (token|approle), VAULT_TOKEN or VAULT_ROLE_ID(_FILE) and
# VAULT_SECRET_ID(_FILE), VAULT_NAMESPACE, ONEX_GROUP_ID, KAFKA_SESSION_TIMEOUT_MS,
# ONEX_HTTP_PORT (8085), ONEX_HEALTH_INTERVAL_SECONDS, RUST_LOG, ONEX_LOG_FORMAT,
# and for transport security VAULT_CACERT, VAULT_CLIENT_CERT/KEY and the
# KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* variables.
# docker-compose.infrastructure.yml runs it next to Kafka and Vault.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka-sys builds the bundled librdkafka from source with its own
# `./configure && make` (no cmake): a C toolchain, make, perl, pkg-config, the
# zlib headers, and (for its `ssl` feature: Kafka TLS and SCRAM) OpenSSL's. The rust image ships them already; they are
# named here so the build does not depend on that. (Unpinned: the Debian
# release pins them, and point releases drop old versions.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential make perl pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# 1. Dependencies only, from the manifests and stub sources: this layer (the
#    slow part: librdkafka, aws-lc, tokio...) is rebuilt only when a manifest or
#    Cargo.lock changes, not on every source edit. Cargo loads the whole
#    workspace before it builds one binary, so every member's manifest must be
#    here (the node, models, client, tools) and every target a manifest names must
#    exist: the `[[bench]] node` of the root manifest (benches/node/main.rs) stays
#    a stub in both steps, as it is never built here. Targets cargo finds by
#    itself (tests/, examples/, models/tests/) may be absent.
#    scripts/docker-context-check.sh runs these steps in CI, from exactly the
#    build context .dockerignore leaves, without Docker.
COPY Cargo.toml Cargo.lock ./
COPY models/Cargo.toml models/Cargo.toml
COPY client/Cargo.toml client/Cargo.toml
COPY tools/Cargo.toml tools/Cargo.toml
RUN mkdir -p src models/src client/src tools/src benches/node \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/node/main.rs \
    && touch src/lib.rs models/src/lib.rs client/src/lib.rs tools/src/lib.rs \
    && cargo build --release --locked --bin onex-vault-adapter \
    && rm -rf src models/src client/src tools/src

# 2. The node itself. Forget the stubs' build of the workspace crates
#    (onex-vault-adapter, onex-vault-models, onex-vault-client,
#    onex-vault-tools), so cargo
#    rebuilds them from the real sources whatever their timestamps. The binary
#    stays in target/release; the runtime stage copies it from there.
COPY models models
COPY client client
COPY tools tools
COPY src src
COPY contract.yaml ./
RUN rm -rf target/release/.fingerprint/onex-vault-* \
    && cargo build --release --locked --bin onex-vault-adapter

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="onex-vault-adapter" \
      org.opencontainers.image.description="ONEX effect node bridging the Kafka event bus to HashiCorp Vault / OpenBao" \
      org.opencontainers.image.licenses="Apache-2.0"

# ca-certificates for a Vault behind HTTPS, curl for the health check, zlib for
# librdkafka.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g libssl3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 onex \
    && useradd --system --uid 10001 --gid onex --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin onex

WORKDIR /app
COPY --from=builder /build/target/release/onex-vault-adapter /usr/local/bin/onex-vault-adapter
COPY contract.yaml /app/contract.yaml
COPY models/schemas /app/models/schemas

ENV ONEX_CONTRACT=/app/contract.yaml \
    ONEX_HTTP_PORT=8085 \
    ONEX_LOG_FORMAT=json

USER 10001:10001
EXPOSE 8085

# Healthy means ready, not merely alive: /ready answers 200 only once the node
# holds partitions of its request topic and its Vault is reachable, unsealed
# and accepts the node's token (/health, liveness, answers as soon as the
# process runs). Shell form, so a changed ONEX_HTTP_PORT is followed.
# hadolint ignore=DL3025
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${ONEX_HTTP_PORT:-8085}/ready" || exit 1

ENTRYPOINT ["onex-vault-adapter"]
CMD ["run"]
