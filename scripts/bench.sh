#!/usr/bin/env bash
# The benchmark command of docs/benchmarks.md: installs the real servers (OpenBao, Tansu,
# PostgreSQL; see scripts/install-test-servers.sh) and runs benches/node/ in
# release mode: the node against Vault called directly and a plain Kafka echo,
# closed loop, at several concurrency levels; prints a table per level and the
# issue's targets. Arguments go to the benchmark, e.g.
#   bash scripts/bench.sh --smoke
#   bash scripts/bench.sh --concurrency 1,16,64 --duration-seconds 5 --json bench.json
#   bash scripts/bench.sh --help
# ONEX_TEST_STACK=containers runs it against Vault and Kafka containers instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${ONEX_TEST_STACK:-local}" != "containers" ]]; then
    bash scripts/install-test-servers.sh
fi
cargo bench --locked --bench node -- "$@"
