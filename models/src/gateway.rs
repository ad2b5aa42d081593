//! Signed gateway envelopes: omnibase-core's `ModelMessageEnvelope` as
//! omnibase-infra's runtime gateway signs and checks it.
//!
//! A runtime that publishes across a realm boundary wraps the ONEX event
//! envelope (here a [`serde_json::Value`]) in a [`SignedEnvelope`]. Byte for
//! byte like upstream (`ServiceEnvelopeSigner.sign_dict`,
//! `ServiceEnvelopeValidator.validate_envelope`):
//!
//! 1. `payload_hash` = BLAKE3, in lowercase hex, of the payload's canonical
//!    JSON: Python's `json.dumps(payload, sort_keys=True, separators=(",", ":"))`
//!    ([`canonical_json`]), encoded as UTF-8 (it is ASCII).
//! 2. `signature` = Ed25519 over the 64 ASCII bytes of that hex hash, in
//!    URL-safe base64 with padding.
//!
//! Only the payload hash is signed: `realm`, `runtime_id`, `bus_id`,
//! `trace_id`, `emitted_at`, `causality_id`, `tenant_id` and
//! `emitter_identity` are not, as upstream. A verifier trusts the payload and
//! the signer, nothing else.
//!
//! Numbers: serde_json reads an integer beyond `i64`/`u64` as a float, reads
//! `-0` as the float `-0.0`, and (without its `float_roundtrip` feature,
//! which this crate does not turn on) reads many floats one unit in the last
//! place off: 16-17 digit ones (`0.9999999999999999`), and short ones with a
//! large exponent (`-1.5e-300`). Python reads all of them exactly, so the
//! hash of such a payload, taken from a [`serde_json::Value`], differs from
//! the signer's and the check fails closed.
//! [`SignedEnvelope::verify_received`] and [`SignedEnvelope::parse_verified`]
//! hash the payload from the received text instead ([`canonical_json_text`])
//! and have none of these losses: a receiver that has the record's text
//! should use them.
//!
//! Over 500 lines: the signing and checking rules of omnibase-infra's gateway
//! in one file, to be read against upstream's side by side; a fifth is tests.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use chrono::{DateTime, SubsecRound as _, Utc};
use ed25519_dalek::Signer as _;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The only signature algorithm upstream knows.
pub const GATEWAY_SIGNATURE_ALGORITHM: &str = "ed25519";

/// Deepest nesting [`canonical_json_text`] reads (serde_json's own limit).
const MAX_DEPTH: usize = 128;

/// omnibase-core's `ModelMessageEnvelope`: a payload signed by the gateway
/// runtime `runtime_id` of realm `realm`. Unknown fields are refused, as
/// upstream (`extra="forbid"`). Optional fields are left out when absent (upstream
/// writes `null`; both read both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedEnvelope {
    /// Routing boundary, e.g. `dev`, `prod` (== the node identity's `env`).
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub realm: String,
    /// The gateway runtime that signed; must equal `signature.signer`.
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub runtime_id: String,
    /// The message bus, e.g. `kafka-cluster-a`.
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub bus_id: String,
    /// Distributed trace id; upstream makes a new one when it is missing, and
    /// so does this type.
    #[serde(default = "Uuid::new_v4")]
    #[schemars(transform = no_default)]
    pub trace_id: Uuid,
    /// When the envelope was made. Read from RFC 3339 with an offset (a
    /// timestamp without one is refused, as upstream) and kept in UTC; written
    /// as pydantic writes it: `2026-11-29T15:00:00.123456Z`, the fraction
    /// (microseconds) only when not zero.
    #[serde(with = "emitted_at")]
    #[schemars(with = "DateTime<Utc>")]
    pub emitted_at: DateTime<Utc>,
    pub signature: EnvelopeSignature,
    /// The signed message: the inner ONEX event envelope as JSON.
    pub payload: Value,
    /// The envelope that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causality_id: Option<Uuid>,
    /// Tenant, for attribution (not signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The component that emitted the payload: untrusted observability data,
    /// not signed. Its `env` must equal `realm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitter_identity: Option<EmitterIdentity>,
}

/// omnibase-core's `ModelEnvelopeSignature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub algorithm: SignatureAlgorithm,
    /// The runtime that signed (== the envelope's `runtime_id`).
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub signer: String,
    /// BLAKE3 of the payload's canonical JSON, 64 hex digits; lowercased on
    /// read, as upstream.
    #[serde(deserialize_with = "hex_hash")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub payload_hash: String,
    /// Ed25519 signature of the ASCII `payload_hash`, base64 (URL-safe when
    /// written; standard also read).
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub signature: String,
}

/// `algorithm` of an [`EnvelopeSignature`]: `ed25519`, nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SignatureAlgorithm {
    #[default]
    #[serde(rename = "ed25519")]
    Ed25519,
}

/// omnibase-core's `ModelEmitterIdentity`: every field non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmitterIdentity {
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub env: String,
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub service: String,
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub node_name: String,
    #[serde(deserialize_with = "non_empty")]
    #[schemars(length(min = 1))]
    pub version: String,
}

fn no_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Err(serde::de::Error::custom("must not be empty"));
    }
    Ok(text)
}

fn hex_hash<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(serde::de::Error::custom("payload_hash: exactly 64 hex digits"));
    }
    Ok(text.to_ascii_lowercase())
}

mod emitted_at {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::pydantic_timestamp(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|time| time.with_timezone(&Utc))
            .map_err(|_| serde::de::Error::custom("emitted_at: an RFC 3339 timestamp with a UTC offset"))
    }
}

/// A UTC time as pydantic's `model_dump(mode="json")` writes it.
fn pydantic_timestamp(time: &DateTime<Utc>) -> String {
    let mut text = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = time.timestamp_subsec_micros().min(999_999);
    if micros != 0 {
        let _ = write!(text, ".{micros:06}");
    }
    text.push('Z');
    text
}

// ---------------------------------------------------------------------------
// Canonical JSON

/// Python's `json.dumps(value, sort_keys=True, separators=(",", ":"))`
/// (`ensure_ascii` on) of the value Python's `json.loads` reads from the same
/// text: keys sorted by code point, every character outside `' '..='~'`
/// escaped (`\n`-style where JSON has one, else `\u00e9`, astral characters as
/// a surrogate pair), floats as Python's `repr` (`1e-05`, `1e+16`, `100.0`,
/// `-0.0`).
///
/// Exact for the value given; see the module documentation for the numbers a
/// [`Value`] parsed by serde_json does not hold as Python would.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// BLAKE3, in lowercase hex, of [`canonical_json`]: upstream's
/// `hash_canonical_json`.
pub fn payload_hash(value: &Value) -> String {
    blake3::hash(canonical_json(value).as_bytes()).to_hex().to_string()
}

/// [`canonical_json`] of JSON text, read as Python's `json.loads` reads it:
/// integers of any size kept as they are (`-0` is `0`), floats rounded
/// correctly, the last of duplicate keys winning. Refused where serde_json
/// would refuse too: `NaN`/`Infinity` literals, lone surrogates, control
/// characters in strings, nesting deeper than 128.
pub fn canonical_json_text(text: &str) -> Result<String, CanonicalJsonError> {
    let mut reader = TextReader { text: text.as_bytes(), at: 0 };
    let node = reader.value(0)?;
    reader.skip_whitespace();
    if reader.at != reader.text.len() {
        return Err(CanonicalJsonError { offset: reader.at });
    }
    let mut out = String::new();
    node.write(&mut out);
    Ok(out)
}

/// [`payload_hash`] of JSON text, by [`canonical_json_text`].
pub fn payload_hash_text(text: &str) -> Result<String, CanonicalJsonError> {
    Ok(blake3::hash(canonical_json_text(text)?.as_bytes()).to_hex().to_string())
}

/// JSON text [`canonical_json_text`] cannot read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalJsonError {
    /// Byte offset of the problem.
    pub offset: usize,
}

impl fmt::Display for CanonicalJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not JSON this hash accepts (byte {})", self.offset)
    }
}

impl std::error::Error for CanonicalJsonError {}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => {
            if let Some(u) = number.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(i) = number.as_i64() {
                let _ = write!(out, "{i}");
            } else {
                match number.as_f64() {
                    Some(f) => write_float(out, f),
                    None => out.push_str(&number.to_string()),
                }
            }
        }
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Byte order of UTF-8 is code point order, Python's key order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A string as Python's `json.dumps` writes it with `ensure_ascii=True`.
fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr` (and so `json.dumps`) writes it: the shortest
/// digits that read back to the same float, in positional notation when the
/// decimal exponent is in -4..16, else as `d.ddde±XX`.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    if f == 0.0 {
        out.push_str("0.0");
        return;
    }
    // Rust's `{:e}` is the shortest round-trip form too: `1.2345e-7`.
    let scientific = format!("{:e}", f.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
    } else if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let whole = exponent.unsigned_abs() as usize + 1;
        if digits.len() <= whole {
            out.push_str(&digits);
            for _ in digits.len()..whole {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..whole]);
            out.push('.');
            out.push_str(&digits[whole..]);
        }
    }
}

/// A JSON value as Python holds it, as far as its canonical form goes.
enum Node {
    Literal(&'static str),
    /// An integer's canonical digits (any size).
    Integer(String),
    Float(f64),
    Text(String),
    Array(Vec<Node>),
    Object(BTreeMap<String, Node>),
}

impl Node {
    fn write(&self, out: &mut String) {
        match self {
            Node::Literal(text) => out.push_str(text),
            Node::Integer(digits) => out.push_str(digits),
            Node::Float(f) => write_float(out, *f),
            Node::Text(text) => write_string(out, text),
            Node::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Node::Object(map) => {
                out.push('{');
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    item.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON reader with Python's `json.loads` semantics for numbers.
struct TextReader<'a> {
    text: &'a [u8],
    at: usize,
}

impl TextReader<'_> {
    fn fail<T>(&self) -> Result<T, CanonicalJsonError> {
        Err(CanonicalJsonError { offset: self.at })
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, CanonicalJsonError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Node::Text),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.fail(),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<Node, CanonicalJsonError> {
        if self.text[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(Node::Literal(word))
        } else {
            self.fail()
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, CanonicalJsonError> {
        if depth > MAX_DEPTH {
            return self.fail();
        }
        self.at += 1;
        let mut map = BTreeMap::new();
        self.skip_whitespace();
        if self.eat(b'}') {
            return Ok(Node::Object(map));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return self.fail();
            }
            let key = self.string()?;
            self.skip_whitespace();
            if !self.eat(b':') {
                return self.fail();
            }
            let item = self.value(depth)?;
            map.insert(key, item);
            self.skip_whitespace();
            if self.eat(b'}') {
                return Ok(Node::Object(map));
            }
            if !self.eat(b',') {
                return self.fail();
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node, CanonicalJsonError> {
        if depth > MAX_DEPTH {
            return self.fail();
        }
        self.at += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat(b']') {
            return Ok(Node::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            if self.eat(b']') {
                return Ok(Node::Array(items));
            }
            if !self.eat(b',') {
                return self.fail();
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Node, CanonicalJsonError> {
        let start = self.at;
        let negative = self.eat(b'-');
        let int_start = self.at;
        let int_digits = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.text[int_start] == b'0') {
            return self.fail();
        }
        let mut is_float = false;
        if self.eat(b'.') {
            is_float = true;
            if self.digits() == 0 {
                return self.fail();
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_float = true;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return self.fail();
            }
        }
        let Ok(text) = std::str::from_utf8(&self.text[start..self.at]) else {
            return self.fail();
        };
        if is_float {
            return match text.parse::<f64>() {
                Ok(f) => Ok(Node::Float(f)),
                Err(_) => self.fail(),
            };
        }
        // Python's int: `-0` is `0`; JSON has no other redundant form.
        let digits = &text[usize::from(negative)..];
        Ok(Node::Integer(if negative && digits != "0" { text.to_owned() } else { digits.to_owned() }))
    }

    fn hex4(&mut self) -> Result<u32, CanonicalJsonError> {
        let Some(hex) = self.text.get(self.at..self.at + 4) else {
            return self.fail();
        };
        let parsed = std::str::from_utf8(hex).ok().filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match parsed.and_then(|h| u32::from_str_radix(h, 16).ok()) {
            Some(unit) => {
                self.at += 4;
                Ok(unit)
            }
            None => self.fail(),
        }
    }

    fn string(&mut self) -> Result<String, CanonicalJsonError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let run_start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // The input is a &str and the run stops at ASCII, so this holds.
            match std::str::from_utf8(&self.text[run_start..self.at]) {
                Ok(run) => out.push_str(run),
                Err(_) => return self.fail(),
            }
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(escape) = self.peek() else {
                        return self.fail();
                    };
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let unit = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&unit) {
                                // A high surrogate must be followed by a low one.
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return self.fail();
                                }
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return self.fail();
                                }
                                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                            } else {
                                unit
                            };
                            match char::from_u32(code) {
                                Some(c) => out.push(c),
                                None => return self.fail(),
                            }
                        }
                        _ => return self.fail(),
                    }
                }
                _ => return self.fail(),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Keys, signing, verification

/// Why a gateway key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKeyError {
    /// Not 32 bytes in standard or URL-safe base64 (with padding).
    Malformed,
    /// Not a usable Ed25519 public key: not a curve point, or of small order.
    Weak,
    /// The system gave no randomness to make a key with.
    NoRandomness,
}

impl fmt::Display for GatewayKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayKeyError::Malformed => "not a 32-byte key in base64",
            GatewayKeyError::Weak => "not a usable Ed25519 public key",
            GatewayKeyError::NoRandomness => "no system randomness",
        })
    }
}

impl std::error::Error for GatewayKeyError {}

/// Standard or URL-safe base64 (padding required, as Python's `b64decode`).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE.decode(text).or_else(|_| STANDARD.decode(text)).ok()
}

fn decode_32(text: &str) -> Result<[u8; 32], GatewayKeyError> {
    decode_base64(text).and_then(|bytes| bytes.try_into().ok()).ok_or(GatewayKeyError::Malformed)
}

/// A gateway runtime's public Ed25519 key, as a verifier registers it.
/// `Debug` shows it in URL-safe base64.
#[derive(Clone, PartialEq, Eq)]
pub struct RuntimeKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for RuntimeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuntimeKey({})", self.to_base64())
    }
}

impl RuntimeKey {
    /// A key from its 32 bytes in standard or URL-safe base64 (upstream's
    /// `public_key_base64` writes URL-safe). Small-order keys are refused.
    pub fn from_base64(text: &str) -> Result<RuntimeKey, GatewayKeyError> {
        RuntimeKey::from_bytes(&decode_32(text)?)
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<RuntimeKey, GatewayKeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| GatewayKeyError::Weak)?;
        if key.is_weak() {
            return Err(GatewayKeyError::Weak);
        }
        Ok(RuntimeKey(key))
    }

    /// The key in URL-safe base64 with padding, as upstream writes it.
    pub fn to_base64(&self) -> String {
        URL_SAFE.encode(self.0.to_bytes())
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

/// A gateway runtime's signing identity: omnibase-infra's
/// `ServiceEnvelopeSigner`. `Debug` never shows the private key.
pub struct RuntimeSigner {
    realm: String,
    runtime_id: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for RuntimeSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeSigner")
            .field("realm", &self.realm)
            .field("runtime_id", &self.runtime_id)
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl RuntimeSigner {
    /// A signer from the 32-byte Ed25519 private key (seed, as Python's
    /// `private_bytes_raw()`) in standard or URL-safe base64.
    pub fn from_seed_base64(realm: &str, runtime_id: &str, seed: &str) -> Result<RuntimeSigner, GatewayKeyError> {
        let seed = decode_32(seed)?;
        Ok(RuntimeSigner::new(realm, runtime_id, ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// A signer with a new random key.
    pub fn generate(realm: &str, runtime_id: &str) -> Result<RuntimeSigner, GatewayKeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| GatewayKeyError::NoRandomness)?;
        let signer = RuntimeSigner::new(realm, runtime_id, ed25519_dalek::SigningKey::from_bytes(&seed));
        seed.fill(0);
        Ok(signer)
    }

    fn new(realm: &str, runtime_id: &str, key: ed25519_dalek::SigningKey) -> RuntimeSigner {
        RuntimeSigner { realm: realm.to_owned(), runtime_id: runtime_id.to_owned(), key }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn runtime_id(&self) -> &str {
        &self.runtime_id
    }

    pub fn public_key(&self) -> RuntimeKey {
        RuntimeKey(self.key.verifying_key())
    }

    /// The public key in URL-safe base64 with padding (upstream's
    /// `Ed25519KeyPair.public_key_base64`).
    pub fn public_key_base64(&self) -> String {
        self.public_key().to_base64()
    }

    /// Signs `payload` as upstream's `sign_dict`: `emitted_at` is now (UTC, to
    /// the microsecond, all Python holds). Realm, runtime id and `bus_id` must
    /// not be empty, or upstream refuses the envelope. `tenant_id` and
    /// `emitter_identity`, not signed, may be set on the result.
    pub fn sign(&self, payload: Value, bus_id: &str, trace_id: Uuid, causality_id: Option<Uuid>) -> SignedEnvelope {
        let payload_hash = payload_hash(&payload);
        self.envelope(payload_hash, payload, bus_id, trace_id, causality_id)
    }

    /// [`RuntimeSigner::sign`] for a payload given as JSON text, which the
    /// record then carries byte for byte (for tools and tests that must send
    /// exactly what they were given); returns the record's text.
    pub fn sign_text(
        &self,
        payload: &str,
        bus_id: &str,
        trace_id: Uuid,
        causality_id: Option<Uuid>,
    ) -> Result<String, CanonicalJsonError> {
        let payload_hash = payload_hash_text(payload)?;
        let envelope = self.envelope(payload_hash, Value::Null, bus_id, trace_id, causality_id);
        let mut fields = match serde_json::to_value(envelope) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err(CanonicalJsonError { offset: 0 }),
        };
        fields.remove("payload");
        let head = Value::Object(fields).to_string();
        let head = head.strip_suffix('}').unwrap_or(&head);
        Ok(format!("{head},\"payload\":{payload}}}"))
    }

    fn envelope(
        &self,
        payload_hash: String,
        payload: Value,
        bus_id: &str,
        trace_id: Uuid,
        causality_id: Option<Uuid>,
    ) -> SignedEnvelope {
        let signature = self.key.sign(payload_hash.as_bytes());
        SignedEnvelope {
            realm: self.realm.clone(),
            runtime_id: self.runtime_id.clone(),
            bus_id: bus_id.to_owned(),
            trace_id,
            emitted_at: Utc::now().trunc_subsecs(6),
            signature: EnvelopeSignature {
                algorithm: SignatureAlgorithm::Ed25519,
                signer: self.runtime_id.clone(),
                payload_hash,
                signature: URL_SAFE.encode(signature.to_bytes()),
            },
            payload,
            causality_id,
            tenant_id: None,
            emitter_identity: None,
        }
    }
}

/// Why a signed envelope is refused. [`GatewayRefusal::code`] is upstream's
/// code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRefusal {
    /// Not a signed envelope upstream would read, or a record that is not
    /// JSON (upstream's runtime drops it on its pydantic `ValidationError`).
    /// Only from [`SignedEnvelope::parse_verified`] and
    /// [`SignedEnvelope::verify_received`].
    Malformed,
    /// `signature.signer` is not `runtime_id` (upstream refuses the envelope
    /// when it reads it).
    SignerIsNotRuntime,
    /// `emitter_identity.env` is not `realm` (upstream refuses the envelope
    /// when it reads it).
    EmitterNotInRealm,
    /// `realm` is not the verifier's realm.
    RealmMismatch,
    /// No key registered for `signature.signer`.
    UnknownSigner,
    /// The payload does not hash to `signature.payload_hash`.
    HashMismatch,
    /// The signature is not a valid one of `payload_hash` by any key of the signer.
    InvalidSignature,
}

impl GatewayRefusal {
    /// Upstream's code: `EnumValidationErrorCode` of omnibase-infra's gateway,
    /// or, for the two invariants the model enforces when it reads an
    /// envelope, omnibase-core's `EnumCoreErrorCode`. Upstream has none for
    /// [`GatewayRefusal::Malformed`]: `MALFORMED_ENVELOPE` is this crate's.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayRefusal::Malformed => "MALFORMED_ENVELOPE",
            GatewayRefusal::SignerIsNotRuntime => "ONEX_CORE_347_ENVELOPE_SIGNER_MISMATCH",
            GatewayRefusal::EmitterNotInRealm => "ONEX_CORE_341_ENVELOPE_IDENTITY_MISMATCH",
            GatewayRefusal::RealmMismatch => "REALM_MISMATCH",
            GatewayRefusal::UnknownSigner => "UNKNOWN_SIGNER",
            GatewayRefusal::HashMismatch => "HASH_MISMATCH",
            GatewayRefusal::InvalidSignature => "INVALID_SIGNATURE",
        }
    }
}

impl fmt::Display for GatewayRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayRefusal::Malformed => "not a signed envelope",
            GatewayRefusal::SignerIsNotRuntime => "signature.signer is not runtime_id",
            GatewayRefusal::EmitterNotInRealm => "emitter_identity.env is not realm",
            GatewayRefusal::RealmMismatch => "envelope of another realm",
            GatewayRefusal::UnknownSigner => "unknown signer",
            GatewayRefusal::HashMismatch => "payload does not match its hash",
            GatewayRefusal::InvalidSignature => "invalid signature",
        })
    }
}

impl std::error::Error for GatewayRefusal {}

impl SignedEnvelope {
    /// Upstream's test for "this record is a signed envelope" (the runtime's
    /// `_validate_gateway_envelope`): an object whose `signature` is an object
    /// with an `algorithm`, and with `realm`, `runtime_id`, `bus_id` and
    /// `payload`.
    pub fn looks_signed(value: &Value) -> bool {
        let Some(object) = value.as_object() else {
            return false;
        };
        let signed = object.get("signature").and_then(Value::as_object).is_some_and(|s| s.contains_key("algorithm"));
        signed && ["realm", "runtime_id", "bus_id", "payload"].iter().all(|field| object.contains_key(*field))
    }

    /// Checks the envelope as upstream's `ServiceEnvelopeValidator` does
    /// (`reject_unsigned=True`), after the model's own invariants: signer is
    /// `runtime_id`, emitter in `realm`; then realm, a key for the signer,
    /// the payload hash, the signature. `keys_of(signer)` gives the signer's
    /// keys (several while a key is rotated: any one may verify).
    ///
    /// The hash is taken from [`Self::payload`]: exact for a payload made in
    /// Rust, not always for one serde_json read (see the module
    /// documentation). With the record's text at hand, use
    /// [`SignedEnvelope::verify_received`].
    pub fn verify(
        &self,
        expected_realm: &str,
        keys_of: impl Fn(&str) -> Vec<RuntimeKey>,
    ) -> Result<(), GatewayRefusal> {
        self.check(expected_realm, keys_of, &payload_hash(&self.payload))
    }

    /// [`SignedEnvelope::verify`] for an envelope read from `record` (the
    /// record's JSON text), hashing the payload from that text as Python reads
    /// it: exact for every number. A `record` that is not JSON is
    /// [`GatewayRefusal::Malformed`]; one whose payload is not this
    /// envelope's, a [`GatewayRefusal::HashMismatch`].
    pub fn verify_received(
        &self,
        record: &str,
        expected_realm: &str,
        keys_of: impl Fn(&str) -> Vec<RuntimeKey>,
    ) -> Result<(), GatewayRefusal> {
        let hash = received_payload_hash(record, &self.payload)?;
        self.check(expected_realm, keys_of, &hash)
    }

    /// Reads a signed envelope from a record's JSON text and checks it as
    /// [`SignedEnvelope::verify_received`] does.
    pub fn parse_verified(
        record: &str,
        expected_realm: &str,
        keys_of: impl Fn(&str) -> Vec<RuntimeKey>,
    ) -> Result<SignedEnvelope, GatewayRefusal> {
        let envelope: SignedEnvelope = serde_json::from_str(record).map_err(|_| GatewayRefusal::Malformed)?;
        envelope.verify_received(record, expected_realm, keys_of)?;
        Ok(envelope)
    }

    fn check(
        &self,
        expected_realm: &str,
        keys_of: impl Fn(&str) -> Vec<RuntimeKey>,
        computed_hash: &str,
    ) -> Result<(), GatewayRefusal> {
        if self.signature.signer != self.runtime_id {
            return Err(GatewayRefusal::SignerIsNotRuntime);
        }
        if self.emitter_identity.as_ref().is_some_and(|identity| identity.env != self.realm) {
            return Err(GatewayRefusal::EmitterNotInRealm);
        }
        if self.realm != expected_realm {
            return Err(GatewayRefusal::RealmMismatch);
        }
        let keys = keys_of(&self.signature.signer);
        if keys.is_empty() {
            return Err(GatewayRefusal::UnknownSigner);
        }
        // Upstream lowercases the hash when it reads it, and signs that text.
        let claimed = self.signature.payload_hash.to_ascii_lowercase();
        if computed_hash != claimed {
            return Err(GatewayRefusal::HashMismatch);
        }
        let signature = decode_base64(&self.signature.signature)
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .map(|bytes| ed25519_dalek::Signature::from_bytes(&bytes))
            .ok_or(GatewayRefusal::InvalidSignature)?;
        if keys.iter().any(|key| key.0.verify_strict(claimed.as_bytes(), &signature).is_ok()) {
            Ok(())
        } else {
            Err(GatewayRefusal::InvalidSignature)
        }
    }
}

/// The hash of the payload of the envelope in `record`, read exactly.
fn received_payload_hash(record: &str, payload: &Value) -> Result<String, GatewayRefusal> {
    #[derive(Deserialize)]
    struct PayloadOnly {
        payload: Value,
    }
    let received = serde_json::from_str::<PayloadOnly>(record).map_err(|_| GatewayRefusal::Malformed)?;
    if received.payload != *payload {
        return Err(GatewayRefusal::HashMismatch);
    }
    let mut reader = TextReader { text: record.as_bytes(), at: 0 };
    let Ok(Node::Object(mut members)) = reader.value(0) else {
        return Err(GatewayRefusal::Malformed);
    };
    reader.skip_whitespace();
    let Some(payload) = members.remove("payload").filter(|_| reader.at == reader.text.len()) else {
        return Err(GatewayRefusal::Malformed);
    };
    let mut canonical = String::new();
    payload.write(&mut canonical);
    Ok(blake3::hash(canonical.as_bytes()).to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 8032, section 7.1, test 1.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
    }

    fn rfc_signer() -> RuntimeSigner {
        RuntimeSigner::from_seed_base64("dev", "runtime-dev-001", &STANDARD.encode(unhex(RFC8032_SEED))).expect("key")
    }

    fn keys(signer: &RuntimeSigner) -> impl Fn(&str) -> Vec<RuntimeKey> + '_ {
        move |id| if id == signer.runtime_id() { vec![signer.public_key()] } else { vec![] }
    }

    fn event() -> Value {
        json!({"envelope_id": "6f1c1c8e-2f5e-4c8a-9d0e-3f7b7f0f6a11", "payload": {"operation": "get_secret", "path": "app/db"}, "n": 1.5})
    }

    #[test]
    fn a_payload_signed_as_text_travels_byte_for_byte_and_verifies() {
        let signer = RuntimeSigner::generate("dev", "runtime-a").expect("key");
        let payload = r#"{"b": 0.9999999999999999, "a": [1, 2.50]}"#;
        let record = signer.sign_text(payload, "bus", Uuid::new_v4(), None).expect("signs");
        assert!(record.ends_with(&format!(",\"payload\":{payload}}}")), "{record}");
        let keys = |_: &str| vec![signer.public_key()];
        let envelope = SignedEnvelope::parse_verified(&record, "dev", keys).expect("verifies");
        assert_eq!(envelope.signature.payload_hash, payload_hash_text(payload).expect("hash"));
        assert!(signer.sign_text("{", "bus", Uuid::new_v4(), None).is_err(), "not JSON");
    }

    #[test]
    fn the_rfc_8032_seed_gives_its_public_key() {
        let signer = rfc_signer();
        assert_eq!(signer.public_key().to_bytes().to_vec(), unhex(RFC8032_PUBLIC));
        assert_eq!(signer.public_key_base64(), URL_SAFE.encode(unhex(RFC8032_PUBLIC)));
        // URL-safe seeds are read too.
        let again = RuntimeSigner::from_seed_base64("dev", "r", &URL_SAFE.encode(unhex(RFC8032_SEED))).expect("key");
        assert_eq!(again.public_key(), signer.public_key());
    }

    #[test]
    fn a_signed_envelope_verifies_after_a_round_trip() {
        let signer = rfc_signer();
        let trace = Uuid::new_v4();
        let envelope = signer.sign(event(), "kafka-cluster-a", trace, None);
        assert_eq!(envelope.verify("dev", keys(&signer)), Ok(()));
        let text = serde_json::to_string(&envelope).expect("json");
        assert!(!text.contains("causality_id") && !text.contains("tenant_id"), "{text}");
        let read: SignedEnvelope = serde_json::from_str(&text).expect("read");
        assert_eq!(read, envelope);
        assert_eq!(read.verify_received(&text, "dev", keys(&signer)), Ok(()));
        assert!(SignedEnvelope::looks_signed(&serde_json::from_str(&text).expect("value")));
        assert!(!SignedEnvelope::looks_signed(&event()));
    }

    #[test]
    fn the_signature_is_ed25519_of_the_hex_hash() {
        let signer = rfc_signer();
        let envelope = signer.sign(json!({"b": 2, "a": 1}), "bus", Uuid::nil(), None);
        assert_eq!(envelope.signature.payload_hash, blake3::hash(br#"{"a":1,"b":2}"#).to_hex().to_string());
        let expected = signer.key.sign(envelope.signature.payload_hash.as_bytes());
        assert_eq!(envelope.signature.signature, URL_SAFE.encode(expected.to_bytes()));
    }

    #[test]
    fn every_refusal() {
        let signer = rfc_signer();
        let other = RuntimeSigner::generate("dev", "runtime-dev-001").expect("key");
        let envelope = signer.sign(event(), "bus", Uuid::new_v4(), Some(Uuid::new_v4()));

        assert_eq!(envelope.verify("prod", keys(&signer)), Err(GatewayRefusal::RealmMismatch));
        assert_eq!(envelope.verify("dev", |_| vec![]), Err(GatewayRefusal::UnknownSigner));

        let mut moved = envelope.clone();
        moved.runtime_id = "runtime-dev-002".into();
        assert_eq!(moved.verify("dev", |_| vec![signer.public_key()]), Err(GatewayRefusal::SignerIsNotRuntime));

        let mut identity = envelope.clone();
        identity.emitter_identity = Some(EmitterIdentity {
            env: "prod".into(),
            service: "svc".into(),
            node_name: "node".into(),
            version: "v1".into(),
        });
        assert_eq!(identity.verify("dev", keys(&signer)), Err(GatewayRefusal::EmitterNotInRealm));

        let mut tampered = envelope.clone();
        tampered.payload["payload"]["path"] = json!("app/other");
        assert_eq!(tampered.verify("dev", keys(&signer)), Err(GatewayRefusal::HashMismatch));
        assert_eq!(tampered.signature.payload_hash, envelope.signature.payload_hash);

        // Hash replaced consistently, signed by another key under the same name.
        let mut forged = tampered.clone();
        forged.signature = other.sign(tampered.payload.clone(), "bus", Uuid::new_v4(), None).signature;
        assert_eq!(forged.verify("dev", keys(&signer)), Err(GatewayRefusal::InvalidSignature));
        // ... which verifies once that key is registered too (rotation).
        assert_eq!(forged.verify("dev", |_| vec![signer.public_key(), other.public_key()]), Ok(()));

        let mut short = envelope.clone();
        short.signature.signature = URL_SAFE.encode([0u8; 63]);
        assert_eq!(short.verify("dev", keys(&signer)), Err(GatewayRefusal::InvalidSignature));
        let mut garbage = envelope.clone();
        garbage.signature.signature = "not base64!".into();
        assert_eq!(garbage.verify("dev", keys(&signer)), Err(GatewayRefusal::InvalidSignature));

        assert_eq!(GatewayRefusal::HashMismatch.code(), "HASH_MISMATCH");
        // The text of another envelope's record.
        let text = serde_json::to_string(&tampered).expect("json");
        assert_eq!(envelope.verify_received(&text, "dev", keys(&signer)), Err(GatewayRefusal::HashMismatch));
        assert_eq!(envelope.verify_received("not json", "dev", keys(&signer)), Err(GatewayRefusal::Malformed));
        assert_eq!(
            SignedEnvelope::parse_verified(r#"{"realm":"dev"}"#, "dev", keys(&signer)),
            Err(GatewayRefusal::Malformed)
        );
    }

    #[test]
    fn standard_base64_and_uppercase_hashes_are_read() {
        let signer = rfc_signer();
        let mut envelope = signer.sign(event(), "bus", Uuid::new_v4(), None);
        let bytes = URL_SAFE.decode(&envelope.signature.signature).expect("b64");
        envelope.signature.signature = STANDARD.encode(bytes);
        envelope.signature.payload_hash = envelope.signature.payload_hash.to_ascii_uppercase();
        assert_eq!(envelope.verify("dev", keys(&signer)), Ok(()));
        let read: SignedEnvelope =
            serde_json::from_value(serde_json::to_value(&envelope).expect("json")).expect("read");
        assert_eq!(read.signature.payload_hash, envelope.signature.payload_hash.to_ascii_lowercase());
    }

    #[test]
    fn upstream_shapes_are_read_and_bad_ones_refused() {
        let signer = rfc_signer();
        let mut value = serde_json::to_value(signer.sign(event(), "bus", Uuid::nil(), None)).expect("json");
        value["causality_id"] = Value::Null;
        value["tenant_id"] = Value::Null;
        value["emitter_identity"] = Value::Null;
        value["emitted_at"] = json!("2026-11-29T15:00:00.123456+02:00");
        let read: SignedEnvelope = serde_json::from_value(value.clone()).expect("upstream form");
        assert_eq!(serde_json::to_value(&read).expect("json")["emitted_at"], json!("2026-11-29T13:00:00.123456Z"));
        let read_without_algorithm = {
            let mut v = value.clone();
            v["signature"].as_object_mut().expect("object").remove("algorithm");
            serde_json::from_value::<SignedEnvelope>(v)
        };
        assert!(read_without_algorithm.is_ok());

        let bad: [(&str, Value); 7] = [
            ("emitted_at", json!("2026-11-29T15:00:00")),
            ("realm", json!("")),
            ("extra", json!(1)),
            (
                "signature",
                json!({"algorithm": "rsa", "signer": "runtime-dev-001", "payload_hash": "a".repeat(64), "signature": "x"}),
            ),
            ("signature", json!({"signer": "runtime-dev-001", "payload_hash": "g".repeat(64), "signature": "x"})),
            (
                "signature",
                json!({"signer": "runtime-dev-001", "payload_hash": "a".repeat(64), "signature": "x", "k": 1}),
            ),
            ("emitter_identity", json!({"env": "dev", "service": "", "node_name": "n", "version": "v"})),
        ];
        for (field, replacement) in bad {
            let mut v = value.clone();
            v[field] = replacement.clone();
            assert!(serde_json::from_value::<SignedEnvelope>(v).is_err(), "{field}: {replacement}");
        }
    }

    #[test]
    fn emitted_at_is_written_as_pydantic_writes_it() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc);
        assert_eq!(pydantic_timestamp(&at("2026-11-29T15:00:00Z")), "2026-11-29T15:00:00Z");
        assert_eq!(pydantic_timestamp(&at("2026-11-29T15:00:00.123Z")), "2026-11-29T15:00:00.123000Z");
        assert_eq!(pydantic_timestamp(&at("2026-11-29T15:00:00.123456789Z")), "2026-11-29T15:00:00.123456Z");
    }

    #[test]
    fn canonical_json_matches_python() {
        let cases: [(&str, &str); 14] = [
            (
                r#"{"b":1,"a":{"d":[],"c":{}},"B":null,"é":true,"ä":false}"#,
                r#"{"B":null,"a":{"c":{},"d":[]},"b":1,"\u00e4":false,"\u00e9":true}"#,
            ),
            (r#""é中😀\u2028""#, r#""\u00e9\u4e2d\ud83d\ude00\u2028""#),
            (r#""\"\\\/\b\f\n\r\t\u0001\u007f~ ""#, r#""\"\\/\b\f\n\r\t\u0001\u007f~ ""#),
            (
                "[0.1,1e-05,1e16,1e15,123456789.123,-0.0,5e-324]",
                "[0.1,1e-05,1e+16,1000000000000000.0,123456789.123,-0.0,5e-324]",
            ),
            (
                "[1.7976931348623157e308,30.0,1E2,0.0001,1.5e300,1e-4,1.25e-7]",
                "[1.7976931348623157e+308,30.0,100.0,0.0001,1.5e+300,0.0001,1.25e-07]",
            ),
            (
                "[0,-1,9007199254740992,9223372036854775807,-9223372036854775808,18446744073709551615]",
                "[0,-1,9007199254740992,9223372036854775807,-9223372036854775808,18446744073709551615]",
            ),
            ("[true,false,null,[],{}]", "[true,false,null,[],{}]"),
            (
                "[9999999999999998.0,1e+16,0.00001,1234567890123456.7]",
                "[9999999999999998.0,1e+16,1e-05,1234567890123456.8]",
            ),
            ("[-1.5e-10,-2.5,-100]", "[-1.5e-10,-2.5,-100]"),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            (
                "[0.9999999999999999,1234.5678901234567,98.17329659644331]",
                "[0.9999999999999999,1234.5678901234567,98.17329659644331]",
            ),
            (
                "[-0,100000000000000000000000,-18446744073709551616]",
                "[0,100000000000000000000000,-18446744073709551616]",
            ),
            (" { \"z\" : [ 1 , 2 ] } ", r#"{"z":[1,2]}"#),
            (r#"{"\ud83d\ude00":1,"\uffff":2,"a":3}"#, r#"{"a":3,"\uffff":2,"\ud83d\ude00":1}"#),
        ];
        for (i, (input, expected)) in cases.iter().enumerate() {
            assert_eq!(canonical_json_text(input).as_deref(), Ok(*expected), "text case {i}: {input}");
            // From a serde_json value, the cases serde_json reads exactly.
            if i < 10 || i == 12 || i == 13 {
                let value: Value = serde_json::from_str(input).expect("json");
                assert_eq!(canonical_json(&value), *expected, "value case {i}: {input}");
            }
        }
        assert_eq!(payload_hash(&json!({"b": 2, "a": 1})), payload_hash_text(r#"{"a":1,"b":2}"#).expect("json"));
        for bad in ["NaN", "[1,]", "01", "\"\\ud800\"", "\"a\u{1}\"", "1 2", "-", "1.", "{\"a\"}", "\"\\x\""] {
            assert!(canonical_json_text(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(canonical_json_text(&deep).is_err());
    }

    #[test]
    fn verify_received_hashes_the_numbers_it_received() {
        // As a Python runtime would sign it: Python reads the three numbers
        // exactly; serde_json (default features) does not.
        let signer = rfc_signer();
        let payload_text = r#"{"ratio":0.9999999999999999,"big":100000000000000000000001,"zero":-0}"#;
        let hash = payload_hash_text(payload_text).expect("json");
        let signature = URL_SAFE.encode(signer.key.sign(hash.as_bytes()).to_bytes());
        let record = format!(
            r#"{{"realm":"dev","runtime_id":"runtime-dev-001","bus_id":"bus","trace_id":"{}","emitted_at":"2026-11-29T15:00:00Z","signature":{{"algorithm":"ed25519","signer":"runtime-dev-001","payload_hash":"{hash}","signature":"{signature}"}},"payload":{payload_text},"causality_id":null}}"#,
            Uuid::nil()
        );
        let envelope: SignedEnvelope = serde_json::from_str(&record).expect("read");
        assert_eq!(envelope.verify_received(&record, "dev", keys(&signer)), Ok(()));
        assert_eq!(SignedEnvelope::parse_verified(&record, "dev", keys(&signer)), Ok(envelope.clone()));
        assert_eq!(envelope.verify("dev", keys(&signer)), Err(GatewayRefusal::HashMismatch));
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(RuntimeKey::from_bytes(&identity), Err(GatewayKeyError::Weak));
        assert_eq!(RuntimeKey::from_base64("AAAA"), Err(GatewayKeyError::Malformed));
        let public = URL_SAFE.encode(unhex(RFC8032_PUBLIC));
        assert_eq!(RuntimeKey::from_base64(&public).map(|k| k.to_base64()), Ok(public.clone()));
        assert_eq!(RuntimeKey::from_base64(&STANDARD.encode(unhex(RFC8032_PUBLIC))).map(|k| k.to_base64()), Ok(public));
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let signer = rfc_signer();
        let shown = format!("{signer:?}");
        let seed = unhex(RFC8032_SEED);
        for encoded in [STANDARD.encode(&seed), URL_SAFE.encode(&seed), RFC8032_SEED.to_owned(), format!("{seed:?}")] {
            assert!(!shown.contains(&encoded), "{shown}");
        }
        assert!(shown.contains(&signer.public_key_base64()), "{shown}");
        assert!(format!("{:?}", signer.public_key()).contains(&signer.public_key_base64()));
    }
}
