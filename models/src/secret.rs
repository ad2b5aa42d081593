//! `SecretData`: the key/value map of a secret, kept in a `secrecy` box.
//!
//! Its `Debug` prints only the number of keys; its memory is zeroized on drop;
//! reading it takes an explicit `expose_secret()`, so a value cannot reach a
//! log line by accident.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretBox, SerializableSecret};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object holding secret values. Private: only reachable through
/// [`SecretData::expose_secret`].
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretMap(pub Map<String, Value>);

impl Zeroize for SecretMap {
    fn zeroize(&mut self) {
        fn wipe(value: &mut Value) {
            match value {
                Value::String(s) => s.zeroize(),
                Value::Array(items) => items.iter_mut().for_each(wipe),
                Value::Object(map) => map.values_mut().for_each(wipe),
                _ => {}
            }
        }
        self.0.values_mut().for_each(wipe);
        self.0.clear();
    }
}

impl SerializableSecret for SecretMap {}

/// The data of a secret (`set_secret` input, `get_secret` result).
pub struct SecretData(SecretBox<SecretMap>);

impl SecretData {
    pub fn new(map: Map<String, Value>) -> Self {
        SecretData(SecretBox::new(Box::new(SecretMap(map))))
    }

    /// The plain key/value map. Call it only where the value must leave the
    /// process: the Vault call and the reply body.
    pub fn expose_secret(&self) -> &Map<String, Value> {
        &self.0.expose_secret().0
    }

    pub fn len(&self) -> usize {
        self.expose_secret().len()
    }

    pub fn is_empty(&self) -> bool {
        self.expose_secret().is_empty()
    }
}

impl Default for SecretData {
    /// No data: what a `set_secret` that sends `sealed_data` has in `data`.
    fn default() -> Self {
        SecretData::new(Map::new())
    }
}

impl Clone for SecretData {
    fn clone(&self) -> Self {
        SecretData::new(self.expose_secret().clone())
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretData([REDACTED; {} keys])", self.len())
    }
}

impl Serialize for SecretData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SecretData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SecretData(SecretBox::deserialize(deserializer)?))
    }
}

impl JsonSchema for SecretData {
    fn schema_name() -> Cow<'static, str> {
        "SecretData".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Key/value data of a secret. Never logged by the node.",
            "additionalProperties": true
        })
    }
}

/// Serializes a secret string as its plain value: for the few wire fields
/// (a wrapping token) that exist to carry one.
pub(crate) fn expose_optional<S: Serializer>(value: &Option<secrecy::SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.serialize_str(value.expose_secret()),
        None => s.serialize_none(),
    }
}

/// Serializes a secret string as its plain value (see [`expose_optional`]).
pub(crate) fn expose_string<S: Serializer>(value: &secrecy::SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let data: SecretData = serde_json::from_str(r#"{"password":"canary-hunter2"}"#).expect("valid json");
        let debug = format!("{data:?}");
        assert!(!debug.contains("canary"), "{debug}");
        assert_eq!(debug, "SecretData([REDACTED; 1 keys])");
        let json = serde_json::to_string(&data).expect("serializes");
        assert_eq!(json, r#"{"password":"canary-hunter2"}"#);
    }

    #[test]
    fn zeroize_wipes_nested_strings() {
        let mut map = SecretMap(serde_json::from_str(r#"{"a":"x","b":{"c":["y"]}}"#).expect("valid json"));
        map.zeroize();
        assert!(map.0.is_empty());
    }
}
