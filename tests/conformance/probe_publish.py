#!/usr/bin/env python3.12
"""Probe: does upstream omnibase_infra's EventBusKafka publish to a local Kafka-protocol
broker, and what exactly lands on the wire?

Publishes one ModelEventEnvelope through EventBusKafka.publish_envelope (the upstream
code path: mixin_kafka_broadcast.publish_envelope -> EventBusKafka.publish ->
aiokafka), then reads it back with a plain confluent-kafka consumer and prints the
record value and headers.

Needs a venv made from tests/conformance/requirements.txt (omnibase-core 0.47.57,
omnibase-infra 0.38.75; both aiokafka and confluent-kafka come with them) and a
broker listening on --bootstrap (default 127.0.0.1:19092), e.g. Tansu:

    tansu broker --listener-url tcp://127.0.0.1:19092 \
        --advertised-listener-url tcp://127.0.0.1:19092 --storage-engine memory://tansu/

Usage: V/bin/python tests/conformance/probe_publish.py [--bootstrap H:P] [--topic T]

Upstream's producer defaults to enable_idempotence=True; the probe tries that first
and falls back to enable_idempotence=False if the broker refuses InitProducerId
(Tansu 0.6.0 with memory:// storage does).

The topic is created up front with confluent_kafka's AdminClient: EventBusKafka does
not create topics itself. Exit status 0 only if the record read back has the body
and the identity headers the envelope implies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from omnibase_core.models.events.model_event_envelope import ModelEventEnvelope
from omnibase_infra.event_bus.event_bus_kafka import EventBusKafka
from omnibase_infra.event_bus.models.config import ModelKafkaEventBusConfig


def ensure_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    for name, fut in futures.items():
        try:
            fut.result(timeout=15)
            print(f"created topic {name}")
        except KafkaException as exc:  # already exists is fine
            print(f"create_topics({name}): {exc.args[0].str()}")


async def publish(
    bootstrap: str, topic: str, envelope: ModelEventEnvelope, idempotence: bool
) -> object:
    config = ModelKafkaEventBusConfig(
        bootstrap_servers=bootstrap,
        environment="local",
        timeout_seconds=5,
        max_retry_attempts=1,
        enable_idempotence=idempotence,  # upstream default: True
    )
    bus = EventBusKafka(config=config)
    await bus.start()
    try:
        # publish_envelope returns None (the receipt of the inner publish() is dropped)
        return await bus.publish_envelope(envelope, topic)
    finally:
        await bus.close()


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    return high


def read_back(bootstrap: str, topic: str, start: int, deadline_s: float = 20.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"probe-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, start)])
    got = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not got:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            print("consumer error:", msg.error())
            continue
        got.append(msg)
    consumer.close()
    return got


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:19092")
    ap.add_argument("--topic", default="onex.evt.vault-adapter.probe-published.v1")
    args = ap.parse_args()

    ensure_topic(args.bootstrap, args.topic)
    start = high_watermark(args.bootstrap, args.topic)
    print(f"partition 0 high watermark before publish: {start}")

    envelope = ModelEventEnvelope(
        payload={"name": "café", "ratio": 1.5, "count": 42},
        envelope_id=uuid.UUID("11111111-2222-4333-8444-555555555555"),
        correlation_id=uuid.UUID("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"),
        parent_envelope_id=uuid.UUID("99999999-8888-4777-8666-555555555555"),
        envelope_timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        event_type="vault-adapter.probe-published",
        trace_id=uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100"),
        priority=9,
    )
    # Upstream's default producer is idempotent (enable_idempotence=True -> aiokafka
    # sends InitProducerId at start()). Try that first; if the broker refuses it,
    # say so and retry with idempotence off.
    for idempotence in (True, False):
        t0 = time.monotonic()
        try:
            asyncio.run(publish(args.bootstrap, args.topic, envelope, idempotence))
        except Exception as exc:  # noqa: BLE001 - report and fall back
            print(
                f"publish_envelope with enable_idempotence={idempotence} FAILED after "
                f"{time.monotonic() - t0:.2f}s: {type(exc).__name__}: {exc}"
            )
            continue
        print(f"publish_envelope OK (enable_idempotence={idempotence}) in {time.monotonic() - t0:.2f}s")
        break
    else:
        return 1

    msgs = read_back(args.bootstrap, args.topic, start)
    if not msgs:
        print("FAIL: nothing read back")
        return 1
    msg = msgs[-1]
    print(f"topic={msg.topic()} partition={msg.partition()} offset={msg.offset()} key={msg.key()!r}")
    print("value (raw bytes):", msg.value().decode("utf-8"))
    print("headers:")
    headers = msg.headers() or []
    for name, value in headers:
        print(f"  {name} = {value!r}")

    body = json.loads(msg.value())
    hdr = {k: (v.decode() if v is not None else None) for k, v in headers}
    checks = {
        "body == envelope.model_dump(mode='json')": body == envelope.model_dump(mode="json"),
        "body bytes == json.dumps(model_dump(mode='json'))": msg.value()
        == json.dumps(envelope.model_dump(mode="json")).encode(),
        "message_id header == envelope_id": hdr.get("message_id") == str(envelope.envelope_id),
        "correlation_id header == correlation_id": hdr.get("correlation_id")
        == str(envelope.correlation_id),
        "parent_message_id header == parent_envelope_id": hdr.get("parent_message_id")
        == str(envelope.parent_envelope_id),
        "event_type header == topic": hdr.get("event_type") == args.topic,
    }
    for name, ok in checks.items():
        print(f"check {'OK  ' if ok else 'FAIL'} {name}")
    # round-trip through upstream's own header parser
    bus = EventBusKafka(
        config=ModelKafkaEventBusConfig(bootstrap_servers=args.bootstrap, environment="local")
    )
    model = bus._kafka_headers_to_model(headers)
    print("upstream _kafka_headers_to_model ->", model.model_dump(mode="json"))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
