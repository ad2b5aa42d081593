//! Secret material out of copies: what the node keeps of a record it could
//! not use (a dead letter) never holds the values a requester sent to be
//! written or encrypted, even when the record was refused before it was
//! understood.

use serde_json::Value;

/// Fields whose values are secret material, wherever they appear
/// (`set_secret` data, `encrypt` plaintext, upstream's `secret`).
const SECRET_FIELDS: [&str; 3] = ["data", "plaintext", "secret"];
/// What a redacted value becomes.
const REDACTED: &str = "<redacted>";

/// `value` with secret material removed, and whether anything was removed.
///
/// JSON: every secret field's value, at any depth, becomes `"<redacted>"`
/// (of duplicate keys only the last survives the parse; the others are
/// dropped, secret or not). Anything else cannot be read field by field, so
/// it is cut before the first place a secret field or a `\u` escape (which
/// could spell one) starts.
pub fn secret_material(value: &[u8]) -> (Vec<u8>, bool) {
    if let Ok(mut json) = serde_json::from_slice::<Value>(value) {
        if redact(&mut json) {
            return (serde_json::to_vec(&json).unwrap_or_default(), true);
        }
        return (value.to_vec(), false);
    }
    let needles = SECRET_FIELDS.iter().map(|f| f.as_bytes()).chain([b"\\u".as_slice()]);
    match needles.filter_map(|needle| find(value, needle)).min() {
        Some(at) => (value[..at].to_vec(), true),
        None => (value.to_vec(), false),
    }
}

fn redact(value: &mut Value) -> bool {
    match value {
        Value::Object(fields) => {
            let mut redacted = false;
            for (name, field) in fields.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) {
                    *field = Value::String(REDACTED.to_owned());
                    redacted = true;
                } else {
                    redacted |= redact(field);
                }
            }
            redacted
        }
        Value::Array(items) => items.iter_mut().fold(false, |redacted, item| redact(item) | redacted),
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-dlq-5e1f";

    #[test]
    fn secret_fields_are_redacted_at_any_depth_and_the_rest_stays() {
        let record = serde_json::json!({
            "envelope_timestamp": "yesterday",
            "payload": {"operation": "set_secret", "path": "a/b", "data": {"password": CANARY}},
            "signed": {"payload": {"payload": {"operation": "encrypt", "plaintext": CANARY, "secret": [CANARY]}}},
        });
        let (kept, redacted) = secret_material(record.to_string().as_bytes());
        let kept = String::from_utf8(kept).expect("UTF-8");
        assert!(redacted && !kept.contains(CANARY), "{kept}");
        assert!(kept.contains("yesterday") && kept.contains("a/b"), "the rest stays for diagnosis: {kept}");
        let (same, redacted) = secret_material(br#"{"payload": {"path": "x"}}"#);
        assert!(!redacted);
        assert_eq!(same, br#"{"payload": {"path": "x"}}"#);
    }

    #[test]
    fn a_value_that_is_not_json_is_cut_before_any_secret_field() {
        for record in [
            format!(r#"{{"payload": {{"path": "a", "data": {{"p": "{CANARY}"}}}},}}"#),
            format!(r#"{{"payload": {{"path": "a", "d\u0061ta": {{"p": "{CANARY}"}}}}"#),
            format!(r#"{{"payload": {{"plaintext": "{CANARY}""#),
        ] {
            let (kept, redacted) = secret_material(record.as_bytes());
            assert!(redacted, "{record}");
            assert!(!String::from_utf8_lossy(&kept).contains(CANARY), "{record}");
            assert!(String::from_utf8_lossy(&kept).starts_with(r#"{"payload""#));
        }
        let (kept, redacted) = secret_material(b"not json at all");
        assert!(!redacted && kept == b"not json at all");
    }

    #[test]
    fn duplicate_keys_leave_no_secret_behind() {
        let record = format!(r#"{{"payload": {{"data": {{"p": "{CANARY}"}}, "data": {{"p": "{CANARY}2"}}}}}}"#);
        let (kept, redacted) = secret_material(record.as_bytes());
        assert!(redacted && !String::from_utf8_lossy(&kept).contains(CANARY));
    }
}
