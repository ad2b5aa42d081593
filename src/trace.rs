//! W3C trace context through the node: taken from the request (envelope
//! `metadata.headers.traceparent`, else a `traceparent` record header, else
//! the envelope's `metadata.trace_id`/`span_id`), given a span of the node's
//! own, and carried into the reply (`metadata` and a `traceparent` header) so
//! a requester's trace continues through the adapter.

use onex_vault_models::EnvelopeMetadata;
use rand::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct TraceContext {
    /// The trace this request belongs to (32 hex digits when it came as W3C).
    pub trace_id: String,
    /// The requester's span: the parent of ours.
    pub parent_span_id: Option<String>,
    /// The node's span for this request (16 hex digits).
    pub span_id: String,
    flags: String,
}

impl TraceContext {
    /// The request's trace, continued; or a new trace when it carried none.
    pub fn continue_from(metadata: Option<&EnvelopeMetadata>, record_traceparent: Option<&str>) -> TraceContext {
        let span_id = random_hex(8);
        let from_metadata = metadata.and_then(|m| m.headers.get("traceparent")).map(String::as_str);
        if let Some((trace_id, parent, flags)) = from_metadata.or(record_traceparent).and_then(parse_traceparent) {
            return TraceContext { trace_id, parent_span_id: Some(parent), span_id, flags };
        }
        match metadata.and_then(|m| m.trace_id.clone()) {
            Some(trace_id) => TraceContext {
                trace_id,
                parent_span_id: metadata.and_then(|m| m.span_id.clone()),
                span_id,
                flags: "01".into(),
            },
            None => TraceContext { trace_id: random_hex(16), parent_span_id: None, span_id, flags: "01".into() },
        }
    }

    /// `00-<trace>-<span>-<flags>`, when the trace id is a W3C one.
    pub fn traceparent(&self) -> Option<String> {
        is_hex(&self.trace_id, 32).then(|| format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags))
    }

    /// The reply's metadata: same trace, the node's span, and `traceparent`.
    pub fn reply_metadata(&self) -> EnvelopeMetadata {
        let mut metadata = EnvelopeMetadata {
            trace_id: Some(self.trace_id.clone()),
            span_id: Some(self.span_id.clone()),
            ..EnvelopeMetadata::default()
        };
        if let Some(traceparent) = self.traceparent() {
            metadata.headers.insert("traceparent".into(), traceparent);
        }
        metadata
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>` → (trace id, parent span id, flags).
fn parse_traceparent(value: &str) -> Option<(String, String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = version == "00"
        && parts.next().is_none()
        && is_hex(trace, 32)
        && is_hex(span, 16)
        && is_hex(flags, 2)
        && trace.chars().any(|c| c != '0')
        && span.chars().any(|c| c != '0');
    valid.then(|| (trace.to_owned(), span.to_owned(), flags.to_owned()))
}

fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len && value.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_w3c_trace_from_metadata_headers() {
        let mut metadata = EnvelopeMetadata::default();
        metadata.headers.insert("traceparent".into(), PARENT.into());
        let trace = TraceContext::continue_from(Some(&metadata), None);
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(trace.span_id, "00f067aa0ba902b7", "the node opens its own span");
        let reply = trace.reply_metadata();
        let traceparent = &reply.headers["traceparent"];
        assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(traceparent.ends_with("-01"));
    }

    #[test]
    fn falls_back_to_the_record_header_then_onex_ids_then_a_new_trace() {
        let from_header = TraceContext::continue_from(None, Some(PARENT));
        assert_eq!(from_header.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

        let onex = EnvelopeMetadata {
            trace_id: Some("trace-abc".into()),
            span_id: Some("span-1".into()),
            ..Default::default()
        };
        let from_ids = TraceContext::continue_from(Some(&onex), None);
        assert_eq!(from_ids.trace_id, "trace-abc");
        assert_eq!(from_ids.parent_span_id.as_deref(), Some("span-1"));
        assert!(from_ids.traceparent().is_none(), "not a W3C trace id");

        let fresh = TraceContext::continue_from(None, None);
        assert!(fresh.traceparent().is_some());
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-XYZ-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}
