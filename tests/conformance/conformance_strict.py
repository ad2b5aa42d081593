#!/usr/bin/env python3.12
"""Conformance of a live Vault adapter node in the `strict` profile to ONEX's gateway
trust model, judged by upstream code only (omnibase-core 0.47.57, omnibase-infra
0.38.75).

Run by tests/conformance.rs (the_strict_node_speaks_onex_gateway_trust), once per
phase, with the venv of tests/conformance/requirements.txt (ONEX_UPSTREAM_PYTHON). The
requester is an ONEX runtime: its Ed25519 key is loaded with omnibase-infra's
load_private_key_from_pem, its requests are omnibase-core ModelEventEnvelopes signed
with omnibase-infra's ServiceEnvelopeSigner.sign_dict (as RuntimeHostProcess signs an
outbound dict envelope: bus_id "default", trace_id = correlation id) and published
with EventBusKafka.publish_envelope.

Phases (state passes between them in --state, a JSON file):
  first            a signed get_secret (clear delivery) and one whose metadata has
                   non-ASCII text (the Blake3 hash is over Python's canonical JSON)
                   succeed with the secret; forged (the runtime's id, another key),
                   unknown runtime, tampered after signing, another realm, unsigned,
                   runtime_id changed after signing, a stale envelope_timestamp, an
                   envelope without its own id and timestamp, and an exact re-publish
                   of the answered signed record (its raw bytes and headers, read back
                   from the request topic) to another partition are each refused
                   without a reply (as RuntimeHostProcess._validate_gateway_envelope
                   drops what it refuses): the audit record, naming the reason, is
                   the one output.
  second-instance  (a second instance has joined the group) the saved record again, to
                   every partition: all refused as replayed, by both instances.
  restart          (every instance was replaced by a new one) the saved record again, to
                   every partition: all refused as replayed by an instance not seen
                   before.
Each phase reads every record the node published since the previous phase and judges
it: reply records (completed, failed) must be ModelMessageEnvelopes that omnibase-infra's
ServiceEnvelopeValidator accepts for the node's runtime key and realm, and that
RuntimeHostProcess's inbound gateway (_validate_gateway_envelope: policy engine, the
validator, reject_unsigned) admits and unwraps; the unwrapped reply, and every record of
the other topics (plain envelopes), then gets the checks of conformance.py.

Output as conformance.py: "ok"/"MISMATCH"/"note" lines, then
`conformance: N passed, M failed`; exit status 1 when M > 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from omnibase_core.enums.enum_core_error_code import EnumCoreErrorCode
from omnibase_core.models.envelope.model_message_envelope import ModelMessageEnvelope
from omnibase_core.models.events.model_event_envelope import ModelEventEnvelope
from omnibase_infra.gateway.models.model_gateway_config import ModelGatewayConfig
from omnibase_infra.gateway.services.service_envelope_signer import ServiceEnvelopeSigner
from omnibase_infra.gateway.services.service_envelope_validator import ServiceEnvelopeValidator
from omnibase_infra.gateway.services.service_policy_engine import ServicePolicyEngine
from omnibase_infra.gateway.utils.util_key_loader import load_private_key_from_pem, load_public_key_from_pem
from omnibase_infra.runtime.runtime_host_process import RuntimeHostProcess

from conformance import (
    Reader,
    Rec,
    Tally,
    common_args,
    decode_envelope,
    error_code,
    judge_record,
    main_with,
    note,
    read_to_end,
    start_bus,
    success_with_data,
)

DENIED = EnumCoreErrorCode.PERMISSION_DENIED
# What RuntimeHostProcess._publish_envelope_safe signs with when its bus has no bus_id.
BUS_ID = "default"
SIGNED_ROLES = ("completed", "failed")


# ---------------------------------------------------------------------------
# Keys, as an ONEX runtime loads them (PEM files)
# ---------------------------------------------------------------------------


def b64decode_any(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


class KeyFiles:
    """Keys written as PEM files and read back with omnibase-infra's key loader."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="conformance-keys-")

    def private(self, name: str, key: Ed25519PrivateKey) -> Ed25519PrivateKey:
        path = Path(self.dir.name) / f"{name}.pem"
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        path.chmod(0o600)
        return load_private_key_from_pem(path)

    def public(self, name: str, raw: bytes) -> Ed25519PublicKey:
        path = Path(self.dir.name) / f"{name}.pub.pem"
        key = Ed25519PublicKey.from_public_bytes(raw)
        path.write_bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        return load_public_key_from_pem(path)

    def signer(self, name: str, realm: str, runtime_id: str, key: Ed25519PrivateKey) -> ServiceEnvelopeSigner:
        """A runtime's signer, its key read from a PEM file as RuntimeHostProcess reads it."""
        return ServiceEnvelopeSigner(realm=realm, runtime_id=runtime_id, private_key=self.private(name, key))


# ---------------------------------------------------------------------------
# Reading the node's signed replies as an ONEX runtime's gateway does
# ---------------------------------------------------------------------------


@dataclass
class Unwrapped:
    """How a reply record fared at the gateway (None: not reached)."""

    shape: str | None = None  # why the record is not a signed envelope, or None
    parsed: ModelMessageEnvelope[object] | None = None
    validation: str | None = None  # ServiceEnvelopeValidator's refusal, or None
    gateway: str | None = None  # the runtime gateway's refusal, or None
    trace_id: str | None = None
    causality_id: str | None = None
    inner_correlation: Any = None
    inner_parent: Any = None


class SignedReader(Reader):
    """conformance.Reader that unwraps reply records as RuntimeHostProcess does."""

    def __init__(self, *args: Any, gateway: SimpleNamespace, **kwargs: Any) -> None:
        self.gateway = gateway
        self.unwrapped: dict[tuple[str, int, int], Unwrapped] = {}
        super().__init__(*args, **kwargs)

    def decode(self, rec: Rec) -> None:
        if rec.role == "requests":
            return  # read for the raw bytes of a request only
        if rec.role not in SIGNED_ROLES:
            super().decode(rec)
            return
        u = Unwrapped()
        self.unwrapped[(rec.topic, rec.partition, rec.offset)] = u
        try:
            data = json.loads(rec.value)
        except ValueError as exc:
            u.shape = f"not JSON: {exc}"
        else:
            if not isinstance(data, dict):
                u.shape = f"not a JSON object: {type(data).__name__}"
            else:
                # RuntimeHostProcess._validate_gateway_envelope's test for a signed envelope.
                sig = data.get("signature")
                fields = [f for f in ("realm", "runtime_id", "bus_id", "payload") if f not in data]
                if not (isinstance(sig, dict) and "algorithm" in sig) or fields:
                    u.shape = f"no signature object or missing {fields}; keys {sorted(data)}"
        if u.shape is not None:
            rec.decode_error = f"not a signed envelope: {u.shape}"
            return
        try:
            u.parsed = ModelMessageEnvelope.model_validate(data)
        except Exception as exc:  # noqa: BLE001 - reported as a mismatch
            u.shape = f"ModelMessageEnvelope.model_validate: {type(exc).__name__}: {str(exc)[:800]}"
            rec.decode_error = u.shape
            return
        result = self.gateway._envelope_validator.validate_envelope(u.parsed)
        if not result:
            u.validation = f"{result.error_code}: {result.error_message}"
        u.trace_id = str(data.get("trace_id"))
        u.causality_id = data.get("causality_id")
        inner = data.get("payload") if isinstance(data.get("payload"), dict) else {}
        u.inner_correlation = inner.get("correlation_id")
        u.inner_parent = inner.get("parent_envelope_id")
        # The runtime's own inbound gate (it is a coroutine that awaits nothing;
        # this runs in a worker thread, so it gets a loop of its own).
        extracted = asyncio.run(RuntimeHostProcess._validate_gateway_envelope(self.gateway, data, rec.topic))
        if extracted is None:
            u.gateway = "refused (see the upstream warning on stderr)"
            rec.decode_error = "RuntimeHostProcess._validate_gateway_envelope refused the record"
            return
        rec.envelope, rec.decode_error = decode_envelope(json.dumps(extracted).encode("utf-8"))


def runtime_gateway(realm: str, node_runtime_id: str, node_key: Ed25519PublicKey, topics: list[str]) -> SimpleNamespace:
    """The three parts of RuntimeHostProcess that _validate_gateway_envelope uses, set up
    as its _initialize_gateway sets them up, trusting the node's runtime key."""
    return SimpleNamespace(
        _policy_engine=ServicePolicyEngine(allowed_topics=topics, expected_realm=realm),
        _envelope_validator=ServiceEnvelopeValidator(
            expected_realm=realm, public_keys={node_runtime_id: node_key}, reject_unsigned=True
        ),
        _gateway_config=ModelGatewayConfig(realm=realm, runtime_id="conformance_reader", reject_unsigned=True),
    )


def judge_signed(t: Tally, reader: SignedReader, rec: Rec, node_runtime_id: str, realm: str) -> None:
    """The gateway checks of one reply record (before conformance.judge_record)."""
    u = reader.unwrapped.get((rec.topic, rec.partition, rec.offset))
    if u is None:
        return
    role = rec.role
    if not t.check(u.shape is None and u.parsed is not None, f"{rec.where} is a signed ModelMessageEnvelope",
                   str(u.shape), sum_as=f"{role}: ModelMessageEnvelope.model_validate accepts the signed record"):
        return
    env = u.parsed
    assert env is not None
    t.check(u.validation is None, f"{rec.where} ServiceEnvelopeValidator", str(u.validation),
            sum_as=f"{role}: ServiceEnvelopeValidator accepts it (realm, the node's key, Blake3, Ed25519)")
    t.check(u.gateway is None, f"{rec.where} RuntimeHostProcess gateway", str(u.gateway),
            sum_as=f"{role}: RuntimeHostProcess._validate_gateway_envelope admits and unwraps it")
    t.check(env.runtime_id == node_runtime_id and env.signature.signer == node_runtime_id and env.realm == realm,
            f"{rec.where} signed by the node's runtime in its realm",
            f"runtime_id {env.runtime_id!r} signer {env.signature.signer!r} realm {env.realm!r}",
            sum_as=f"{role}: runtime_id and signer are the node's runtime id, realm the node's")
    t.check(u.trace_id == str(u.inner_correlation), f"{rec.where} trace_id == reply correlation_id",
            f"trace_id {u.trace_id} correlation_id {u.inner_correlation}",
            sum_as=f"{role}: trace_id == the reply's correlation_id")
    t.check(u.causality_id == u.inner_parent, f"{rec.where} causality_id == reply parent_envelope_id",
            f"causality_id {u.causality_id} parent_envelope_id {u.inner_parent}",
            sum_as=f"{role}: causality_id == the reply's parent_envelope_id (the request's envelope_id)")


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    correlation: uuid.UUID
    envelope_id: str | None  # the inner envelope's, when it has one
    runtime_id: str | None  # the runtime the published record claims (None: unsigned)
    # "success", or the denial the audit record must name
    expect: str


def inner_envelope(payload: dict[str, Any], **fields: Any) -> ModelEventEnvelope[object]:
    return ModelEventEnvelope[object](
        payload=payload, correlation_id=uuid.uuid4(), source_tool="conformance_strict_py", **fields
    )


def signed_dict(signer: ServiceEnvelopeSigner, envelope: dict[str, Any]) -> dict[str, Any]:
    """What RuntimeHostProcess._publish_envelope_safe publishes for a dict envelope."""
    signed = signer.sign_dict(payload=envelope, bus_id=BUS_ID, trace_id=uuid.UUID(str(envelope["correlation_id"])))
    return signed.model_dump(mode="json")


# Refusals of a record anyone could have sent (not verified, or a replay): the node
# does not answer them, as upstream's gateway drops them; they are only audited.
UNANSWERED = {"unsigned", "malformed_signed_envelope", "signer_is_not_runtime", "emitter_not_in_realm",
              "realm_mismatch", "unknown_signer", "hash_mismatch", "invalid_signature",
              "envelope_id_or_timestamp_missing", "timestamp_outside_window", "replayed"}


def expected_outputs(case: Case, *, fresh: bool, replayed: int) -> tuple[int, int]:
    """(replies, audit records) of `case` in a phase: one audit record per copy the
    node read; a reply only to a fresh request it did not refuse at the gateway."""
    replies = 1 if fresh and case.expect not in UNANSWERED else 0
    return replies, (1 if fresh else 0) + replayed


def judge_case(t: Tally, reader: Reader, case: Case, phase: str, *, fresh: bool, replayed: int,
               want: dict[str, str], instances: Counter[str] | None = None) -> None:
    """The replies and audit records of `case` read in this phase: when it was
    published in this phase (`fresh`), its answer as `case.expect` says; and a
    refusal for each of the `replayed` copies re-published."""
    cid = case.correlation
    mine = [r for r in reader.of("completed", "failed") if r.correlation_id == cid]
    completed = [r for r in mine if r.role == "completed"]
    failed = [r for r in mine if r.role == "failed"]
    replies, _ = expected_outputs(case, fresh=fresh, replayed=replayed)
    succeeded = replies if case.expect == "success" else 0
    want_failed = replies - succeeded
    t.check(len(completed) == succeeded and len(failed) == want_failed,
            f"{phase}: {case.name}: {succeeded} completed and {want_failed} failed replies",
            f"got {len(completed)} completed, {len(failed)} failed (correlation_id {cid})")
    for r in completed:
        ok, detail = success_with_data(want)(r.payload)
        t.check(ok, f"{phase}: {case.name}: the reply has the secret", detail)
    for r in failed:
        ok, detail = error_code(DENIED)(r.payload)
        t.check(ok and (r.payload.get("error") or {}).get("retryable") is False,
                f"{phase}: {case.name}: refused with {DENIED.value} (not retryable)", detail)
    if case.envelope_id is not None:
        parents = {str(r.envelope.parent_envelope_id) for r in mine if r.envelope is not None}
        t.check(parents <= {case.envelope_id}, f"{phase}: {case.name}: replies' parent_envelope_id is its envelope_id",
                f"got {parents}, request {case.envelope_id}")
    audits = [a.payload for a in reader.of("audit") if a.payload.get("correlation_id") == str(cid)]
    outcomes = Counter("success" if a.get("outcome") == "success" else str(a.get("denial")) for a in audits)
    expected: Counter[str] = Counter()
    if succeeded:
        expected["success"] += succeeded
    if fresh and case.expect != "success":
        expected[case.expect] += 1
    if replayed:
        expected["replayed"] += replayed
    t.check(outcomes == expected, f"{phase}: {case.name}: audit says {dict(expected)}", f"got {dict(outcomes)}")
    claimed = {a.get("runtime_id") for a in audits}
    t.check(claimed <= {case.runtime_id}, f"{phase}: {case.name}: audit runtime_id is the one the record claims",
            f"got {claimed}, the record claims {case.runtime_id!r}")
    for a in audits:
        if a.get("outcome") != "success":
            t.check(a.get("error_code") == DENIED.value and a.get("outcome") == "error",
                    f"{phase}: {case.name}: audit of the refusal has {DENIED.value}",
                    f"got outcome {a.get('outcome')!r} error_code {a.get('error_code')!r}")
        if instances is not None and a.get("denial") == "replayed":
            instances[str(a.get("instance_id"))] += 1


# ---------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = common_args(__doc__.split("\n\n")[0])
    ap.add_argument("--phase", required=True, choices=["first", "second-instance", "restart"])
    ap.add_argument("--state", required=True, help="JSON file the phases pass to each other")
    ap.add_argument("--replay-claims-topic", required=True)
    ap.add_argument("--realm", required=True, help="the node's security.realm")
    ap.add_argument("--node-runtime-id", required=True)
    ap.add_argument("--node-public-key", required=True, help="the node's Ed25519 public key, base64")
    ap.add_argument("--requester-runtime-id", required=True, help="the runtime the node's access policy lists")
    ap.add_argument("--requester-seed", required=True, help="its Ed25519 private key (32-byte seed), base64")
    ap.add_argument("--requester-public-key", required=True, help="the key the node's access policy lists")
    ap.add_argument("--min-health-events", type=int, default=1)
    return ap.parse_args()


def load_state(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def republish(bootstrap: str, topic: str, saved: dict[str, Any], partitions: list[int]) -> None:
    """The saved request record, byte for byte (value, key, headers), to `partitions`."""
    producer = Producer({"bootstrap.servers": bootstrap})
    value = base64.b64decode(saved["value"])
    key = base64.b64decode(saved["key"]) if saved.get("key") is not None else None
    headers = [(k, base64.b64decode(v) if v is not None else None) for k, v in saved["headers"]]
    errors: list[str] = []
    for p in partitions:
        producer.produce(topic, value=value, key=key, partition=p, headers=headers,
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    left = producer.flush(15)
    if left or errors:
        raise RuntimeError(f"re-publishing failed: {left} undelivered, errors {errors}")
    note(f"re-published the saved signed record ({len(value)} bytes) to partitions {partitions}")


async def run(args: argparse.Namespace, t: Tally) -> bool:
    t0 = time.monotonic()
    state = load_state(args.state)
    keys = KeyFiles()
    node_key = keys.public("node", b64decode_any(args.node_public_key))
    topics = {
        "completed": args.completed_topic,
        "failed": args.failed_topic,
        "health": args.health_topic,
        "audit": args.audit_topic,
        "dlq": args.dlq_topic,
        "circuit_breaker": args.circuit_breaker_topic,
        "replay_claims": args.replay_claims_topic,
        "requests": args.requests_topic,
    }
    if args.lease_events_topic:
        topics["lease_events"] = args.lease_events_topic
    gateway = runtime_gateway(args.realm, args.node_runtime_id, node_key, [args.completed_topic, args.failed_topic])
    start = {(k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1])): v for k, v in state.get("offsets", {}).items()}
    reader = SignedReader(args.bootstrap_servers, topics, start, gateway=gateway)
    partitions = sorted({tp.partition for tp in reader.partitions if tp.topic == args.requests_topic})
    bus = await start_bus(args.bootstrap_servers)
    note(f"phase {args.phase}: reader assigned and bus started in {time.monotonic() - t0:.1f} s")

    want = {args.secret_key: args.secret_value}
    req_topic, path = args.requests_topic, args.secret_path
    get = {"operation": "get_secret", "path": path, "mount_point": args.mount, "delivery": "clear"}
    cases: list[Case] = []
    replays: dict[str, int] = {}  # case name -> copies re-published in this phase
    original: Case | None = None
    deadline = time.monotonic() + args.timeout_seconds
    left: list[str] = []
    try:
        if args.phase == "first":
            seed = b64decode_any(args.requester_seed)
            me = Ed25519PrivateKey.from_private_bytes(seed)
            mine_public = me.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            t.check(mine_public == b64decode_any(args.requester_public_key),
                    "the requester's seed makes the public key the node's access policy lists")
            runtime = args.requester_runtime_id
            signer = keys.signer("requester", args.realm, runtime, me)
            forger = keys.signer("forger", args.realm, runtime, Ed25519PrivateKey.generate())
            stranger = keys.signer("stranger", args.realm, f"runtime_stranger_{uuid.uuid4().hex[:8]}",
                                   Ed25519PrivateKey.generate())
            elsewhere = keys.signer("elsewhere", f"{args.realm}-elsewhere", runtime, me)

            def case(name: str, expect: str, body: dict[str, Any],
                     env: ModelEventEnvelope[object]) -> tuple[dict[str, Any], str]:
                inner = body["payload"] if "signature" in body else body
                assert env.correlation_id is not None
                cases.append(Case(name, env.correlation_id, inner.get("envelope_id"), body.get("runtime_id"), expect))
                return body, name

            def dumped(env: ModelEventEnvelope[object]) -> dict[str, Any]:
                return env.model_dump(mode="json")

            published = []
            env = inner_envelope(get)
            published.append(case("signed get_secret", "success", signed_dict(signer, dumped(env)), env))
            env = inner_envelope(get)
            env.metadata.tags.update({"note": "café ☃ 𝄞 \"quoted\" \\ tab\t", "ünïcode-key": "ß"})
            published.append(case("signed get_secret, non-ASCII metadata", "success",
                                  signed_dict(signer, dumped(env)), env))
            env = inner_envelope(get)
            published.append(case("forged (the runtime's id, another key)", "invalid_signature",
                                  signed_dict(forger, dumped(env)), env))
            env = inner_envelope(get)
            published.append(case("unknown runtime", "unknown_signer", signed_dict(stranger, dumped(env)), env))
            env = inner_envelope(get)
            tampered = signed_dict(signer, dumped(env))
            tampered["payload"]["payload"]["path"] = f"{path}-elsewhere"
            published.append(case("tampered after signing (payload.path)", "hash_mismatch", tampered, env))
            env = inner_envelope(get)
            published.append(case("signed in another realm", "realm_mismatch",
                                  signed_dict(elsewhere, dumped(env)), env))
            env = inner_envelope(get)
            published.append(case("unsigned ModelEventEnvelope", "unsigned", dumped(env), env))
            env = inner_envelope(get)
            renamed = signed_dict(signer, dumped(env))
            renamed["runtime_id"] = stranger.runtime_id
            published.append(case("runtime_id changed after signing", "signer_is_not_runtime", renamed, env))
            env = inner_envelope(get, envelope_timestamp=datetime.now(UTC) - timedelta(seconds=600))
            published.append(case("envelope_timestamp 600 s old", "timestamp_outside_window",
                                  signed_dict(signer, dumped(env)), env))
            env = inner_envelope(get)
            bare = dumped(env)
            del bare["envelope_id"], bare["envelope_timestamp"]
            published.append(case("signed dict without envelope_id and envelope_timestamp",
                                  "envelope_id_or_timestamp_missing", signed_dict(signer, bare), env))
            for body, name in published:
                await bus.publish_envelope(body, req_topic, key=path.encode())
            note(f"published {len(published)} requests with EventBusKafka.publish_envelope")
            original = cases[0]
        else:
            saved = state["replay"]
            original = Case(saved["name"], uuid.UUID(saved["correlation_id"]), saved["envelope_id"],
                            saved["runtime_id"], "success")
            await asyncio.to_thread(republish, args.bootstrap_servers, req_topic, saved, partitions)
            replays[original.name] = len(partitions)

        def answered(c: Case) -> int:
            return sum(1 for r in reader.of("completed", "failed") if r.correlation_id == c.correlation)

        def audited(c: Case) -> int:
            return sum(1 for a in reader.of("audit") if a.payload.get("correlation_id") == str(c.correlation))

        def saved_record() -> Rec | None:
            assert original is not None
            for r in reader.of("requests"):
                try:
                    body = json.loads(r.value)
                except ValueError:
                    continue
                if isinstance(body, dict) and body.get("trace_id") == str(original.correlation):
                    return r
            return None

        def outstanding() -> list[str]:
            # The replies and audit records of every request published in this phase,
            # and of every copy re-published.
            expected = [(c, True) for c in cases]
            if args.phase != "first" and original is not None:
                expected.append((original, False))
            out = []
            for c, fresh in expected:
                replies, audits = expected_outputs(c, fresh=fresh, replayed=replays.get(c.name, 0))
                if answered(c) < replies:
                    out.append(f"{replies} replies to {c.name} (have {answered(c)})")
                if audited(c) < audits:
                    out.append(f"{audits} audit records of {c.name} (have {audited(c)})")
            if args.phase == "first" and "replay" not in state:
                out.append("the replay of the answered signed request (not sent yet)")
            n_health = len(reader.of("health"))
            if n_health < args.min_health_events:
                out.append(f"{args.min_health_events} health events (have {n_health})")
            return out

        while True:
            await asyncio.to_thread(reader.poll, 0.5)
            if args.phase == "first" and "replay" not in state and original is not None and answered(original):
                rec = saved_record()
                if rec is not None:
                    state["replay"] = {
                        "name": original.name,
                        "correlation_id": str(original.correlation),
                        "envelope_id": original.envelope_id,
                        "runtime_id": original.runtime_id,
                        "partition": rec.partition,
                        "key": base64.b64encode(rec.key).decode() if rec.key is not None else None,
                        "value": base64.b64encode(rec.value).decode(),
                        "headers": [[k, base64.b64encode(v).decode() if v is not None else None]
                                    for k, v in rec.headers],
                    }
                    other = [p for p in partitions if p != rec.partition][:1]
                    await asyncio.to_thread(republish, args.bootstrap_servers, req_topic, state["replay"], other)
                    replays[original.name] = 1
            left = outstanding()
            if not left or time.monotonic() > deadline:
                break
    finally:
        await bus.close()
    note(f"{'gave up waiting' if left else 'everything expected arrived'} {time.monotonic() - t0:.1f} s after start")
    await read_to_end(t, reader, t0)
    for missing in left:
        t.check(False, f"arrived within {args.timeout_seconds:.0f} s: {missing}", "never arrived")

    # Every record, by upstream's code: the gateway first for the signed ones.
    for rec in reader.records:
        if rec.role == "requests":
            continue
        judge_signed(t, reader, rec, args.node_runtime_id, args.realm)
        judge_record(t, bus, rec)

    # Every request of the phase, against its replies and audit records.
    phase = args.phase
    refusers: Counter[str] = Counter()
    for c in cases:
        if c is not original:
            judge_case(t, reader, c, phase, fresh=True, replayed=0, want=want)
    assert original is not None
    judge_case(t, reader, original, phase, fresh=phase == "first", replayed=replays.get(original.name, 0),
               want=want, instances=refusers)
    if phase == "first":
        t.check("replay" in state, "first: the answered signed request read back from the request topic")

    # Who judged the requests: the instances' ids, from the audit trail.
    judges = sorted({str(a.payload.get("instance_id")) for a in reader.of("audit")})
    seen_before = set(state.get("instances", []))
    t.check(all(j and j != "None" for j in judges), f"{phase}: every audit record names its instance_id",
            f"got {judges}")
    if phase == "second-instance":
        t.check(len(refusers) == 2 and len(seen_before & set(refusers)) == 1,
                "second-instance: both instances refused a copy (the first one and a new one)",
                f"refused by {dict(refusers)}; seen before {sorted(seen_before)}")
    if phase == "restart":
        t.check(bool(refusers) and not seen_before & set(refusers),
                "restart: refused by an instance not seen before",
                f"refused by {dict(refusers)}; seen before {sorted(seen_before)}")
    note(f"{phase}: audit records judged by {judges}")

    state["instances"] = sorted(seen_before | set(judges))
    state["offsets"] = {f"{topic}:{p}": o for (topic, p), o in reader.next_offset.items()}
    Path(args.state).write_text(json.dumps(state))
    reader.close()
    return not left


if __name__ == "__main__":
    raise SystemExit(main_with(run, parse_args()))
