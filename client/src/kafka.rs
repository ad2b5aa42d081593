//! Kafka settings every Kafka client of the project shares: TLS and SASL
//! (the node contract's `event_bus.security`, or the same environment
//! variables for the tools), further librdkafka properties passed through,
//! and reading a topic's partitions. [`KafkaSecurity::librdkafka_properties`]
//! is the one place secrets leave their `secrecy` box for librdkafka; they
//! are shown as `<redacted>` when the settings are printed.

use std::collections::BTreeMap;
use std::time::Duration;

use onex_vault_models::InvalidField;
use rdkafka::consumer::{Consumer, ConsumerContext};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaProtocol::Plaintext => "plaintext",
            KafkaProtocol::Ssl => "ssl",
            KafkaProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSecurity {
    /// KAFKA_SECURITY_PROTOCOL.
    pub protocol: KafkaProtocol,
    /// KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[serde(deserialize_with = "scalar_string")]
    pub sasl_mechanism: String,
    #[serde(deserialize_with = "scalar_string")]
    pub sasl_username: String,
    /// KAFKA_SASL_PASSWORD, or the first line of `sasl_password_file`.
    #[serde(with = "redacted")]
    pub sasl_password: Option<SecretString>,
    #[serde(deserialize_with = "scalar_string")]
    pub sasl_password_file: String,
    /// KAFKA_SSL_CA_FILE: PEM CA bundle that signs the brokers' certificates.
    #[serde(deserialize_with = "scalar_string")]
    pub ssl_ca_file: String,
    /// Client certificate and key (PEM), for brokers that want TLS client auth.
    #[serde(deserialize_with = "scalar_string")]
    pub ssl_certificate_file: String,
    #[serde(deserialize_with = "scalar_string")]
    pub ssl_key_file: String,
    /// Further librdkafka properties, as given. All are held as secrets;
    /// values of keys that look secret (password, secret, key, token, jaas,
    /// credential) are redacted when the contract is printed.
    #[serde(serialize_with = "redact_secret_properties", deserialize_with = "secret_properties")]
    pub properties: BTreeMap<String, SecretString>,
}

impl KafkaSecurity {
    /// The settings from the environment variables the shipped contract
    /// reads (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`), for
    /// the CLI's clients (`send`, `request`, `resolve`, `health`), checked.
    pub fn from_env() -> Result<KafkaSecurity, String> {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let protocol = match var("KAFKA_SECURITY_PROTOCOL").as_str() {
            "" | "plaintext" => KafkaProtocol::Plaintext,
            "ssl" => KafkaProtocol::Ssl,
            "sasl_plaintext" => KafkaProtocol::SaslPlaintext,
            "sasl_ssl" => KafkaProtocol::SaslSsl,
            other => return Err(format!("KAFKA_SECURITY_PROTOCOL: unknown protocol {other:?}")),
        };
        let mut security = KafkaSecurity {
            protocol,
            sasl_mechanism: var("KAFKA_SASL_MECHANISM"),
            sasl_username: var("KAFKA_SASL_USERNAME"),
            sasl_password: Some(var("KAFKA_SASL_PASSWORD")).filter(|p| !p.is_empty()).map(SecretString::from),
            sasl_password_file: var("KAFKA_SASL_PASSWORD_FILE"),
            ssl_ca_file: var("KAFKA_SSL_CA_FILE"),
            ssl_certificate_file: var("KAFKA_SSL_CERTIFICATE_FILE"),
            ssl_key_file: var("KAFKA_SSL_KEY_FILE"),
            properties: BTreeMap::new(),
        };
        security.read_files().map_err(|problem| problem.to_string())?;
        let mut problems = Vec::new();
        security.problems(&mut problems);
        if problems.is_empty() {
            Ok(security)
        } else {
            Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        }
    }

    /// Reads `sasl_password_file` when only it is set.
    pub fn read_files(&mut self) -> Result<(), InvalidField> {
        if self.sasl_password.is_none() && !self.sasl_password_file.is_empty() {
            let file = &self.sasl_password_file;
            let text = std::fs::read_to_string(file).map_err(|e| {
                InvalidField::new("event_bus.security.sasl_password_file", format!("cannot read {file}: {}", e.kind()))
            })?;
            self.sasl_password = Some(SecretString::from(text.trim().to_owned()));
        }
        Ok(())
    }

    pub fn problems(&self, p: &mut Vec<InvalidField>) {
        if self.protocol.uses_sasl() {
            let mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
            require(
                p,
                mechanisms.contains(&self.sasl_mechanism.as_str()),
                "event_bus.security.sasl_mechanism",
                "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 with a sasl_* protocol (set KAFKA_SASL_MECHANISM)",
            );
            require(
                p,
                !self.sasl_username.is_empty(),
                "event_bus.security.sasl_username",
                "required with a sasl_* protocol (set KAFKA_SASL_USERNAME)",
            );
            require(
                p,
                self.sasl_password.as_ref().is_some_and(|s| !s.expose_secret().is_empty()),
                "event_bus.security.sasl_password",
                "required with a sasl_* protocol (set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE)",
            );
        }
        for (field, file) in [
            ("ssl_ca_file", &self.ssl_ca_file),
            ("ssl_certificate_file", &self.ssl_certificate_file),
            ("ssl_key_file", &self.ssl_key_file),
        ] {
            if !file.is_empty() && !std::path::Path::new(file).is_file() {
                p.push(InvalidField::new(format!("event_bus.security.{field}"), format!("cannot read {file}")));
            }
        }
        require(
            p,
            self.ssl_certificate_file.is_empty() == self.ssl_key_file.is_empty(),
            "event_bus.security.ssl_certificate_file, ssl_key_file",
            "set both or neither",
        );
    }

    /// The librdkafka properties these settings mean. Secrets leave their
    /// `secrecy` box here, straight into the client configuration.
    pub fn librdkafka_properties(&self) -> Vec<(String, String)> {
        let mut out = vec![("security.protocol".to_owned(), self.protocol.as_str().to_owned())];
        let mut set = |key: &str, value: &str| {
            if !value.is_empty() {
                out.push((key.to_owned(), value.to_owned()));
            }
        };
        if self.protocol.uses_sasl() {
            set("sasl.mechanism", &self.sasl_mechanism);
            set("sasl.username", &self.sasl_username);
            set("sasl.password", self.sasl_password.as_ref().map_or("", |s| s.expose_secret()));
        }
        set("ssl.ca.location", &self.ssl_ca_file);
        set("ssl.certificate.location", &self.ssl_certificate_file);
        set("ssl.key.location", &self.ssl_key_file);
        out.extend(self.properties.iter().map(|(k, v)| (k.clone(), v.expose_secret().to_owned())));
        out
    }
}

/// Whether a librdkafka property holds a secret (its value is never printed).
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas", "credential"].iter().any(|word| key.contains(word))
}

fn redact_secret_properties<S: Serializer>(
    properties: &BTreeMap<String, SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = properties
        .iter()
        .map(|(k, v)| (k.as_str(), if is_secret_property(k) { "<redacted>" } else { v.expose_secret() }))
        .collect();
    shown.serialize(s)
}

fn secret_properties<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, SecretString>, D::Error> {
    #[derive(Deserialize)]
    struct Value(#[serde(deserialize_with = "scalar_string")] String);
    let plain: BTreeMap<String, Value> = BTreeMap::deserialize(d)?;
    Ok(plain.into_iter().map(|(k, Value(v))| (k, SecretString::from(v))).collect())
}

/// The partitions of `topic` (none when it does not exist), from `client`'s
/// metadata: for readers that assign partitions by hand.
pub fn partitions_of<C: ConsumerContext, T: Consumer<C>>(
    client: &T,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, rdkafka::error::KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Adds `line` to `problems` unless `ok` (the node's contract checks its
/// other settings with it too).
pub fn require(problems: &mut Vec<InvalidField>, ok: bool, field: impl Into<String>, problem: impl Into<String>) {
    if !ok {
        problems.push(InvalidField::new(field, problem));
    }
}

/// A YAML scalar as text: `${env.X}` values of the contract arrive as
/// strings, numbers or booleans. (The node's contract reads its other
/// string settings with it too.)
pub fn scalar_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(deserializer)? {
        Scalar::Text(s) => s,
        Scalar::Int(n) => n.to_string(),
        Scalar::Float(x) => x.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

/// A secret setting: read as text (empty = unset), printed as `<redacted>`
/// (for the node's contract's other secrets too).
pub mod redacted {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        let text = scalar_string(d)?;
        Ok((!text.is_empty()).then(|| SecretString::from(text)))
    }

    pub fn serialize<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(_) => s.serialize_str("<redacted>"),
            None => s.serialize_none(),
        }
    }
}
