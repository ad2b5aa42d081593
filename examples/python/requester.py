#!/usr/bin/env python3.12
"""A Python ONEX node asking the Vault adapter for a secret.

What any requester does, in one readable file, with the packages a Python ONEX
node already has (omnibase-core, omnibase-infra, confluent-kafka; PyNaCl for
sealed results; CPython 3.12):
  1. build the request: omnibase-core's ModelEventEnvelope around the payload
     ({"operation": ..., "path": ..., "delivery": "sealed"}), with its own
     envelope_id, envelope_timestamp and correlation_id, and validate it
     against the committed JSON Schema (models/schemas/vault-request),
  2. in the node's strict profile, wrap and sign it as an ONEX runtime gateway
     does: omnibase-infra's ServiceEnvelopeSigner.sign_dict makes the
     omnibase-core ModelMessageEnvelope (realm = the node's security.realm,
     runtime_id = our name in the node's access policy, trace_id = the
     correlation id; Blake3 hash of the envelope, Ed25519 signature),
  3. send it with confluent-kafka, keyed by the correlation id,
  4. read the replies on the completed and failed topics (partitions assigned
     by hand: no consumer group to join); in the strict profile verify each
     with omnibase-infra's ServiceEnvelopeValidator (the node's realm, the
     node's runtime_id and public key, unsigned refused) and drop whatever
     does not verify: anyone can write to a topic, only the node can sign,
  5. take the reply that carries our correlation_id AND names the envelope we
     sent as its parent_envelope_id, validate it against its schema
     (models/schemas/vault-reply), and open a sealed result with the
     requester's X25519 key (a libsodium sealed box, bound to the request).

Keys come from an identity file written by `onex-vault-adapter keygen NAME`;
the node's public key is what `onex-vault-adapter keygen` printed for the
node's own identity.

    python3.12 requester.py --bootstrap-servers localhost:9092 \\
        --identity node_billing.identity.json --realm prod \\
        --node-key <node public key> get_secret billing/database

Without --identity (the node's dev profile) the plain event envelope is sent
and a reply is taken plain, or unwrapped unverified when signed.

Prints the reply envelope (result opened) as JSON; exit 0 on success, 1 on an
error reply, 2 when no reply came (or on a usage error).
"""

import argparse
import base64
import json
import math
import pathlib
import sys
import time
import uuid

import jsonschema
import nacl.public
import pydantic
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from omnibase_core.models.envelope.model_message_envelope import ModelMessageEnvelope
from omnibase_core.models.events.model_event_envelope import ModelEventEnvelope
from omnibase_infra.gateway.services.service_envelope_signer import ServiceEnvelopeSigner
from omnibase_infra.gateway.services.service_envelope_validator import (
    ServiceEnvelopeValidator,
)

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "models" / "schemas"
NODE_RUNTIME_ID = "node_infrastructure_vault_adapter_effect"
DEV_SOURCE_TOOL = "python_requester_example"


def decode_base64(text):
    """Bytes of standard or URL-safe base64, padded or not."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def load_identity(path):
    """The requester's runtime_id, signing key and sealing key from an identity file."""
    identity = json.loads(pathlib.Path(path).read_text())
    if "runtime_id" not in identity:
        raise SystemExit(f"{path}: not a runtime identity file (re-run `onex-vault-adapter keygen`)")
    signing = identity["signing_key"]
    sealing = identity["sealing_key"]
    return {
        "runtime_id": identity["runtime_id"],
        "signing_key": Ed25519PrivateKey.from_private_bytes(decode_base64(signing["private_key"])),
        "sealing_key_id": sealing["id"],
        "sealing_key": nacl.public.PrivateKey(decode_base64(sealing["private_key"])),
    }


def schema(name):
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def build_request(source_tool, payload, timeout_seconds, correlation_id, envelope_id):
    """Step 1: the ONEX event envelope of the request, as JSON-ready dict."""
    envelope = ModelEventEnvelope[dict](
        payload=payload,
        envelope_id=envelope_id,  # envelope_timestamp: now, in UTC
        correlation_id=correlation_id,
        source_tool=source_tool,
        payload_type="ModelVaultAdapterRequest",
        timeout_seconds=max(1, math.ceil(timeout_seconds)),
    )
    event = envelope.model_dump(mode="json")
    jsonschema.validate(event, schema("vault-request"))
    return event


def sign(identity, realm, bus_id, event):
    """Step 2: the signed ModelMessageEnvelope around `event`, as JSON-ready dict."""
    signer = ServiceEnvelopeSigner(realm=realm, runtime_id=identity["runtime_id"], private_key=identity["signing_key"])
    signed = signer.sign_dict(payload=event, bus_id=bus_id, trace_id=uuid.UUID(event["correlation_id"]))
    return signed.model_dump(mode="json")


def looks_signed(record):
    """Upstream's test for a signed envelope (omnibase-infra's runtime host)."""
    signature = record.get("signature")
    return (
        isinstance(signature, dict)
        and "algorithm" in signature
        and all(field in record for field in ("realm", "runtime_id", "bus_id", "payload"))
    )


def read_reply(value, validator, correlation_id):
    """Step 4: the reply event envelope in a record, or None when it is no reply
    we may believe: with a validator (strict), only the payload of an envelope the
    node signed; without (dev), a plain reply or a signed one unwrapped unchecked."""
    try:
        record = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    signed = looks_signed(record)
    inner = record.get("payload") if signed else record
    if validator is None:
        return inner if isinstance(inner, dict) else None
    if not signed:
        why = "not signed"
    else:
        try:
            envelope = ModelMessageEnvelope.model_validate(record)
        except pydantic.ValidationError as error:
            why = f"not a ModelMessageEnvelope: {error.error_count()} errors"
        else:
            result = validator.validate_envelope(envelope)
            if result.is_valid and isinstance(envelope.payload, dict):
                return dict(envelope.payload)
            why = f"{result.error_code.value}: {result.error_message}" if result.error_code else "payload not an object"
    if isinstance(inner, dict) and inner.get("correlation_id") == correlation_id:
        print(f"dropped a reply under our correlation id that does not verify ({why})", file=sys.stderr)
    return None


def open_sealed(identity, reply):
    """Step 5: replaces a sealed result with what it holds (checking it was sealed
    for this request)."""
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
    source_tool = identity["runtime_id"] if identity else DEV_SOURCE_TOOL
    event = build_request(source_tool, payload, args.timeout_seconds, args.correlation_id, args.envelope_id)
    correlation_id, envelope_id = event["correlation_id"], event["envelope_id"]
    if identity:
        record = sign(identity, args.realm, args.bus_id, event)
        node_key = Ed25519PublicKey.from_public_bytes(decode_base64(args.node_key))
        validator = ServiceEnvelopeValidator(
            expected_realm=args.realm, public_keys={args.node_runtime_id: node_key}, reject_unsigned=True
        )
    else:
        record, validator = event, None

    # Assigned before the request leaves: the reply cannot come before we listen.
    consumer = reply_consumer(args.bootstrap_servers, [args.completed_topic, args.failed_topic])
    producer = Producer({"bootstrap.servers": args.bootstrap_servers})
    producer.produce(args.request_topic, key=correlation_id, value=json.dumps(record).encode())
    if producer.flush(10) != 0:
        raise RuntimeError("the request was not delivered to Kafka")

    deadline = time.monotonic() + args.timeout_seconds
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            reply = read_reply(message.value(), validator, correlation_id)
            # Ours: our correlation id, answering the envelope we sent.
            if reply is None or reply.get("correlation_id") != correlation_id:
                continue
            if reply.get("parent_envelope_id") != envelope_id:
                continue
            jsonschema.validate(reply, schema("vault-reply"))
            return open_sealed(identity, reply) if identity else reply
    finally:
        consumer.close()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--identity", help="identity file from `onex-vault-adapter keygen` (strict profile)")
    parser.add_argument("--realm", help="the node's security.realm (strict profile)")
    parser.add_argument("--node-key", help="the node's public signing key, base64 (strict profile)")
    parser.add_argument("--node-runtime-id", default=NODE_RUNTIME_ID, help="the node's runtime_id")
    parser.add_argument("--bus-id", default="default", help="bus_id of the signed request")
    parser.add_argument("--request-topic", default="onex.cmd.omnibase-infra.vault-request.v1")
    parser.add_argument("--completed-topic", default="onex.evt.omnibase-infra.vault-completed.v1")
    parser.add_argument("--failed-topic", default="onex.evt.omnibase-infra.vault-failed.v1")
    parser.add_argument("--timeout-seconds", type=float, default=15.0)
    parser.add_argument("--correlation-id", type=uuid.UUID, help="default: a new one")
    parser.add_argument("--envelope-id", type=uuid.UUID,
                        help="default: a new one (the strict node refuses an envelope_id it saw before)")
    parser.add_argument("--delivery", choices=["sealed", "wrapped", "clear"],
                        help="get_secret: how the secret comes back (default: sealed with --identity, "
                        "else the node's default)")
    parser.add_argument("operation", help="e.g. get_secret, list_secrets")
    parser.add_argument("path", help="secret path or folder")
    args = parser.parse_args()
    if args.identity and not (args.realm and args.node_key):
        parser.error("--identity needs --realm and --node-key (the node's public key)")
    args.correlation_id = args.correlation_id or uuid.uuid4()
    args.envelope_id = args.envelope_id or uuid.uuid4()

    payload = {"operation": args.operation, "path": args.path}
    delivery = args.delivery or ("sealed" if args.identity else None)
    if args.operation == "get_secret" and delivery:
        payload["delivery"] = delivery
    reply = request(args, payload)
    if reply is None:
        print(f"no reply within {args.timeout_seconds} s", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0 if reply["payload"]["status"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
