//! The boundary: a Kafka record's bytes become a typed request, or a precise
//! refusal saying what to answer and whether to dead-letter the record.
//!
//! - not JSON, JSON with a duplicate key in any object, not an object, or
//!   not a valid envelope → dead letter, and a failed reply too when a
//!   `correlation_id` could be read (from the body, else a record header);
//! - a value, key or headers over their limits → the same, judged from the
//!   lengths alone before anything is parsed;
//! - a name or trace id over `MAX_TEXT_FIELD_BYTES` (they are copied into
//!   outputs) → the same;
//! - valid envelope with an unknown `operation` → `UNSUPPORTED_OPERATION` reply;
//! - valid envelope with an invalid payload → `INVALID_REQUEST` reply.
//!
//! A record may be an ONEX runtime's signed `ModelMessageEnvelope` (see
//! `SignedEnvelope::looks_signed`): its `payload` is then the event envelope,
//! decoded as above, and the wrapper goes along for the gate to verify.
//!
//! Refusal messages quote no values from the record, only field names.
//!
//! Over 500 lines only with its unit and property tests, kept beside the
//! refusals they test.

use std::cell::Cell;

use onex_vault_models::{
    Envelope, ErrorCode, Operation, ReplyError, RequestEnvelope, SignedEnvelope, VaultRequest, MAX_TEXT_FIELD_BYTES,
};
use serde::de::DeserializeSeed as _;
use serde_json::Value;
use uuid::Uuid;

/// What became of a record.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<RequestEnvelope>, Provenance),
    Refused(Refusal),
}

/// How a request came: what the gate needs to know beyond the envelope.
#[derive(Debug)]
pub struct Provenance {
    /// The signed wrapper it came in, if any.
    pub signed: Option<Box<SignedEnvelope>>,
    /// Whether its sender stamped it itself (an `envelope_id` and an
    /// `envelope_timestamp` in the record, not filled in by default): the
    /// strict profile's replay checks need both.
    pub stamped: bool,
}

/// A record the node will not perform, and what it knows of its sender.
#[derive(Debug)]
pub struct Refusal {
    pub error: ReplyError,
    /// The `payload.operation` as sent, if readable.
    pub operation: Option<String>,
    /// Whether the record also goes to the dead-letter topic.
    pub dead_letter: bool,
    /// Readable envelope fields, for the reply and the dead letter.
    pub correlation_id: Option<Uuid>,
    pub envelope_id: Option<Uuid>,
    pub source_tool: Option<String>,
    /// The signed wrapper the record came in, when it could be read: the
    /// strict profile answers only a sender it verifies.
    pub signed: Option<Box<SignedEnvelope>>,
}

/// The bounds a record must keep before the node parses any of it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_record_bytes: usize,
    pub max_key_bytes: usize,
    pub max_header_bytes: usize,
}

/// The sizes of a record's parts other than its value.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub key: usize,
    /// Header names and values together.
    pub headers: usize,
}

pub fn decode(bytes: &[u8], sizes: Sizes, limits: &Limits) -> Decoded {
    // Bounded from the lengths alone, before anything is parsed or copied.
    let over = |what: &str, size: usize, limit: usize| {
        let reason = format!("{what} of {size} bytes is over the limit of {limit} bytes");
        Decoded::Refused(Refusal::dead_letter(reason, &Value::Null))
    };
    if bytes.len() > limits.max_record_bytes {
        return over("record", bytes.len(), limits.max_record_bytes);
    }
    if sizes.key > limits.max_key_bytes {
        return over("record key", sizes.key, limits.max_key_bytes);
    }
    if sizes.headers > limits.max_header_bytes {
        return over("record headers", sizes.headers, limits.max_header_bytes);
    }
    let duplicate = Cell::new(false);
    let value: Value = match UniqueKeys::parse(bytes, &duplicate) {
        Ok(value) => value,
        Err(e) if duplicate.get() => {
            // Parsers differ on which of two equal keys wins; a signed record
            // must mean one thing to every reader, so it is refused whole.
            let reason = format!("record value has {DUPLICATE_KEY} at line {} column {}", e.line(), e.column());
            return Decoded::Refused(Refusal::dead_letter(reason, &Value::Null));
        }
        Err(e) => {
            let reason = format!("record value is not JSON: {}", e.classify_message());
            return Decoded::Refused(Refusal::dead_letter(reason, &Value::Null));
        }
    };
    if !value.is_object() {
        return Decoded::Refused(Refusal::dead_letter("record value is not a JSON object".into(), &value));
    }
    let (value, signed) = if SignedEnvelope::looks_signed(&value) {
        match serde_path_to_error::deserialize::<_, SignedEnvelope>(&value) {
            Ok(signed) => {
                let tenant = signed.tenant_id.as_deref().unwrap_or_default();
                let texts =
                    [signed.realm.as_str(), &signed.runtime_id, &signed.bus_id, &signed.signature.signer, tenant];
                if texts.iter().any(|text| text.len() > MAX_TEXT_FIELD_BYTES) {
                    let reason = format!("signed envelope: a name longer than {MAX_TEXT_FIELD_BYTES} bytes");
                    return Decoded::Refused(Refusal::dead_letter(reason, &signed.payload));
                }
                (signed.payload.clone(), Some(Box::new(signed)))
            }
            Err(e) => {
                let at = field(e.path());
                let reason = format!("not a valid signed envelope: {at}: {}", quiet(&e.into_inner().to_string()));
                let inner = value.get("payload").filter(|p| p.is_object()).unwrap_or(&value);
                return Decoded::Refused(Refusal::dead_letter(reason, inner));
            }
        }
    } else {
        (value, None)
    };
    // From here on a refusal carries the signed wrapper, if any.
    let refused = |refusal: Refusal| Decoded::Refused(Refusal { signed: signed.clone(), ..refusal });
    if !value.is_object() {
        return refused(Refusal::dead_letter("signed payload is not a JSON object".into(), &Value::Null));
    }
    let envelope: Envelope<Value> = match serde_path_to_error::deserialize(&value) {
        Ok(envelope) => envelope,
        Err(e) => {
            let reason = format!("not a valid envelope: {}: {}", field(e.path()), quiet(&e.into_inner().to_string()));
            return refused(Refusal::dead_letter(reason, &value));
        }
    };
    if let Some(field) = envelope.oversized_field() {
        let reason = format!("{field}: longer than {MAX_TEXT_FIELD_BYTES} bytes (or too many entries)");
        return refused(Refusal::dead_letter(reason, &value));
    }
    let refuse = |code, message: String| {
        refused(Refusal {
            error: ReplyError::new(code, message),
            operation: bounded(envelope.payload.get("operation")),
            dead_letter: false,
            correlation_id: envelope.correlation_id,
            envelope_id: Some(envelope.envelope_id),
            source_tool: envelope.source_tool.clone(),
            signed: None,
        })
    };
    let Some(name) = envelope.payload.get("operation").and_then(Value::as_str) else {
        return refuse(ErrorCode::InvalidInput, "payload.operation: missing or not a string".into());
    };
    if Operation::from_wire_name(name).is_none() {
        return refuse(ErrorCode::UnsupportedOperation, format!("payload.operation: unknown operation {name:?}"));
    }
    let payload: VaultRequest = match serde_path_to_error::deserialize(&envelope.payload) {
        Ok(payload) => payload,
        Err(e) => {
            let at = format!("payload.{}", e.path()).trim_end_matches(".").to_owned();
            return refuse(ErrorCode::InvalidInput, format!("{at}: {}", quiet(&e.into_inner().to_string())));
        }
    };
    if let Err(problem) = payload.validate() {
        return refuse(ErrorCode::InvalidInput, problem.to_string());
    }
    let stamped = value.get("envelope_id").is_some() && value.get("envelope_timestamp").is_some();
    Decoded::Request(Box::new(envelope.with_payload(payload)), Provenance { signed, stamped })
}

/// The refusal of a record given up at its deadline (see
/// `runtime::give_up`): what can be read of its sender, to answer it and
/// dead-letter it.
pub fn given_up(bytes: &[u8]) -> Refusal {
    let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let inner = if SignedEnvelope::looks_signed(&value) { &value["payload"] } else { &value };
    let mut refusal = Refusal::dead_letter("not finished within event_bus.record_deadline_seconds".into(), inner);
    refusal.error = ReplyError::new(ErrorCode::TimeoutError, "the node could not finish this request in time");
    refusal
}

impl Refusal {
    /// A record that is dead-lettered; answered too if it names a correlation id.
    fn dead_letter(reason: String, value: &Value) -> Refusal {
        let uuid = |key: &str| value.get(key).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
        Refusal {
            error: ReplyError::new(ErrorCode::InvalidInput, reason),
            operation: bounded(value.pointer("/payload/operation")),
            dead_letter: true,
            correlation_id: uuid("correlation_id"),
            envelope_id: uuid("envelope_id"),
            source_tool: bounded(value.get("source_tool")),
            signed: None,
        }
    }
}

/// A string of the record, for copying into replies and audit records: only
/// when it is short (an attacker's megabyte stays in the record).
fn bounded(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).filter(|text| text.len() <= MAX_TEXT_FIELD_BYTES).map(str::to_owned)
}

const DUPLICATE_KEY: &str = "a duplicate key in an object";

/// Reads a JSON value, refusing any object that has the same key twice
/// (`serde_json::Value` would silently keep the last); `duplicate` says
/// afterwards whether that was why it failed. serde_json's nesting limit
/// still applies.
#[derive(Clone, Copy)]
struct UniqueKeys<'a> {
    duplicate: &'a Cell<bool>,
}

impl UniqueKeys<'_> {
    fn parse(bytes: &[u8], duplicate: &Cell<bool>) -> Result<Value, serde_json::Error> {
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        let value = UniqueKeys { duplicate }.deserialize(&mut reader)?;
        reader.end()?;
        Ok(value)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                self.duplicate.set(true);
                return Err(serde::de::Error::custom(DUPLICATE_KEY));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn field(path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    if path == "." {
        "envelope".into()
    } else {
        path
    }
}

/// serde quotes offending string values (`invalid type: string "hunter2"`,
/// `unknown variant `hunter2`, expected …`); the reply and the logs must
/// not, so the variant named as unknown and every double-quoted part
/// (escapes included) are elided. Field names (`missing field `path``) stay:
/// they help the sender.
fn quiet(message: &str) -> String {
    let mut message = message.to_owned();
    const UNKNOWN_VARIANT: &str = "unknown variant `";
    if let Some(start) = message.find(UNKNOWN_VARIANT).map(|at| at + UNKNOWN_VARIANT.len()) {
        // The value may hold anything, backticks too: the last "`, expected"
        // is serde's own.
        let end = message.rfind("`, expected").filter(|end| *end >= start).unwrap_or(message.len());
        message.replace_range(start..end, "…");
    }
    let mut out = String::with_capacity(message.len());
    let (mut inside, mut escaped) = (false, false);
    for c in message.chars() {
        if inside {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => inside = false,
                _ => {}
            }
        } else if c == '"' {
            out.push_str("\"…\"");
            inside = true;
        } else {
            out.push(c);
        }
    }
    out
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// The category and position of a JSON syntax error, never its content.
    fn classify_message(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end of input",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(payload: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "envelope_id": Uuid::new_v4(), "envelope_timestamp": "2026-11-22T06:00:00Z",
            "correlation_id": "0b8f8f62-54a4-4f0c-9b7e-08c2b2a1a0e1", "source_tool": "node_x",
            "payload": payload
        }))
        .expect("serializes")
    }

    fn limits(max_record_bytes: usize) -> Limits {
        Limits { max_record_bytes, max_key_bytes: 1024, max_header_bytes: 16 * 1024 }
    }

    fn refusal(bytes: &[u8]) -> Refusal {
        match decode(bytes, Sizes::default(), &limits(1 << 20)) {
            Decoded::Refused(refusal) => refusal,
            Decoded::Request(r, _) => panic!("accepted {r:?}"),
        }
    }

    #[test]
    fn a_valid_request_decodes() {
        let bytes = envelope(json!({"operation": "get_secret", "path": "app/db"}));
        assert!(matches!(decode(&bytes, Sizes::default(), &limits(1 << 20)), Decoded::Request(..)));
    }

    #[test]
    fn garbage_is_dead_lettered_without_reply() {
        for bytes in [&b"not json"[..], b"[1,2]", b"{\"a\":"] {
            let r = refusal(bytes);
            assert!(r.dead_letter && r.correlation_id.is_none(), "{r:?}");
        }
    }

    #[test]
    fn a_broken_envelope_with_a_correlation_id_is_dead_lettered_and_answered() {
        let r =
            refusal(br#"{"correlation_id": "0b8f8f62-54a4-4f0c-9b7e-08c2b2a1a0e1", "envelope_id": 7, "payload": {}}"#);
        assert!(r.dead_letter);
        assert!(r.correlation_id.is_some());
        assert!(r.error.message.contains("envelope_id"), "{}", r.error.message);
    }

    #[test]
    fn upstream_envelopes_decode_in_either_version_form_and_without_correlation() {
        // As omnibase-core's ModelEventEnvelope.model_dump(mode="json") writes it.
        let upstream = json!({
            "payload": {"operation": "vault.read_secret", "path": "app/db", "mount_point": "secret"},
            "envelope_id": "3f0e8a4c-5d1b-4c8e-9a51-1f2d3c4b5a60",
            "envelope_timestamp": "2026-11-29T14:00:00.123456Z",
            "correlation_id": null, "parent_envelope_id": null, "source_tool": null, "target_tool": null,
            "metadata": {"trace_id": null, "request_id": null, "span_id": null, "parent_span_id": null,
                         "headers": {}, "tags": {}},
            "security_context": null, "event_type": null, "payload_type": null, "payload_schema_version": null,
            "priority": 5, "timeout_seconds": null, "retry_count": 0, "request_id": null, "trace_id": null,
            "span_id": null, "tenant_id": null, "producer": null,
            "onex_version": {"major": 1, "minor": 0, "patch": 0, "prerelease": null, "build": null},
            "envelope_version": {"major": 2, "minor": 3, "patch": 0, "prerelease": null, "build": null},
        });
        let Decoded::Request(request, _) = decode(upstream.to_string().as_bytes(), Sizes::default(), &limits(1 << 20))
        else {
            panic!("an upstream envelope is refused")
        };
        assert!(
            matches!(&request.payload, VaultRequest::GetSecret(get) if get.mount.as_ref().is_some_and(|m| m.as_str() == "secret"))
        );
        assert_eq!(request.reply_correlation_id(), request.envelope_id);

        for (priority, timeout) in
            [(json!(0), json!(null)), (json!(11), json!(null)), (json!(5), json!(0)), (json!(5), json!(1.5))]
        {
            let mut bad = upstream.clone();
            bad["priority"] = priority;
            bad["timeout_seconds"] = timeout;
            assert!(refusal(bad.to_string().as_bytes()).dead_letter, "{bad}");
        }
    }

    #[test]
    fn payload_problems_are_answered_not_dead_lettered() {
        let r = refusal(&envelope(json!({"operation": "get_secret", "path": "../sys"})));
        assert_eq!(r.error.code, ErrorCode::InvalidInput);
        assert!(!r.dead_letter);
        assert_eq!(r.error.message, "payload: `path` has a '.' or '..' segment");

        let r = refusal(&envelope(json!({"operation": "drop_database"})));
        assert_eq!(r.error.code, ErrorCode::UnsupportedOperation);

        let r = refusal(&envelope(json!({"operation": "get_secret"})));
        assert!(r.error.message.contains("missing field `path`"), "{}", r.error.message);
    }

    #[test]
    fn oversized_records_keys_headers_and_fields_are_refused() {
        let bytes = envelope(json!({"operation": "set_secret", "path": "a", "data": {"k": "x".repeat(4096)}}));
        let r = match decode(&bytes, Sizes::default(), &limits(1024)) {
            Decoded::Refused(r) => r,
            Decoded::Request(..) => panic!("oversized record accepted"),
        };
        // Judged from the length alone: nothing was parsed (the reply finds
        // its requester through the record's headers).
        assert!(r.dead_letter && r.correlation_id.is_none(), "{r:?}");
        assert!(r.error.message.starts_with("record of "), "{}", r.error.message);

        let small = envelope(json!({"operation": "get_secret", "path": "a"}));
        for (sizes, what) in [
            (Sizes { key: 1025, headers: 0 }, "record key of 1025 bytes"),
            (Sizes { key: 0, headers: 1 << 20 }, "record headers of"),
        ] {
            match decode(&small, sizes, &limits(1 << 20)) {
                Decoded::Refused(r) => assert!(r.dead_letter && r.error.message.starts_with(what), "{r:?}"),
                Decoded::Request(..) => panic!("{what}: accepted"),
            }
        }

        for field in ["source_tool", "producer", "tenant_id"] {
            let mut long: Value = serde_json::from_slice(&small).expect("JSON");
            long[field] = "x".repeat(MAX_TEXT_FIELD_BYTES + 1).into();
            let r = refusal(long.to_string().as_bytes());
            assert!(r.dead_letter && r.error.message.starts_with(field), "{r:?}");
            if field == "source_tool" {
                assert!(r.source_tool.is_none(), "a long source_tool is not copied");
            }
        }
        let mut long: Value = serde_json::from_slice(&small).expect("JSON");
        long["metadata"] = json!({"trace_id": "t".repeat(MAX_TEXT_FIELD_BYTES + 1)});
        assert!(refusal(long.to_string().as_bytes()).error.message.starts_with("metadata.trace_id"));
        let r = refusal(&envelope(json!({"operation": "o".repeat(MAX_TEXT_FIELD_BYTES + 1), "path": "a"})));
        assert_eq!(r.operation, None, "a long operation name is not copied");
    }

    #[test]
    fn refusals_never_quote_values() {
        let r = refusal(&envelope(json!({"operation": "get_secret", "path": "a", "version": "canary-77"})));
        assert!(!r.error.message.contains("canary"), "{}", r.error.message);
        // Found by the property tests: serde names an unknown enum variant in backticks.
        let r = refusal(&envelope(json!({"operation": "get_secret", "path": "a", "consistency": "canary-78"})));
        assert!(!r.error.message.contains("canary"), "{}", r.error.message);
        assert!(r.error.message.contains("unknown variant `…`, expected `cached` or `fresh`"), "{}", r.error.message);
        // And values with quotes, escapes or backticks of their own.
        for value in ["canary\"-79", "canary`, expected `x`-80", "canary\\\"-81"] {
            let r = refusal(&envelope(json!({"operation": "get_secret", "path": "a", "consistency": value})));
            assert!(!r.error.message.contains("canary") && !r.error.message.contains("-8"), "{}", r.error.message);
            let r = refusal(&envelope(json!({"operation": "get_secret", "path": "a", "version": value})));
            assert!(!r.error.message.contains("canary") && !r.error.message.contains("-8"), "{}", r.error.message);
        }
    }

    #[test]
    fn duplicate_keys_anywhere_are_dead_lettered() {
        let id = "0b8f8f62-54a4-4f0c-9b7e-08c2b2a1a0e1";
        for bytes in [
            format!(r#"{{"correlation_id": "{id}", "correlation_id": "{id}"}}"#),
            String::from_utf8(envelope(json!({"operation": "get_secret", "path": "a"}))).expect("UTF-8").replacen(
                r#""path":"a""#,
                r#""path":"a","path":"b""#,
                1,
            ),
            r#"{"a": [{"x": 1, "y": {"k": 1, "k": 2}}]}"#.to_owned(),
        ] {
            let r = refusal(bytes.as_bytes());
            assert!(r.dead_letter, "{bytes}");
            assert!(r.error.message.starts_with("record value has a duplicate key"), "{}", r.error.message);
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        for depth in [200, 10_000, 100_000] {
            let bytes = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert!(refusal(bytes.as_bytes()).dead_letter);
            let bytes = format!(r#"{{"payload": {}1{}}}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
            assert!(refusal(bytes.as_bytes()).dead_letter);
        }
    }

    mod properties {
        //! Generated hostile input: whatever comes in, decode ends in a typed
        //! request that passed validation or a typed refusal, never a panic,
        //! and a refusal never quotes the input's values.

        use proptest::prelude::*;
        use serde_json::{json, Map, Value};

        use super::super::*;

        const CANARY: &str = "canary-prop-7f3a";

        /// Every decode outcome must be one of these two, consistent with itself.
        fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
            match decode(bytes, Sizes::default(), &super::limits(64 * 1024)) {
                Decoded::Request(request, _) => {
                    prop_assert!(request.payload.validate().is_ok());
                }
                Decoded::Refused(refusal) => {
                    prop_assert!(!refusal.error.message.is_empty());
                    prop_assert!(!refusal.error.message.contains(CANARY), "quoted: {}", refusal.error.message);
                    prop_assert_eq!(refusal.error.retryable, false);
                }
            }
            Ok(())
        }

        /// Any JSON value, nested a few levels, strings carrying the canary.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
                ".{0,40}".prop_map(|s| Value::String(format!("{CANARY}{s}"))),
            ];
            leaf.prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
                ]
            })
        }

        /// Path fragments that have fooled path checks somewhere.
        fn hostile_path() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("..".to_owned()),
                Just(".".to_owned()),
                Just("".to_owned()),
                Just("%2e%2e".to_owned()),
                Just("..\\".to_owned()),
                Just("\u{202e}txt".to_owned()),
                Just("\u{200b}".to_owned()),
                Just("\u{0}".to_owned()),
                Just("\u{ff0e}\u{ff0e}".to_owned()),
                Just("a?b".to_owned()),
                Just("a#b".to_owned()),
                Just("*".to_owned()),
                Just("~".to_owned()),
                "[a-z0-9._-]{1,12}",
                "\\PC{1,8}",
                "x{300}",
            ];
            (prop::collection::vec(piece, 1..40), any::<bool>()).prop_map(|(pieces, absolute)| {
                let path = pieces.join("/");
                if absolute {
                    format!("/{path}")
                } else {
                    path
                }
            })
        }

        fn envelope_around(payload: Value) -> Value {
            json!({
                "envelope_id": "3f0e8a4c-5d1b-4c8e-9a51-1f2d3c4b5a60",
                "envelope_timestamp": "2026-11-22T06:00:00Z",
                "correlation_id": "0b8f8f62-54a4-4f0c-9b7e-08c2b2a1a0e1",
                "source_tool": "node_x",
                "payload": payload,
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

            #[test]
            fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                check(&bytes)?;
            }

            #[test]
            fn random_json_as_the_record(value in json_value()) {
                check(value.to_string().as_bytes())?;
            }

            #[test]
            fn random_json_in_every_envelope_field(
                field in prop::sample::select(vec!["envelope_id", "envelope_timestamp", "correlation_id",
                    "source_tool", "timeout_seconds", "metadata", "payload", "causation_id"]),
                value in json_value(),
            ) {
                let mut envelope = envelope_around(json!({"operation": "get_secret", "path": "a/b"}));
                envelope[field] = value;
                check(envelope.to_string().as_bytes())?;
            }

            #[test]
            fn random_json_in_every_payload_field(
                operation in prop::sample::select(onex_vault_models::Operation::all().map(onex_vault_models::Operation::as_str).collect::<Vec<_>>()),
                field in prop::sample::select(vec!["path", "paths", "mount", "version", "versions", "data", "cas",
                    "lease_id", "increment_seconds", "keep_alive", "consistency", "delivery", "destroy", "unknown"]),
                value in json_value(),
            ) {
                let payload = json!({"operation": operation, "path": "a/b", field: value});
                check(envelope_around(payload).to_string().as_bytes())?;
            }

            #[test]
            fn hostile_paths_are_refused_or_safe(path in hostile_path(), list in any::<bool>()) {
                let operation = if list { "list_secrets" } else { "get_secret" };
                let bytes = envelope_around(json!({"operation": operation, "path": path})).to_string();
                check(bytes.as_bytes())?;
                if let Decoded::Request(request, _) = decode(bytes.as_bytes(), Sizes::default(), &super::limits(64 * 1024)) {
                    let path = match &request.payload {
                        VaultRequest::GetSecret(get) => get.path.to_string(),
                        VaultRequest::ListSecrets(list) => list.path.to_string(),
                        other => return Err(TestCaseError::fail(format!("another operation: {other:?}"))),
                    };
                    prop_assert!(!path.starts_with('/'));
                    let segments = path.trim_end_matches('/');
                    prop_assert!(segments.is_empty() || segments.split('/').all(|s| !s.is_empty() && s != "." && s != ".."), "{path}");
                    prop_assert!(!path.chars().any(|c| c.is_control() || "?#%\\*".contains(c)), "{path:?}");
                }
            }

            #[test]
            fn huge_strings_and_duplicate_keys(len in 0usize..200_000, dup in any::<bool>()) {
                let mut text = envelope_around(json!({"operation": "set_secret", "path": "a", "data": {"k": CANARY.repeat(len / CANARY.len() + 1)}})).to_string();
                if dup {
                    text = text.replacen("\"source_tool\":", "\"source_tool\":\"x\",\"source_tool\":", 1);
                }
                check(text.as_bytes())?;
            }
        }
    }
}
