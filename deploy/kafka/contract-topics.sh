#!/bin/sh
# Prints the Kafka topic names of an ONEX contract, one a line: the values in
# its `event_bus:` section that are ONEX topic names (subscribe, publish and
# DLQ topics). contract.yaml stays the one place topic names are written;
# scripts/dev-stack.sh and the kafka-init service of
# docker-compose.infrastructure.yml create the topics this prints.
#
# Usage: deploy/kafka/contract-topics.sh [CONTRACT]   (default: contract.yaml)
# POSIX sh, so it also runs in the apache/kafka image.
set -eu

contract="${1:-contract.yaml}"
[ -r "$contract" ] || { echo "contract-topics: cannot read ${contract}" >&2; exit 1; }

# From `event_bus:` to the next top-level key, keep `key: onex.<kind>.<domain>.<event>.v<N>`
# values (optionally quoted, optionally followed by a comment).
sed -n '/^event_bus:/,/^[^[:space:]#]/p' "$contract" \
    | sed -n -E "s/^[[:space:]]+[A-Za-z_]+:[[:space:]]+[\"']?(onex\.(evt|cmd|intent|snapshot|dlq)\.[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*\.v[0-9]+)[\"']?[[:space:]]*(#.*)?$/\1/p" \
    | sort -u
