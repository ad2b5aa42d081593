//! JSON Schemas of every top-level message, for nodes not written in Rust.
//! `models/schemas/<name>.schema.json` holds them; a test keeps them in sync.

use schemars::{generate::SchemaSettings, JsonSchema};
use serde_json::Value;

use crate::{
    AuditEnvelope, CircuitBreakerEnvelope, DeadLetterEnvelope, HealthEnvelope, LeaseEventEnvelope,
    LeaseRegistrationEnvelope, ReplayClaimEnvelope, ReplyEnvelope, RequestEnvelope, SignedEnvelope,
};

/// One message's schema and the file name it is committed under.
pub struct MessageSchema {
    /// e.g. `vault-request`; the file is `<name>.schema.json`.
    pub name: &'static str,
    pub schema: Value,
}

impl MessageSchema {
    pub fn file_name(&self) -> String {
        format!("{}.schema.json", self.name)
    }
}

fn schema_of<T: JsonSchema>(name: &'static str, title: &str) -> MessageSchema {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<T>();
    schema.insert("title".into(), Value::String(title.into()));
    schema.insert("$id".into(), Value::String(format!("https://onex.dev/schemas/vault-adapter/v1/{name}.schema.json")));
    MessageSchema { name, schema: schema.to_value() }
}

/// The schemas of every message on the node's topics.
pub fn schemas() -> Vec<MessageSchema> {
    vec![
        schema_of::<RequestEnvelope>("vault-request", "Vault adapter request envelope"),
        schema_of::<ReplyEnvelope>("vault-reply", "Vault adapter reply envelope (completed and failed topics)"),
        schema_of::<DeadLetterEnvelope>("vault-dead-letter", "Vault adapter dead letter envelope"),
        schema_of::<AuditEnvelope>("vault-audit", "Vault adapter audit record envelope"),
        schema_of::<HealthEnvelope>("vault-health", "Vault adapter health event envelope"),
        schema_of::<LeaseEventEnvelope>("vault-lease-event", "Vault adapter lease keep-alive event envelope"),
        schema_of::<CircuitBreakerEnvelope>("circuit-breaker", "Circuit-breaker transition event envelope"),
        schema_of::<ReplayClaimEnvelope>("vault-replay-claim", "Vault adapter replay ledger claim envelope"),
        schema_of::<LeaseRegistrationEnvelope>(
            "vault-lease-registration",
            "Vault adapter lease registry record envelope (kept-alive leases)",
        ),
        schema_of::<SignedEnvelope>(
            "signed-message",
            "ONEX signed ModelMessageEnvelope (strict profile: requests in, replies out); payload is the event envelope",
        ),
    ]
}
