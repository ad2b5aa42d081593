//! A request's Vault namespace: the node's own, or a child of it named
//! relative to it (`app` is `team-a/app` for a node in `team-a`). Checked at
//! the boundary like paths: a value of [`Namespace`] is valid by
//! construction, and hostile spellings never reach the `X-Vault-Namespace`
//! header (OpenBao itself would read `/team-a`, `team-a/` and `team-a//app`
//! as `team-a` or `team-a/app`, so only one spelling is accepted).

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

/// Longest namespace a request may name, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 255;
/// Most segments (levels below the node's namespace).
pub const MAX_NAMESPACE_SEGMENTS: usize = 8;
/// Longest segment, in bytes.
const MAX_SEGMENT_BYTES: usize = 64;
/// Names OpenBao refuses for a namespace (`sys`, `audit` and `root` verified
/// against OpenBao 2.7.2) and Vault's own mounts: never a segment.
pub const RESERVED_NAMESPACE_NAMES: [&str; 6] = ["root", "sys", "audit", "auth", "cubbyhole", "identity"];

/// Why a namespace was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceError {
    Empty,
    TooLong,
    TooManySegments,
    LeadingSlash,
    EmptySegment,
    DotSegment,
    SegmentTooLong,
    ForbiddenCharacter,
    Reserved,
}

impl fmt::Display for NamespaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamespaceError::Empty => "is empty (omit it for the node's own namespace)",
            NamespaceError::TooLong => "is longer than 255 bytes",
            NamespaceError::TooManySegments => "has more than 8 segments",
            NamespaceError::LeadingSlash => "must not start with '/' (it is relative to the node's namespace)",
            NamespaceError::EmptySegment => "has an empty segment ('//' or a trailing '/')",
            NamespaceError::DotSegment => "has a '.' or '..' segment",
            NamespaceError::SegmentTooLong => "has a segment longer than 64 bytes",
            NamespaceError::ForbiddenCharacter => "may hold only A-Z a-z 0-9 _ - and '/' between segments",
            NamespaceError::Reserved => "names a reserved namespace (root, sys, audit, auth, cubbyhole, identity)",
        })
    }
}

impl std::error::Error for NamespaceError {}

/// A child namespace relative to the node's (`app`, `billing/eu`): 1 to 8
/// `/`-separated segments of 1 to 64 of `A-Z a-z 0-9 _ -`, at most 255
/// bytes, no reserved name as a segment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Namespace, NamespaceError> {
        let name = name.into();
        check(&name)?;
        Ok(Namespace(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full namespace Vault is asked in: `node`'s namespace (empty: the
    /// root) with this one below it.
    pub fn under(&self, node: &str) -> String {
        let node = node.trim_matches('/');
        if node.is_empty() {
            self.0.clone()
        } else {
            format!("{node}/{}", self.0)
        }
    }
}

fn check(name: &str) -> Result<(), NamespaceError> {
    if name.is_empty() {
        return Err(NamespaceError::Empty);
    }
    if name.len() > MAX_NAMESPACE_BYTES {
        return Err(NamespaceError::TooLong);
    }
    if name.starts_with('/') {
        return Err(NamespaceError::LeadingSlash);
    }
    let mut segments = 0;
    for segment in name.split('/') {
        segments += 1;
        match segment {
            "" => return Err(NamespaceError::EmptySegment),
            "." | ".." => return Err(NamespaceError::DotSegment),
            s if s.len() > MAX_SEGMENT_BYTES => return Err(NamespaceError::SegmentTooLong),
            s if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
                return Err(NamespaceError::ForbiddenCharacter)
            }
            s if RESERVED_NAMESPACE_NAMES.iter().any(|r| r.eq_ignore_ascii_case(s)) => {
                return Err(NamespaceError::Reserved)
            }
            _ => {}
        }
    }
    if segments > MAX_NAMESPACE_SEGMENTS {
        return Err(NamespaceError::TooManySegments);
    }
    Ok(())
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.0)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Names the field in every refusal, a wrong type included.
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Namespace;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`namespace` as a string (a child namespace, e.g. \"app\")")
            }

            fn visit_str<E: serde::de::Error>(self, raw: &str) -> Result<Namespace, E> {
                Namespace::new(raw).map_err(|e| E::custom(format_args!("`namespace` {e}")))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

impl JsonSchema for Namespace {
    fn schema_name() -> Cow<'static, str> {
        "Namespace".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Vault namespace relative to the node's own (e.g. 'app' for team-a/app); omitted: the node's own. 1 to 8 '/'-separated segments of A-Z a-z 0-9 _ -, at most 255 bytes; root, sys, audit, auth, cubbyhole and identity refused.",
            "minLength": 1,
            "maxLength": MAX_NAMESPACE_BYTES,
            "pattern": "^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,7}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_children_and_joins_them_below_the_node() {
        for name in ["app", "billing/eu", "a-b_c/D9", &["n"; MAX_NAMESPACE_SEGMENTS].join("/")] {
            assert!(Namespace::new(name).is_ok(), "{name}");
        }
        let app = Namespace::new("app").expect("valid");
        assert_eq!(app.under("team-a"), "team-a/app");
        assert_eq!(app.under("team-a/"), "team-a/app");
        assert_eq!(app.under(""), "app");
    }

    #[test]
    fn refuses_hostile_namespaces() {
        let cases = [
            ("", NamespaceError::Empty),
            ("/", NamespaceError::LeadingSlash),
            ("/team-a", NamespaceError::LeadingSlash),
            ("../x", NamespaceError::DotSegment),
            ("app/..", NamespaceError::DotSegment),
            ("app/", NamespaceError::EmptySegment),
            ("app//x", NamespaceError::EmptySegment),
            ("a.b", NamespaceError::ForbiddenCharacter),
            ("app x", NamespaceError::ForbiddenCharacter),
            ("app\n", NamespaceError::ForbiddenCharacter),
            ("app%2f..", NamespaceError::ForbiddenCharacter),
            ("sys", NamespaceError::Reserved),
            ("app/SYS", NamespaceError::Reserved),
            ("root", NamespaceError::Reserved),
            ("cubbyhole", NamespaceError::Reserved),
        ];
        for (name, expected) in cases {
            assert_eq!(Namespace::new(name), Err(expected), "{name:?}");
        }
        assert_eq!(Namespace::new("a".repeat(300)), Err(NamespaceError::TooLong));
        assert_eq!(Namespace::new("a".repeat(65)), Err(NamespaceError::SegmentTooLong));
        assert_eq!(Namespace::new(["n"; MAX_NAMESPACE_SEGMENTS + 1].join("/")), Err(NamespaceError::TooManySegments));
    }

    #[test]
    fn deserializing_names_the_field() {
        let error = serde_json::from_str::<Namespace>("\"../x\"").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("`namespace`") && error.contains("'..'"), "{error}");
        let error = serde_json::from_str::<Namespace>("7").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("`namespace`"), "{error}");
    }
}
