#!/usr/bin/env python3.12
"""Conformance of a live Vault adapter node to the upstream ONEX wire, judged by
upstream code only (omnibase-core 0.47.57, omnibase-infra 0.38.75).

Run by tests/conformance.rs against a node in the `dev` security profile (plain,
unsigned envelopes), with the venv that scripts/install-test-servers.sh makes from
tests/conformance/requirements.txt (ONEX_UPSTREAM_PYTHON).

What it does:
  1. Builds request envelopes with omnibase-core's ModelEventEnvelope and publishes
     them with omnibase-infra's own EventBusKafka.publish_envelope (the record body and
     the Kafka headers are upstream's): a get_secret of a secret the driver wrote,
     the same through upstream's operation and field names (vault.read_secret,
     mount_point), one without correlation_id, a write_secret with `secret` then a read
     back, a missing secret, an unknown operation; and one record that is not JSON,
     through EventBusKafka.publish (raw bytes, upstream headers).
  2. Reads back EVERY record of the node's reply, failed, health, audit, DLQ,
     circuit-breaker (and lease-event) topics from the beginning, with a plain
     confluent-kafka consumer on assign() (no group join: upstream's own subscribe()
     takes ~25 s to join a group on Tansu).
  3. Judges each record with upstream code: omnibase-core's decode_inbound_envelope
     (what an ONEX consumer does with a record), omnibase-infra's
     EventBusKafka._kafka_headers_to_model (how its bus reads headers) and the
     identity the headers must carry, omnibase-infra's derive_event_type_from_topic
     (the body event_type a type-scoped dispatcher keys on), EnumCoreErrorCode for
     every error code, ModelNodeHealthEvent and ModelCircuitBreakerStateEvent for the
     event payloads; and each reply against its request.

conformance_strict.py (the strict profile) imports this module's reader and checks.

Prints one line per check ("ok ..." / "MISMATCH ..."; passing checks that repeat over
many records are summed into one "ok" line unless --verbose), then exactly
`conformance: N passed, M failed`. Exit status 1 when M > 0 (anything expected that
never arrived within --timeout-seconds counts as failed, and so does a crash), 2 on a
usage error. "note" lines are information, not checks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Awaitable, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from omnibase_core.enums.enum_core_error_code import EnumCoreErrorCode
from omnibase_core.enums.enum_health_status import EnumHealthStatus
from omnibase_core.models.discovery.model_nodehealthevent import ModelNodeHealthEvent
from omnibase_core.models.events.model_event_envelope import ModelEventEnvelope
from omnibase_core.runtime.runtime_envelope_router import decode_inbound_envelope
from omnibase_infra.event_bus.event_bus_kafka import EventBusKafka
from omnibase_infra.event_bus.models.config import ModelKafkaEventBusConfig
from omnibase_infra.event_bus.models.model_event_headers import ModelEventHeaders
from omnibase_infra.models.resilience.model_circuit_breaker_state_event import (
    ModelCircuitBreakerStateEvent,
)
from omnibase_infra.nodes.node_dlq_replay_effect.models.model_dlq_message import ModelDlqMessage
from omnibase_infra.utils.util_topic_event_type import derive_event_type_from_topic

ERROR_CODES = frozenset(code.value for code in EnumCoreErrorCode)
HEALTH_STATUSES = frozenset(status.value for status in EnumHealthStatus)
# The headers omnibase-infra's _model_headers_to_kafka always writes.
ALWAYS_HEADERS = (
    "content_type",
    "correlation_id",
    "message_id",
    "timestamp",
    "source",
    "event_type",
    "schema_version",
    "priority",
    "retry_count",
    "max_retries",
)
REPLY_KEYS = {"operation", "status", "result", "error", "duration_ms"}
# What omnibase-core stamps on an envelope today (2.3.0 / 1.0.0).
CURRENT_ENVELOPE = ModelEventEnvelope[object](payload={})


# ---------------------------------------------------------------------------
# Tally
# ---------------------------------------------------------------------------


class Tally:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.passed = 0
        self.failed = 0
        # checks repeated over many records, summed per label (unless verbose): passing
        # ones printed at the end; failing ones printed for the first SHOWN records,
        # then counted at the end
        self.summed: Counter[str] = Counter()
        self.mismatched: Counter[str] = Counter()

    def check(self, ok: bool, label: str, detail: str = "", *, sum_as: str | None = None) -> bool:
        if ok:
            self.passed += 1
            if sum_as is not None and not self.verbose:
                self.summed[sum_as] += 1
            else:
                print(f"ok {label}", flush=True)
        else:
            self.failed += 1
            if sum_as is not None and not self.verbose:
                self.mismatched[sum_as] += 1
                if self.mismatched[sum_as] > self.SHOWN:
                    return ok
            print(f"MISMATCH {label}{': ' + detail if detail else ''}", flush=True)
        return ok

    SHOWN = 2

    def print_sums(self) -> None:
        for label, n in self.summed.items():
            print(f"ok {label} ({n} records)", flush=True)
        for label, n in self.mismatched.items():
            shown = f"; the first {self.SHOWN} shown above" if n > self.SHOWN else ""
            print(f"MISMATCH {label}: {n} records ({self.summed[label]} passed){shown}", flush=True)


def note(text: str) -> None:
    print(f"note {text}", flush=True)


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass
class Rec:
    role: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]]
    envelope: ModelEventEnvelope[object] | None = None
    decode_error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.role} {self.partition}@{self.offset}"

    @property
    def payload(self) -> dict[str, Any]:
        if self.envelope is not None and isinstance(self.envelope.payload, dict):
            return self.envelope.payload
        return {}

    @property
    def correlation_id(self) -> uuid.UUID | None:
        return self.envelope.correlation_id if self.envelope is not None else None


def decode_envelope(value: bytes) -> tuple[ModelEventEnvelope[object] | None, str | None]:
    """omnibase-core's decode_inbound_envelope: the envelope, or why not."""
    try:
        return decode_inbound_envelope(value), None
    except Exception as exc:  # noqa: BLE001 - reported as a mismatch
        cause = exc.__cause__ or exc
        return None, f"{type(exc).__name__}: {exc}; cause: {cause}"[:2000]


class Reader:
    """Every record of the node's topics, from the beginning, via assign()."""

    def __init__(
        self, bootstrap: str, topics: dict[str, str], start: dict[tuple[str, int], int] | None = None
    ) -> None:
        """`start`: the offset to read each (topic, partition) from (default: the beginning)."""
        self.topics = topics  # role -> topic
        self.role_of = {topic: role for role, topic in topics.items()}
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"conformance-{uuid.uuid4()}",  # never joined: assign() only
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.partitions: list[TopicPartition] = []
        for topic in topics.values():
            meta = self.consumer.list_topics(topic, timeout=15).topics[topic]
            if meta.error is not None:
                raise SystemExit(f"topic {topic}: {meta.error}")
            for p in sorted(meta.partitions):
                self.partitions.append(TopicPartition(topic, p, (start or {}).get((topic, p), OFFSET_BEGINNING)))
        self.consumer.assign(self.partitions)
        self.records: list[Rec] = []
        self.next_offset: dict[tuple[str, int], int] = dict(start or {})

    def poll(self, seconds: float) -> list[Rec]:
        """Records that arrived within `seconds` (returns early once some did)."""
        got = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = self.consumer.poll(min(0.2, max(0.0, end - time.monotonic())))
            if msg is None:
                if got:
                    break
                continue
            if msg.error():
                note(f"consumer: {msg.error()}")
                continue
            rec = Rec(
                role=self.role_of[msg.topic()],
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                key=msg.key(),
                value=msg.value() or b"",
                headers=list(msg.headers() or []),
            )
            self.decode(rec)
            self.records.append(rec)
            self.next_offset[(rec.topic, rec.partition)] = rec.offset + 1
            got.append(rec)
        return got

    def decode(self, rec: Rec) -> None:
        """Reads the record as an ONEX consumer does (sets envelope or decode_error)."""
        rec.envelope, rec.decode_error = decode_envelope(rec.value)

    def drain(self, seconds: float) -> bool:
        """Reads up to the current end of every partition; False if it could not."""
        # One ListOffsets request for all partitions (the consumer's
        # get_watermark_offsets costs ~0.5 s per partition against Tansu).
        latest = self.admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in self.partitions},
            request_timeout=10,
        )
        ends = {(tp.topic, tp.partition): f.result().offset for tp, f in latest.items()}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            behind = [k for k, high in ends.items() if self.next_offset.get(k, 0) < high]
            if not behind:
                return True
            self.poll(0.5)
        return False

    def of(self, *roles: str) -> list[Rec]:
        return [r for r in self.records if r.role in roles]

    def close(self) -> None:
        self.consumer.close()


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


@dataclass
class Request:
    name: str
    envelope: ModelEventEnvelope[object]
    key: bytes
    # judges the reply's payload: returns (ok, detail)
    judge: Callable[[dict[str, Any]], tuple[bool, str]]
    expect_status: str
    # the correlation the reply must carry
    expect_correlation: uuid.UUID = field(init=False)

    def __post_init__(self) -> None:
        self.expect_correlation = self.envelope.correlation_id or self.envelope.envelope_id


def request_envelope(payload: dict[str, Any], *, correlation: bool = True, **fields: Any) -> ModelEventEnvelope:
    return ModelEventEnvelope[object](
        payload=payload,
        correlation_id=uuid.uuid4() if correlation else None,
        source_tool="conformance_py",
        **fields,
    )


def success_with_data(want: dict[str, Any]) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    def judge(p: dict[str, Any]) -> tuple[bool, str]:
        data = (p.get("result") or {}).get("data")
        ok = p.get("status") == "success" and isinstance(data, dict) and all(data.get(k) == v for k, v in want.items())
        return ok, f"want status success and result.data ⊇ {sorted(want)}; got {redact(p)}"

    return judge


def success(p: dict[str, Any]) -> tuple[bool, str]:
    return p.get("status") == "success" and "result" in p, f"want status success with a result; got {redact(p)}"


def error_code(code: EnumCoreErrorCode) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    def judge(p: dict[str, Any]) -> tuple[bool, str]:
        got = (p.get("error") or {}).get("code")
        return p.get("status") == "error" and got == code.value, f"want error {code.value}; got {redact(p)}"

    return judge


def redact(p: Any) -> str:
    """The reply without secret values (result.data), for messages."""
    if isinstance(p, dict) and isinstance(p.get("result"), dict) and "data" in p["result"]:
        p = {**p, "result": {**p["result"], "data": sorted(p["result"]["data"] or {})}}
    return json.dumps(p, default=str)[:600]


# ---------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------


async def start_bus(bootstrap: str) -> EventBusKafka:
    """omnibase-infra's EventBusKafka, started.

    Upstream's producer defaults to enable_idempotence=True: aiokafka then sends
    InitProducerId at start(), which Tansu 0.6.0 (memory storage, the test broker)
    answers with UnknownError, so EventBusKafka.start() fails. Idempotence only
    guards against duplicates on producer retries; it changes nothing in the body
    or headers that reach the node, so it is off here.
    """
    bus = EventBusKafka(
        config=ModelKafkaEventBusConfig(
            bootstrap_servers=bootstrap,
            environment="local",
            timeout_seconds=15,
            enable_idempotence=False,
        )
    )
    await bus.start()
    return bus


def judge_record(t: Tally, bus: EventBusKafka, rec: Rec) -> None:
    """What every record the node publishes must satisfy."""
    role = rec.role
    if not t.check(rec.decode_error is None, f"{rec.where} decode_inbound_envelope", str(rec.decode_error),
                   sum_as=f"{role}: decode_inbound_envelope accepts the record"):
        return
    env = rec.envelope
    assert env is not None
    names = [k for k, _ in rec.headers]
    missing = [h for h in ALWAYS_HEADERS if h not in names]
    t.check(not missing, f"{rec.where} always-written headers present", f"missing {missing}; has {names}",
            sum_as=f"{role}: the 10 always-written headers present")
    dupes = [k for k, n in Counter(names).items() if n > 1]
    t.check(not dupes, f"{rec.where} no duplicate headers", f"duplicated {dupes}",
            sum_as=f"{role}: no header written twice")
    try:
        hdr: ModelEventHeaders = bus._kafka_headers_to_model(rec.headers)
    except Exception as exc:  # noqa: BLE001
        t.check(False, f"{rec.where} _kafka_headers_to_model", f"{type(exc).__name__}: {exc}")
        return
    # _kafka_headers_to_model silently replaces what it cannot read (a malformed UUID by
    # a fresh one, an unknown priority by "normal", a non-integer count by its
    # default): the raw values must be the ones it kept.
    raw = {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in rec.headers}
    kept = {
        "content_type": hdr.content_type,
        "correlation_id": str(hdr.correlation_id),
        "message_id": str(hdr.message_id),
        "priority": hdr.priority,
        "retry_count": str(hdr.retry_count),
        "max_retries": str(hdr.max_retries),
        "parent_message_id": str(hdr.parent_message_id) if hdr.parent_message_id else None,
    }
    replaced = {k: (raw.get(k), v) for k, v in kept.items() if k in raw and raw[k] != v}
    t.check(not replaced and hdr.content_type == "application/json",
            f"{rec.where} header values kept as written by _kafka_headers_to_model",
            f"(written, read) {replaced}; content_type {hdr.content_type!r}",
            sum_as=f"{role}: header values are read back unchanged by _kafka_headers_to_model")
    t.check(hdr.message_id == env.envelope_id, f"{rec.where} message_id header == envelope_id",
            f"header {hdr.message_id} body {env.envelope_id}", sum_as=f"{role}: message_id header == envelope_id")
    if env.correlation_id is not None:
        t.check(hdr.correlation_id == env.correlation_id, f"{rec.where} correlation_id header == correlation_id",
                f"header {hdr.correlation_id} body {env.correlation_id}",
                sum_as=f"{role}: correlation_id header == body correlation_id")
    t.check(hdr.parent_message_id == env.parent_envelope_id,
            f"{rec.where} parent_message_id header == parent_envelope_id",
            f"header {hdr.parent_message_id} body {env.parent_envelope_id}",
            sum_as=f"{role}: parent_message_id header == parent_envelope_id")
    t.check(hdr.event_type == rec.topic, f"{rec.where} event_type header == topic",
            f"header {hdr.event_type!r} topic {rec.topic!r}", sum_as=f"{role}: event_type header == topic")
    # The body's event_type is a different vocabulary from the header's: upstream's
    # publishers (DispatchResultApplier, wrap_outbound_envelope, the outbox) stamp
    # derive_event_type_from_topic(topic) = "{producer}.{event-name}", and that is
    # what MessageDispatchEngine routes on (a type-scoped dispatcher drops anything
    # else). Unset would be filled the same way by upstream's consumer.
    derived = derive_event_type_from_topic(rec.topic)
    t.check(env.event_type in (None, derived), f"{rec.where} body event_type == derive_event_type_from_topic(topic)",
            f"body event_type {env.event_type!r}, upstream derives {derived!r} from {rec.topic!r}",
            sum_as=f"{role}: body event_type is upstream's routing key {derived!r}")
    t.check(env.envelope_version == CURRENT_ENVELOPE.envelope_version,
            f"{rec.where} envelope_version == {CURRENT_ENVELOPE.envelope_version}",
            f"got {env.envelope_version}", sum_as=f"{role}: envelope_version {CURRENT_ENVELOPE.envelope_version}")

    p = env.payload
    if role in ("completed", "failed"):
        judge_reply_shape(t, rec, p)
    elif role == "health":
        judge_health(t, rec, p)
    elif role == "circuit_breaker":
        try:
            ev = ModelCircuitBreakerStateEvent.model_validate(p)
            t.check(True, f"{rec.where} ModelCircuitBreakerStateEvent {ev.previous_state}->{ev.state}")
        except Exception as exc:  # noqa: BLE001
            t.check(False, f"{rec.where} ModelCircuitBreakerStateEvent.model_validate", str(exc)[:800])
    elif role == "audit":
        code = p.get("error_code") if isinstance(p, dict) else None
        t.check(code is None or code in ERROR_CODES, f"{rec.where} audit error_code in EnumCoreErrorCode",
                f"got {code!r}", sum_as="audit: error_code is None or an EnumCoreErrorCode value")
    elif role == "dlq":
        ok = isinstance(p, dict) and p.get("error_type") in ERROR_CODES
        t.check(ok, f"{rec.where} dead letter error_type in EnumCoreErrorCode", f"got {redact(p)}",
                sum_as="dlq: error_type is an EnumCoreErrorCode value")
        t.check("deadletter" in (env.payload_type or "").lower(), f"{rec.where} dead letter payload_type",
                f"got {env.payload_type!r}", sum_as="dlq: payload_type names a dead letter")


def judge_reply_shape(t: Tally, rec: Rec, p: Any) -> None:
    role = rec.role
    if not t.check(isinstance(p, dict), f"{rec.where} reply payload is an object", f"got {p!r}"[:300],
                   sum_as=f"{role}: reply payload is an object"):
        return
    extra = set(p) - REPLY_KEYS
    t.check(not extra and {"operation", "status", "duration_ms"} <= set(p), f"{rec.where} reply keys",
            f"keys {sorted(p)}", sum_as=f"{role}: reply payload has operation, status, duration_ms and nothing unknown")
    want = "success" if role == "completed" else "error"
    t.check(p.get("status") == want, f"{rec.where} status {want} on the {role} topic", f"got {redact(p)}",
            sum_as=f"{role}: status is {want!r}")
    if want == "error":
        err = p.get("error") or {}
        t.check(err.get("code") in ERROR_CODES, f"{rec.where} error.code in EnumCoreErrorCode",
                f"got {err.get('code')!r}", sum_as="failed: error.code is an EnumCoreErrorCode value")
        shape_ok = isinstance(err.get("message"), str) and isinstance(err.get("retryable"), bool)
        t.check(shape_ok, f"{rec.where} error has message and retryable", f"got {err}",
                sum_as="failed: error has message (str) and retryable (bool)")


def judge_health(t: Tally, rec: Rec, p: Any) -> None:
    try:
        ev = ModelNodeHealthEvent.model_validate(p)
    except Exception as exc:  # noqa: BLE001
        t.check(False, f"{rec.where} ModelNodeHealthEvent.model_validate", str(exc)[:800])
        return
    t.check(True, f"{rec.where} ModelNodeHealthEvent.model_validate",
            sum_as="health: ModelNodeHealthEvent.model_validate passes")
    wire = p.get("health_metrics") or {}
    kept = ev.health_metrics.model_dump(mode="json")
    # Upstream's before-validator rebuilds health_metrics from cpu/memory/uptime
    # alone when the dict has a top-level "status" key: everything else is lost.
    lost = [
        k for k, v in wire.items()
        if k != "custom_metrics" and isinstance(v, (int, float)) and not isinstance(v, bool) and kept.get(k) != v
    ]
    t.check(not lost, f"{rec.where} health_metrics figures kept by validation", f"changed: {lost}",
            sum_as="health: health_metrics figures survive validation")
    custom = kept.get("custom_metrics") or {}
    need = [k for k in ("status", "vault", "bus", "circuit_breaker") if k not in custom]
    t.check(not need, f"{rec.where} custom_metrics keeps the node's figures", f"missing {need} in {sorted(custom)}",
            sum_as="health: custom_metrics keeps status, vault, bus, circuit_breaker after validation")
    t.check(custom == wire.get("custom_metrics"), f"{rec.where} custom_metrics unchanged by validation",
            "validated custom_metrics differ from the wire's", sum_as="health: custom_metrics unchanged by validation")
    # What an upstream reader gets as the node's status: ModelHealthMetrics.status
    # (read from custom_metrics["status"]), which must be an EnumHealthStatus value.
    status = ev.health_metrics.status
    t.check(status in HEALTH_STATUSES and status == custom.get("status"),
            f"{rec.where} upstream health_metrics.status is the node's status",
            f"upstream reads {status!r}; the node's custom_metrics.status is {custom.get('status')!r}",
            sum_as="health: upstream's health_metrics.status reads the node's status (an EnumHealthStatus value)")


def judge_requests(t: Tally, reader: Reader, requests: list[Request]) -> None:
    replies = reader.of("completed", "failed")
    audits = reader.of("audit")
    for req in requests:
        mine = [r for r in replies if r.correlation_id == req.expect_correlation]
        if not t.check(bool(mine), f"reply to {req.name}",
                       f"none with correlation_id {req.expect_correlation} (envelope_id {req.envelope.envelope_id})"):
            stray = [r for r in replies if r.envelope and r.envelope.parent_envelope_id == req.envelope.envelope_id]
            if stray:
                note(f"a reply to {req.name} by parent_envelope_id has correlation_id {stray[0].correlation_id}")
            continue
        if len(mine) > 1:
            note(f"{req.name}: {len(mine)} replies (at-least-once)")
        for r in mine:
            env = r.envelope
            assert env is not None
            t.check(env.parent_envelope_id == req.envelope.envelope_id,
                    f"{req.name}: reply parent_envelope_id == request envelope_id",
                    f"got {env.parent_envelope_id}, request {req.envelope.envelope_id}")
            ok, detail = req.judge(r.payload)
            t.check(ok, f"{req.name}: reply payload ({r.role})", detail)
            want_topic = "completed" if req.expect_status == "success" else "failed"
            t.check(r.role == want_topic, f"{req.name}: reply on the {want_topic} topic", f"it came on {r.role}")
            code = (r.payload.get("error") or {}).get("code")
            if code is not None:
                t.check(code in ERROR_CODES, f"{req.name}: {code} is an EnumCoreErrorCode value")
        audit = [a for a in audits if a.payload.get("correlation_id") == str(req.expect_correlation)]
        if t.check(bool(audit), f"{req.name}: audit record", f"none with correlation_id {req.expect_correlation}"):
            outcome = audit[0].payload.get("outcome")
            t.check(outcome == req.expect_status, f"{req.name}: audit outcome {req.expect_status}", f"got {outcome!r}")


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def common_args(description: str) -> argparse.ArgumentParser:
    """The arguments every conformance driver takes: the node's topics and a secret."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--bootstrap-servers", required=True)
    ap.add_argument("--requests-topic", required=True)
    ap.add_argument("--completed-topic", required=True)
    ap.add_argument("--failed-topic", required=True)
    ap.add_argument("--health-topic", required=True)
    ap.add_argument("--audit-topic", required=True)
    ap.add_argument("--dlq-topic", required=True)
    ap.add_argument("--circuit-breaker-topic", required=True)
    ap.add_argument("--lease-events-topic")
    ap.add_argument("--mount", default="secret", help="KV v2 mount of the secrets below")
    ap.add_argument("--secret-path", required=True, help="a secret the driver wrote into Vault")
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--secret-value", required=True)
    ap.add_argument("--timeout-seconds", type=float, default=60.0)
    ap.add_argument("--verbose", action="store_true", help="one ok line per record and check")
    return ap


def parse_args() -> argparse.Namespace:
    ap = common_args(__doc__.split("\n\n")[0])
    ap.add_argument("--write-path", help="where write_secret writes (default: <secret-path>-written)")
    ap.add_argument("--min-health-events", type=int, default=2)
    ap.add_argument("--expect-breaker", action="store_true",
                    help="require a breaker event opening and one closing (the driver made them)")
    return ap.parse_args()


async def read_to_end(t: Tally, reader: Reader, t0: float) -> None:
    """Reads every topic to its current end and says how many records each had."""
    complete = await asyncio.to_thread(reader.drain, 15.0)
    note(f"read to the end {time.monotonic() - t0:.1f} s after start")
    if not complete:
        t.check(False, "read every topic to its end", "the consumer did not reach the high watermarks in 15 s")
    counts = Counter(r.role for r in reader.records)
    note("records read: " + ", ".join(f"{role} {counts.get(role, 0)}" for role in reader.topics))


async def run(args: argparse.Namespace, t: Tally) -> bool:
    """Publishes the requests and collects the node's records; False if something
    expected never arrived."""
    topics = {
        "completed": args.completed_topic,
        "failed": args.failed_topic,
        "health": args.health_topic,
        "audit": args.audit_topic,
        "dlq": args.dlq_topic,
        "circuit_breaker": args.circuit_breaker_topic,
    }
    if args.lease_events_topic:
        topics["lease_events"] = args.lease_events_topic
    t0 = time.monotonic()
    reader = Reader(args.bootstrap_servers, topics)

    bus = await start_bus(args.bootstrap_servers)
    note(f"reader assigned and bus started in {time.monotonic() - t0:.1f} s")
    try:
        mount, path = args.mount, args.secret_path
        want = {args.secret_key: args.secret_value}
        write_path = args.write_path or f"{path}-written"
        written = {"value": f"written-{uuid.uuid4()}", "by": "conformance.py"}
        req_topic = args.requests_topic

        requests = [
            Request(
                "get_secret (existing)",
                # event_type as upstream's publishers stamp it for this topic
                request_envelope({"operation": "get_secret", "path": path},
                                 event_type=derive_event_type_from_topic(req_topic)),
                path.encode(), success_with_data(want), "success",
            ),
            Request(
                "vault.read_secret + mount_point",
                request_envelope({"operation": "vault.read_secret", "path": path, "mount_point": mount}),
                path.encode(), success_with_data(want), "success",
            ),
            Request(
                "get_secret without correlation_id",
                request_envelope({"operation": "get_secret", "path": path}, correlation=False),
                path.encode(), success_with_data(want), "success",
            ),
            Request(
                "get_secret of a missing secret",
                request_envelope({"operation": "get_secret", "path": f"{path}-missing-{uuid.uuid4().hex[:8]}"}),
                path.encode(), error_code(EnumCoreErrorCode.RESOURCE_NOT_FOUND), "error",
            ),
            Request(
                "unknown operation vault.frobnicate_secret",
                request_envelope({"operation": "vault.frobnicate_secret", "path": path}),
                path.encode(), error_code(EnumCoreErrorCode.UNSUPPORTED_OPERATION), "error",
            ),
        ]
        write = Request(
            "write_secret with `secret`",
            request_envelope(
                {"operation": "write_secret", "path": write_path, "mount_point": mount, "secret": written}
            ),
            write_path.encode(), success, "success",
        )
        read_back = Request(
            "read_secret of what write_secret wrote",
            request_envelope({"operation": "read_secret", "path": write_path, "mount_point": mount}),
            write_path.encode(), success_with_data(written), "success",
        )
        for req in [*requests, write]:
            await bus.publish_envelope(req.envelope, req_topic, key=req.key)
            env = req.envelope
            note(f"published {req.name}: envelope_id {env.envelope_id} correlation_id {env.correlation_id}")
        requests.append(write)

        # A record that is not JSON, with upstream's headers (a correlation id among them).
        raw_correlation = uuid.uuid4()
        receipt = await bus.publish(
            req_topic,
            b"not-json",
            b"{this is not JSON",
            ModelEventHeaders(
                source="local", event_type=req_topic, correlation_id=raw_correlation, timestamp=datetime.now(UTC)
            ),
        )
        note(f"published a non-JSON record at {receipt.partition}@{receipt.offset}, "
             f"correlation_id header {raw_correlation}")

        deadline = time.monotonic() + args.timeout_seconds
        sent_read_back = False

        def replied(req: Request) -> bool:
            return any(r.correlation_id == req.expect_correlation for r in reader.of("completed", "failed"))

        def dead_letters() -> list[Rec]:
            return [
                r for r in reader.of("dlq")
                if r.payload.get("original_topic") == req_topic
                and r.payload.get("original_partition") == receipt.partition
                and r.payload.get("original_offset") == receipt.offset
            ]

        def breaker_states() -> set[str]:
            return {str(r.payload.get("state")) for r in reader.of("circuit_breaker")}

        def outstanding() -> list[str]:
            left = [f"reply to {r.name}" for r in requests if not replied(r)]
            audited = {a.payload.get("correlation_id") for a in reader.of("audit")}
            left += [f"audit of {r.name}" for r in requests if str(r.expect_correlation) not in audited]
            if not sent_read_back:
                left.append("read back (not sent yet)")
            if not dead_letters():
                left.append("dead letter of the non-JSON record")
            if not any(r.correlation_id == raw_correlation for r in reader.of("failed")):
                left.append("failed reply to the non-JSON record (correlation_id header)")
            n_health = len(reader.of("health"))
            if n_health < args.min_health_events:
                left.append(f"{args.min_health_events} health events (have {n_health})")
            if args.expect_breaker and not {"open", "closed"} <= breaker_states():
                left.append(f"breaker events opening and closing (have {sorted(breaker_states())})")
            return left

        while True:
            await asyncio.to_thread(reader.poll, 0.5)
            if not sent_read_back and replied(write):
                # Only after the write's reply: then Vault has it.
                await bus.publish_envelope(read_back.envelope, req_topic, key=read_back.key)
                note(f"published {read_back.name}: envelope_id {read_back.envelope.envelope_id}")
                requests.append(read_back)
                sent_read_back = True
            left = outstanding()
            if not left or time.monotonic() > deadline:
                break
    finally:
        await bus.close()
    outcome = "gave up waiting" if left else "everything expected arrived"
    note(f"{outcome} {time.monotonic() - t0:.1f} s after start")
    await read_to_end(t, reader, t0)
    for missing in left:
        t.check(False, f"arrived within {args.timeout_seconds:.0f} s: {missing}", "never arrived")

    # Every record, by upstream's code.
    for rec in reader.records:
        judge_record(t, bus, rec)
    judge_requests(t, reader, requests)

    # The non-JSON record: a dead letter pointing at it, and a failed reply.
    for dl in dead_letters():
        t.check(dl.payload.get("correlation_id") == str(raw_correlation),
                "dead letter of the non-JSON record carries the correlation_id header's value",
                f"got {dl.payload.get('correlation_id')!r}")
        t.check(True, f"dead letter of the non-JSON record ({dl.where}, {dl.payload.get('error_type')})")
    for r in reader.of("completed", "failed"):
        if r.correlation_id == raw_correlation:
            code = (r.payload.get("error") or {}).get("code")
            t.check(r.role == "failed" and code == EnumCoreErrorCode.INVALID_INPUT.value,
                    "non-JSON record answered on the failed topic with ONEX_CORE_007_INVALID_INPUT",
                    f"got {r.role} {redact(r.payload)}")

    # Breaker events the driver caused.
    if args.expect_breaker:
        events = [r.payload for r in reader.of("circuit_breaker")]
        seen = [(e.get("previous_state"), e.get("state")) for e in events]
        t.check(("closed", "open") in seen, "breaker event closed -> open", f"got {seen}")
        t.check(("half_open", "closed") in seen, "breaker event half_open -> closed", f"got {seen}")

    # Not counted: omnibase-infra's own dead letters are a bare JSON object, not an
    # envelope (mixin_kafka_dlq: original_topic, original_message{value,...}, ...),
    # and its DLQ replay node parses them with ModelDlqMessage.from_kafka_message.
    # Say whether that tooling can read the node's dead letters.
    for dl in reader.of("dlq"):
        for what, body in (("record body", json.loads(dl.value or b"null")), ("envelope payload", dl.payload)):
            try:
                ModelDlqMessage.from_kafka_message(body, dlq_offset=dl.offset, dlq_partition=dl.partition)
                note(f"{dl.where}: upstream's DLQ replay (ModelDlqMessage.from_kafka_message) parses the {what}")
            except Exception as exc:  # noqa: BLE001 - informational
                note(f"{dl.where}: upstream's DLQ replay (ModelDlqMessage.from_kafka_message) refuses the {what}: "
                     f"{type(exc).__name__}: {str(exc)[:200]}")

    health = reader.of("health")
    if health and health[0].envelope is not None:
        node_id = health[0].payload.get("node_id")
        try:
            validated = ModelNodeHealthEvent.model_validate(health[0].payload).node_id
            if str(validated) != str(node_id):
                note(f"upstream's node_id validator rehashes any string: wire node_id {node_id} -> {validated}")
        except Exception:  # noqa: BLE001 - judged above
            pass
    reader.close()
    return not left


def main() -> int:
    return main_with(run, parse_args())


def main_with(run: Callable[[argparse.Namespace, Tally], Awaitable[object]], args: argparse.Namespace) -> int:
    """Runs a driver and prints the tally and the summary line; the exit status."""
    t = Tally(args.verbose)
    started = time.monotonic()
    try:
        asyncio.run(run(args, t))
    except Exception as exc:  # noqa: BLE001 - a crash is a failed run, with its summary line
        import traceback

        traceback.print_exc()
        t.check(False, "the conformance run completed", f"{type(exc).__name__}: {exc}")
    t.print_sums()
    print(f"took {time.monotonic() - started:.1f} s")
    print(f"conformance: {t.passed} passed, {t.failed} failed", flush=True)
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
