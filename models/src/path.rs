//! Validated Vault paths: what a requester may name, checked at the boundary.
//!
//! A path is relative to its mount, `/`-separated, with no leading `/`, no empty,
//! `.` or `..` segments, no control characters and none of `? # % \` (which
//! would change the meaning of the URL the node builds). A value of these types
//! is valid by construction: deserializing an invalid one fails.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

/// Longest path (mount or secret path) the node accepts, in bytes.
pub const MAX_PATH_BYTES: usize = 512;
const MAX_SEGMENTS: usize = 32;
const FORBIDDEN: &[char] = &['?', '#', '%', '\\', '*'];

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    TooLong,
    TooManySegments,
    LeadingSlash,
    EmptySegment,
    DotSegment,
    ForbiddenCharacter,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "is empty",
            PathError::TooLong => "is longer than 512 bytes",
            PathError::TooManySegments => "has more than 32 segments",
            PathError::LeadingSlash => "must not start with '/'",
            PathError::EmptySegment => "has an empty segment ('//' or a trailing '/')",
            PathError::DotSegment => "has a '.' or '..' segment",
            PathError::ForbiddenCharacter => "has a control character or one of ? # % \\ *",
        })
    }
}

impl std::error::Error for PathError {}

/// Checks `/`-separated segments; `allow_trailing_slash` for folders.
fn check(path: &str, allow_empty: bool, allow_trailing_slash: bool) -> Result<(), PathError> {
    if path.is_empty() {
        return if allow_empty { Ok(()) } else { Err(PathError::Empty) };
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if path.starts_with('/') {
        return Err(PathError::LeadingSlash);
    }
    if path.chars().any(|c| c.is_control() || FORBIDDEN.contains(&c)) {
        return Err(PathError::ForbiddenCharacter);
    }
    let body = match path.strip_suffix('/') {
        Some(body) if allow_trailing_slash => body,
        _ => path,
    };
    let mut segments = 0;
    for segment in body.split('/') {
        segments += 1;
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    if segments > MAX_SEGMENTS {
        return Err(PathError::TooManySegments);
    }
    Ok(())
}

macro_rules! validated_path {
    ($(#[$doc:meta])* $name:ident, $label:literal, allow_empty = $empty:expr, trailing_slash = $slash:expr, $pattern_doc:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `path`.
            pub fn new(path: impl Into<String>) -> Result<Self, PathError> {
                let path = path.into();
                check(&path, $empty, $slash)?;
                Ok($name(path))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The path with every segment after the first masked, for logs
            /// (`app/***/***`): enough to tell requests apart, not to map secrets.
            pub fn masked(&self) -> String {
                mask_path(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.masked())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                $name::new(raw).map_err(|e| serde::de::Error::custom(format_args!("`{}` {e}", $label)))
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": $pattern_doc,
                    "minLength": if $empty { 0 } else { 1 },
                    "maxLength": MAX_PATH_BYTES,
                    "pattern": "^(?:[^/?#%\\\\*\\u0000-\\u001f\\u007f][^?#%\\\\*\\u0000-\\u001f\\u007f]*)?$"
                })
            }
        }
    };
}

validated_path!(
    /// A secret's path relative to its mount, e.g. `app/database`.
    SecretPath, "path", allow_empty = false, trailing_slash = false,
    "Secret path relative to the mount: '/'-separated, no leading '/', no empty, '.' or '..' segments, none of ? # % \\ * or control characters."
);
validated_path!(
    /// A folder to list, relative to its mount; empty for the mount's root,
    /// a trailing `/` allowed (`app/`).
    FolderPath, "path", allow_empty = true, trailing_slash = true,
    "Folder relative to the mount ('' for the root; trailing '/' allowed); same rules as a secret path."
);
validated_path!(
    /// A secrets-engine mount, e.g. `secret` or `team/kv`.
    MountName, "mount", allow_empty = false, trailing_slash = false,
    "Mount path of a KV v2 secrets engine, e.g. 'secret'; same rules as a secret path."
);

/// A path with every segment after the first masked (`app/***/***`): enough
/// to tell requests apart in a log, not to map secrets.
pub fn mask_path(path: &str) -> String {
    let mut segments = path.trim_end_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    let rest = segments.count();
    let mut masked = first.to_owned();
    for _ in 0..rest {
        masked.push_str("/***");
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in ["app", "app/db", "a-b_c.d/e@f", "team x/y"] {
            assert!(SecretPath::new(p).is_ok(), "{p}");
        }
        assert!(FolderPath::new("").is_ok());
        assert!(FolderPath::new("app/").is_ok());
    }

    #[test]
    fn refuses_hostile_paths() {
        let cases = [
            ("", PathError::Empty),
            ("/etc/passwd", PathError::LeadingSlash),
            ("../sys/seal", PathError::DotSegment),
            ("app/../../sys", PathError::DotSegment),
            ("app/./x", PathError::DotSegment),
            ("app//x", PathError::EmptySegment),
            ("app/", PathError::EmptySegment),
            ("app?list=true", PathError::ForbiddenCharacter),
            ("app%2f..", PathError::ForbiddenCharacter),
            ("app\nx", PathError::ForbiddenCharacter),
            ("a\\b", PathError::ForbiddenCharacter),
        ];
        for (path, expected) in cases {
            assert_eq!(SecretPath::new(path), Err(expected), "{path:?}");
        }
        assert_eq!(SecretPath::new("a".repeat(MAX_PATH_BYTES + 1)), Err(PathError::TooLong));
        assert_eq!(SecretPath::new(vec!["a"; MAX_SEGMENTS + 1].join("/")), Err(PathError::TooManySegments));
        assert_eq!(FolderPath::new("app//"), Err(PathError::EmptySegment));
    }

    #[test]
    fn masks_all_but_the_first_segment() {
        let path = SecretPath::new("billing/stripe/api").unwrap();
        assert_eq!(path.masked(), "billing/***/***");
        assert_eq!(format!("{path:?}"), "SecretPath(\"billing/***/***\")");
    }
}
