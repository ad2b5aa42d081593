#!/bin/sh
# The kafka-init service of docker-compose.infrastructure.yml: creates the
# topics named in the contract (see contract-topics.sh) on the compose Kafka,
# PARTITIONS partitions each, replication 1; topics that exist are left alone.
#
# Environment: KAFKA_BOOTSTRAP (default kafka:29092), CONTRACT (default
# /onex/contract.yaml), PARTITIONS (default 3), KAFKA_BIN (default /opt/kafka/bin).
set -eu

bootstrap="${KAFKA_BOOTSTRAP:-kafka:29092}"
contract="${CONTRACT:-/onex/contract.yaml}"
partitions="${PARTITIONS:-3}"
kafka_bin="${KAFKA_BIN:-/opt/kafka/bin}"

topics="$(sh "$(dirname "$0")/contract-topics.sh" "$contract")"
if [ -z "$topics" ]; then
    echo "kafka-init: no topic names found in ${contract}" >&2
    exit 1
fi

for topic in $topics; do
    echo "kafka-init: creating ${topic} (${partitions} partitions)"
    case "$topic" in
        # The replay ledger (docs/security.md): claims must outlive
        # 2 x security.max_clock_skew_seconds and must never be compacted.
        *.vault-replay-claim.*) config="--config cleanup.policy=delete --config retention.ms=900000" ;;
        # The lease registry (docs/operations.md): one live record per
        # kept-alive lease, tombstones for released ones.
        *.vault-lease-keepalive.*) config="--config cleanup.policy=compact" ;;
        *) config="" ;;
    esac
    # shellcheck disable=SC2086 # $config is a word list
    "${kafka_bin}/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor 1 $config
done

echo "kafka-init: topics on ${bootstrap}:"
"${kafka_bin}/kafka-topics.sh" --bootstrap-server "$bootstrap" --list
