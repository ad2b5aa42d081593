//! The boundary: a Kafka record's bytes become a typed request, or a precise
//! refusal saying what to answer and whether to dead-letter the record.
//!
//! - not JSON, not an object, or not a valid envelope → dead letter, and a
//!   failed reply too when a `correlation_id` could be read;
//! - larger than `max_record_bytes` → the same;
//! - valid envelope with an unknown `operation` → `UNSUPPORTED_OPERATION` reply;
//! - valid envelope with an invalid payload → `INVALID_REQUEST` reply.
//!
//! Refusal messages quote no values from the record, only field names.

use onex_vault_models::{Envelope, ErrorCode, Operation, ReplyError, RequestEnvelope, VaultRequest};
use serde_json::Value;
use uuid::Uuid;

/// What became of a record.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<RequestEnvelope>),
    Refused(Refusal),
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
}

pub fn decode(bytes: &[u8], max_record_bytes: usize) -> Decoded {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            let reason = format!("record value is not JSON: {}", e.classify_message());
            return Decoded::Refused(Refusal::dead_letter(reason, &Value::Null));
        }
    };
    if !value.is_object() {
        return Decoded::Refused(Refusal::dead_letter("record value is not a JSON object".into(), &value));
    }
    if bytes.len() > max_record_bytes {
        let reason = format!("record of {} bytes is over the limit of {max_record_bytes} bytes", bytes.len());
        return Decoded::Refused(Refusal::dead_letter(reason, &value));
    }
    let envelope: Envelope<Value> = match serde_path_to_error::deserialize(&value) {
        Ok(envelope) => envelope,
        Err(e) => {
            let reason = format!("not a valid envelope: {}: {}", field(e.path()), quiet(&e.into_inner().to_string()));
            return Decoded::Refused(Refusal::dead_letter(reason, &value));
        }
    };
    let refuse = |code, message: String| {
        Decoded::Refused(Refusal {
            error: ReplyError::new(code, message),
            operation: envelope.payload.get("operation").and_then(Value::as_str).map(str::to_owned),
            dead_letter: false,
            correlation_id: Some(envelope.correlation_id),
            envelope_id: Some(envelope.envelope_id),
            source_tool: Some(envelope.source_tool.clone()),
        })
    };
    let Some(name) = envelope.payload.get("operation").and_then(Value::as_str) else {
        return refuse(ErrorCode::InvalidRequest, "payload.operation: missing or not a string".into());
    };
    if Operation::from_name(name).is_none() {
        return refuse(ErrorCode::UnsupportedOperation, format!("payload.operation: unknown operation {name:?}"));
    }
    let payload: VaultRequest = match serde_path_to_error::deserialize(&envelope.payload) {
        Ok(payload) => payload,
        Err(e) => {
            let at = format!("payload.{}", e.path()).trim_end_matches(".").to_owned();
            return refuse(ErrorCode::InvalidRequest, format!("{at}: {}", quiet(&e.into_inner().to_string())));
        }
    };
    if let Err(problem) = payload.validate() {
        return refuse(ErrorCode::InvalidRequest, problem);
    }
    Decoded::Request(Box::new(envelope.with_payload(payload)))
}

impl Refusal {
    /// A record that is dead-lettered; answered too if it names a correlation id.
    fn dead_letter(reason: String, value: &Value) -> Refusal {
        let uuid = |key: &str| value.get(key).and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
        Refusal {
            error: ReplyError::new(ErrorCode::InvalidRequest, reason),
            operation: value.pointer("/payload/operation").and_then(Value::as_str).map(str::to_owned),
            dead_letter: true,
            correlation_id: uuid("correlation_id"),
            envelope_id: uuid("envelope_id"),
            source_tool: value.get("source_tool").and_then(Value::as_str).map(str::to_owned),
        }
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

/// serde quotes offending string values (`invalid type: string "hunter2"`);
/// the reply and the logs must not, so every double-quoted part is elided.
fn quiet(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
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

    fn refusal(bytes: &[u8]) -> Refusal {
        match decode(bytes, 1 << 20) {
            Decoded::Refused(refusal) => refusal,
            Decoded::Request(r) => panic!("accepted {r:?}"),
        }
    }

    #[test]
    fn a_valid_request_decodes() {
        let bytes = envelope(json!({"operation": "get_secret", "path": "app/db"}));
        assert!(matches!(decode(&bytes, 1 << 20), Decoded::Request(_)));
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
        let r = refusal(br#"{"correlation_id": "0b8f8f62-54a4-4f0c-9b7e-08c2b2a1a0e1", "payload": {}}"#);
        assert!(r.dead_letter);
        assert!(r.correlation_id.is_some());
        assert!(r.error.message.contains("envelope_id"), "{}", r.error.message);
    }

    #[test]
    fn payload_problems_are_answered_not_dead_lettered() {
        let r = refusal(&envelope(json!({"operation": "get_secret", "path": "../sys"})));
        assert_eq!(r.error.code, ErrorCode::InvalidRequest);
        assert!(!r.dead_letter);
        assert_eq!(r.error.message, "payload: `path` has a '.' or '..' segment");

        let r = refusal(&envelope(json!({"operation": "drop_database"})));
        assert_eq!(r.error.code, ErrorCode::UnsupportedOperation);

        let r = refusal(&envelope(json!({"operation": "get_secret"})));
        assert!(r.error.message.contains("missing field `path`"), "{}", r.error.message);
    }

    #[test]
    fn oversized_records_are_refused() {
        let bytes = envelope(json!({"operation": "set_secret", "path": "a", "data": {"k": "x".repeat(4096)}}));
        match decode(&bytes, 1024) {
            Decoded::Refused(r) => assert!(r.dead_letter && r.correlation_id.is_some()),
            Decoded::Request(_) => panic!("oversized record accepted"),
        }
    }

    #[test]
    fn refusals_never_quote_values() {
        let r = refusal(&envelope(json!({"operation": "get_secret", "path": "a", "version": "canary-77"})));
        assert!(!r.error.message.contains("canary"), "{}", r.error.message);
    }
}
