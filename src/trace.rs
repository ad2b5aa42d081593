//! W3C trace context through the node: taken from the request (envelope
//! `metadata.headers.traceparent`, else a `traceparent` record header, else
//! the envelope's `metadata.trace_id`/`span_id`), given a span of the node's
//! own, and carried into the reply (`metadata` and a `traceparent` header) so
//! a requester's trace continues through the adapter.

use onex_vault_models::Envelope;
use rand::Rng;
use uuid::Uuid;

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
    /// Looked for in this order: `metadata.headers.traceparent`, the
    /// `traceparent` record header, `metadata.trace_id` (with
    /// `metadata.span_id` as the parent), the envelope's own `trace_id`.
    pub fn continue_from<P>(request: &Envelope<P>, record_traceparent: Option<&str>) -> TraceContext {
        let span_id = random_hex(8);
        let metadata = &request.metadata;
        let from_metadata = metadata.headers.get("traceparent").map(String::as_str);
        if let Some((trace_id, parent, flags)) = from_metadata.or(record_traceparent).and_then(parse_traceparent) {
            return TraceContext { trace_id, parent_span_id: Some(parent), span_id, flags };
        }
        let flags = "01".to_owned();
        match (&metadata.trace_id, request.trace_id) {
            (Some(trace_id), _) => {
                TraceContext { trace_id: trace_id.clone(), parent_span_id: metadata.span_id.clone(), span_id, flags }
            }
            (None, Some(trace_id)) => {
                TraceContext { trace_id: trace_id.simple().to_string(), parent_span_id: None, span_id, flags }
            }
            (None, None) => TraceContext { trace_id: random_hex(16), parent_span_id: None, span_id, flags },
        }
    }

    /// `00-<trace>-<span>-<flags>`, when the trace id is a W3C one.
    pub fn traceparent(&self) -> Option<String> {
        is_hex(&self.trace_id, 32).then(|| format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags))
    }

    /// Puts the trace on a reply: `metadata` names the trace, the node's
    /// span and the requester's span as its parent, with a `traceparent`;
    /// the envelope's `trace_id` is the trace when it is a W3C one.
    pub fn apply_to<P>(&self, reply: &mut Envelope<P>) {
        let metadata = &mut reply.metadata;
        metadata.trace_id = Some(self.trace_id.clone());
        metadata.span_id = Some(self.span_id.clone());
        metadata.parent_span_id = self.parent_span_id.clone();
        if let Some(traceparent) = self.traceparent() {
            metadata.headers.insert("traceparent".into(), traceparent);
        }
        if let Ok(trace_id) = Uuid::try_parse(&self.trace_id) {
            reply.trace_id = Some(trace_id);
        }
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
    use onex_vault_models::EnvelopeMetadata;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn request(metadata: EnvelopeMetadata, trace_id: Option<Uuid>) -> Envelope<()> {
        let mut request = Envelope::new("T", ());
        request.metadata = metadata;
        request.trace_id = trace_id;
        request
    }

    #[test]
    fn continues_a_w3c_trace_from_metadata_headers() {
        let mut metadata = EnvelopeMetadata::default();
        metadata.headers.insert("traceparent".into(), PARENT.into());
        let trace = TraceContext::continue_from(&request(metadata, None), None);
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(trace.span_id, "00f067aa0ba902b7", "the node opens its own span");
        let mut reply = Envelope::new("R", ());
        trace.apply_to(&mut reply);
        let traceparent = &reply.metadata.headers["traceparent"];
        assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(traceparent.ends_with("-01"));
        assert_eq!(reply.metadata.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(reply.trace_id.map(|t| t.simple().to_string()).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn falls_back_to_the_record_header_then_onex_ids_then_a_new_trace() {
        let from_header = TraceContext::continue_from(&request(EnvelopeMetadata::default(), None), Some(PARENT));
        assert_eq!(from_header.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

        let onex = EnvelopeMetadata {
            trace_id: Some("trace-abc".into()),
            span_id: Some("span-1".into()),
            ..Default::default()
        };
        let from_ids = TraceContext::continue_from(&request(onex, None), None);
        assert_eq!(from_ids.trace_id, "trace-abc");
        assert_eq!(from_ids.parent_span_id.as_deref(), Some("span-1"));
        assert!(from_ids.traceparent().is_none(), "not a W3C trace id");

        let top_level = Uuid::new_v4();
        let from_envelope = TraceContext::continue_from(&request(EnvelopeMetadata::default(), Some(top_level)), None);
        assert_eq!(from_envelope.trace_id, top_level.simple().to_string());

        let fresh = TraceContext::continue_from(&request(EnvelopeMetadata::default(), None), None);
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
