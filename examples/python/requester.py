#!/usr/bin/env python3
"""A Python ONEX node asking the Vault adapter for a secret.

What any requester does, in one readable file:
  1. build the request envelope (ModelEventEnvelope around the payload),
  2. validate it against the committed JSON Schema (models/schemas/),
  3. sign the exact record bytes and the topic with Ed25519 (header
     `onex-signature`), as the node's strict profile requires,
  4. send it with confluent-kafka, keyed by the correlation id,
  5. read the reply with the same correlation id from the completed and
     failed topics (partitions assigned by hand: no consumer group to join),
  6. validate the reply against its schema and open a sealed result with the
     requester's X25519 key (a libsodium sealed box).

Keys come from an identity file written by `onex-vault-adapter keygen NAME`.

    python requester.py --bootstrap-servers localhost:9092 \
        --identity node_billing.identity.json get_secret billing/database

Prints the reply envelope (result opened) as JSON; exit 0 on success, 1 on an
error reply, 2 when no reply came.
"""

import argparse
import base64
import json
import pathlib
import sys
import time
import uuid
from datetime import datetime, timezone

import jsonschema
import nacl.public
import nacl.signing
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "models" / "schemas"
SIGNATURE_HEADER = "onex-signature"
SIGNED_PREFIX = b"onex-vault-request/v1\n"


def load_identity(path):
    """The requester's name, signing key and sealing key from an identity file."""
    identity = json.loads(pathlib.Path(path).read_text())
    signing = identity["signing_key"]
    sealing = identity["sealing_key"]
    return {
        "requester": identity["requester"],
        "signing_key_id": signing["id"],
        "signing_key": nacl.signing.SigningKey(base64.b64decode(signing["private_key"])),
        "sealing_key_id": sealing["id"],
        "sealing_key": nacl.public.PrivateKey(base64.b64decode(sealing["private_key"])),
    }


def schema(name):
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def build_envelope(requester, payload, timeout_seconds):
    return {
        "envelope_id": str(uuid.uuid4()),
        "envelope_timestamp": datetime.now(timezone.utc).isoformat(),
        "correlation_id": str(uuid.uuid4()),
        "source_tool": requester,
        "payload_type": "ModelVaultAdapterRequest",
        "envelope_version": {"major": 2, "minor": 3, "patch": 0, "prerelease": None, "build": None},
        "timeout_seconds": timeout_seconds,
        "payload": payload,
    }


def sign(identity, topic, value):
    """The `onex-signature` header value for `value` sent to `topic`."""
    signed = identity["signing_key"].sign(SIGNED_PREFIX + topic.encode() + b"\n" + value)
    signature = base64.b64encode(signed.signature).decode()
    return f"v1;key_id={identity['signing_key_id']};sig={signature}"


def open_sealed(identity, reply):
    """Replaces a sealed result with what it holds (checking it was sealed for this request)."""
    result = reply["payload"].get("result")
    if not isinstance(result, dict) or result.get("delivery") != "sealed":
        return reply
    if result["key_id"] != identity["sealing_key_id"]:
        raise ValueError(f"sealed to key {result['key_id']}, not ours")
    box = nacl.public.SealedBox(identity["sealing_key"])
    inside = json.loads(box.decrypt(base64.b64decode(result["ciphertext"])))
    if inside["correlation_id"] != reply["correlation_id"]:
        raise ValueError("sealed for another request")
    reply["payload"]["result"] = inside["result"]
    return reply


def reply_consumer(bootstrap, topics):
    """A consumer assigned to the end of every partition of the reply topics."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"python-requester-{uuid.uuid4()}",  # required by the client; never joined
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })
    metadata = consumer.list_topics(timeout=10)
    assignment = []
    for topic in topics:
        for partition in metadata.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            assignment.append(TopicPartition(topic, partition, high if high >= 0 else OFFSET_END))
    consumer.assign(assignment)
    return consumer


def request(args, payload):
    identity = load_identity(args.identity) if args.identity else None
    requester = identity["requester"] if identity else "python_requester_example"
    envelope = build_envelope(requester, payload, args.timeout_seconds)
    jsonschema.validate(envelope, schema("vault-request"))

    consumer = reply_consumer(args.bootstrap_servers, [args.completed_topic, args.failed_topic])
    value = json.dumps(envelope).encode()
    headers = [(SIGNATURE_HEADER, sign(identity, args.request_topic, value).encode())] if identity else []
    producer = Producer({"bootstrap.servers": args.bootstrap_servers})
    producer.produce(args.request_topic, key=envelope["correlation_id"], value=value, headers=headers)
    if producer.flush(10) != 0:
        raise RuntimeError("the request was not delivered to Kafka")

    deadline = time.monotonic() + args.timeout_seconds
    try:
        while time.monotonic() < deadline:
            record = consumer.poll(0.2)
            if record is None or record.error():
                continue
            reply = json.loads(record.value())
            # Ours: our correlation id, answering the envelope we sent.
            if reply.get("correlation_id") != envelope["correlation_id"]:
                continue
            if reply.get("parent_envelope_id") != envelope["envelope_id"]:
                continue
            jsonschema.validate(reply, schema("vault-reply"))
            return open_sealed(identity, reply) if identity else reply
    finally:
        consumer.close()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--identity", help="identity file from `onex-vault-adapter keygen`")
    parser.add_argument("--request-topic", default="onex.cmd.omnibase-infra.vault-request.v1")
    parser.add_argument("--completed-topic", default="onex.evt.omnibase-infra.vault-completed.v1")
    parser.add_argument("--failed-topic", default="onex.evt.omnibase-infra.vault-failed.v1")
    parser.add_argument("--timeout-seconds", type=float, default=15.0)
    parser.add_argument("operation", help="e.g. get_secret, list_secrets")
    parser.add_argument("path", help="secret path or folder")
    args = parser.parse_args()

    reply = request(args, {"operation": args.operation, "path": args.path})
    if reply is None:
        print(f"no reply within {args.timeout_seconds} s", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0 if reply["payload"]["status"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
