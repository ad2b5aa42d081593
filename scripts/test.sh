#!/usr/bin/env bash
# The README's test command: installs the real servers the tests need
# (OpenBao, Tansu, PostgreSQL; see scripts/install-test-servers.sh) and runs
# the whole test suite against them. Extra arguments go to `cargo test`.
# ONEX_TEST_STACK=containers runs the same tests against Vault, Kafka and
# PostgreSQL containers instead (needs a Docker engine).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${ONEX_TEST_STACK:-local}" != "containers" ]]; then
    bash scripts/install-test-servers.sh
fi
cargo test --workspace --locked "$@"
