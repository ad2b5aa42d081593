//! The node's AsyncAPI 3 document, generated from its contract (topics,
//! version, description) and the models' JSON Schemas, so it cannot drift
//! from either. `onex-vault-adapter asyncapi` prints it; `asyncapi.yaml` at
//! the repository root is it for the shipped contract (a test keeps it so
//! and validates it against the AsyncAPI 3.0.0 JSON Schema).

use onex_vault_models::schemas;
use serde_json::{json, Map, Value};

use crate::contract::{Contract, ContractError, TopicRole};

/// One topic of the contract as AsyncAPI sees it.
struct Channel {
    /// The topic's role (the contract field naming it).
    role: TopicRole,
    id: &'static str,
    /// Name of the models' schema (`models/schemas/<name>.schema.json`).
    schema: &'static str,
    /// `receive` (the node consumes it) or `send`.
    action: &'static str,
    /// Whether its records travel in a signed `ModelMessageEnvelope` in the
    /// strict profile (a second message of the channel).
    signed: bool,
    description: &'static str,
}

/// The schema of a signed `ModelMessageEnvelope`.
const SIGNED_SCHEMA: &str = "signed-message";

const CHANNELS: &[Channel] = &[
    Channel {
        role: TopicRole::Requests,
        id: "requests",
        schema: "vault-request",
        action: "receive",
        signed: true,
        description: "Request envelopes; payload tagged by `operation`. In the strict security profile each \
                      envelope travels as the payload of a signed ModelMessageEnvelope of a trusted ONEX runtime.",
    },
    Channel {
        role: TopicRole::Completed,
        id: "completed",
        schema: "vault-reply",
        action: "send",
        signed: true,
        description: "Replies with `status: success`, keyed by `correlation_id`; signed by the node's runtime key \
                      in the strict profile.",
    },
    Channel {
        role: TopicRole::Failed,
        id: "failed",
        schema: "vault-reply",
        action: "send",
        signed: true,
        description: "Replies with `status: error` and a typed error code, keyed by `correlation_id`; signed by \
                      the node's runtime key in the strict profile.",
    },
    Channel {
        role: TopicRole::Health,
        id: "health",
        schema: "vault-health",
        action: "send",
        signed: false,
        description: "Health events: at start, every health interval, and at a clean shutdown.",
    },
    Channel {
        role: TopicRole::CircuitBreaker,
        id: "circuitBreaker",
        schema: "circuit-breaker",
        action: "send",
        signed: false,
        description: "Circuit-breaker transitions around Vault.",
    },
    Channel {
        role: TopicRole::Audit,
        id: "audit",
        schema: "vault-audit",
        action: "send",
        signed: false,
        description: "One audit record per request (denied and invalid ones too); never a value or a token.",
    },
    Channel {
        role: TopicRole::LeaseEvents,
        id: "leaseEvents",
        schema: "vault-lease-event",
        action: "send",
        signed: false,
        description: "Leases the node keeps alive and can renew no more.",
    },
    Channel {
        role: TopicRole::DeadLetters,
        id: "deadLetters",
        schema: "vault-dead-letter",
        action: "send",
        signed: false,
        description: "Request records the node cannot use, with the reason and the original value.",
    },
    Channel {
        role: TopicRole::ReplayClaims,
        id: "replayClaims",
        schema: "vault-replay-claim",
        action: "send",
        signed: false,
        description: "The replay ledger (strict profile): each instance claims a signed request's envelope_id \
                      here before admitting it, and reads every claim; the first claim of an id wins.",
    },
    Channel {
        role: TopicRole::LeaseRegistry,
        id: "leaseRegistry",
        schema: "vault-lease-registration",
        action: "send",
        signed: false,
        description: "The lease registry (compacted, keyed by lease id): one record per lease the node's group \
                      keeps alive, holding the lease id and when to renew it; a record with no value (a \
                      tombstone) when it is revoked or can be renewed no more. Internal to the group; never a \
                      credential.",
    },
];

/// The document of the contract file at `path`, read the same whatever the
/// environment: its `${env.X}` settings (addresses, credentials) are not
/// part of the document, so documentation values stand in for them.
pub fn document_of_file(path: &std::path::Path) -> Result<Value, ContractError> {
    let text = std::fs::read_to_string(path).map_err(|e| ContractError {
        source_name: path.display().to_string(),
        problems: vec![onex_vault_models::InvalidField::new("", format!("cannot read the file: {e}"))],
    })?;
    let stand_in = |name: &str| match name {
        "KAFKA_BOOTSTRAP_SERVERS" => Some("kafka:9092".to_owned()),
        "VAULT_ADDR" => Some("http://vault:8200".to_owned()),
        "VAULT_TOKEN" => Some("documentation".to_owned()),
        // The document is the same in both profiles (it says which messages
        // are signed in `strict`); `dev` needs no node identity file to load.
        "ONEX_SECURITY_PROFILE" => Some("dev".to_owned()),
        _ => None,
    };
    let contract = Contract::from_yaml(&text, &path.display().to_string(), &stand_in)?;
    Ok(document(&contract))
}

/// The AsyncAPI document for `contract`.
pub fn document(contract: &Contract) -> Value {
    let (schemas_by_name, components) = component_schemas();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for channel in CHANNELS {
        let address = contract.topic(channel.role);
        let mut names = vec![channel.schema];
        if channel.signed {
            names.push(SIGNED_SCHEMA);
        }
        let mut channel_messages = Map::new();
        for name in names {
            let message_id = message_id(name);
            let root = schemas_by_name.iter().find(|(schema, _)| *schema == name).map(|(_, root)| root.clone());
            messages.entry(message_id.clone()).or_insert_with(|| {
                let mut message = json!({
                    "name": message_id,
                    "title": root.as_ref().and_then(|r| components.get(r)).and_then(|s| s.get("title")).cloned()
                        .unwrap_or(Value::Null),
                    "contentType": "application/json",
                    "payload": { "$ref": format!("#/components/schemas/{}", root.unwrap_or_default()) },
                });
                // A signed message travels both ways, with the headers of its direction.
                if name != SIGNED_SCHEMA {
                    message["headers"] = headers(channel.action);
                }
                message
            });
            channel_messages
                .insert(message_id.clone(), json!({ "$ref": format!("#/components/messages/{message_id}") }));
        }
        let message_refs: Vec<Value> = channel_messages
            .keys()
            .map(|id| json!({ "$ref": format!("#/channels/{}/messages/{id}", channel.id) }))
            .collect();
        channels.insert(
            channel.id.to_owned(),
            json!({
                "address": address,
                "description": channel.description,
                "messages": channel_messages,
            }),
        );
        let verb = if channel.action == "receive" { "receive" } else { "send" };
        operations.insert(
            format!("{verb}{}", upper_first(channel.id)),
            json!({
                "action": channel.action,
                "channel": { "$ref": format!("#/channels/{}", channel.id) },
                "messages": message_refs,
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": contract.name,
            "version": contract.node_version,
            "description": contract.description,
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "The event bus; the node reads its address from KAFKA_BOOTSTRAP_SERVERS.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages, "schemas": components },
    })
}

/// Every message schema of the models, as AsyncAPI component schemas: the
/// roots under their PascalCase names, their `$defs` hoisted beside them,
/// references rewritten to `#/components/schemas/…`. Returns (schema name →
/// root component name) and the components.
fn component_schemas() -> (Vec<(&'static str, String)>, Map<String, Value>) {
    let mut roots = Vec::new();
    let mut components = Map::new();
    for message in schemas() {
        let Value::Object(mut root) = rewrite_refs(message.schema) else { continue };
        root.remove("$schema");
        root.remove("$id");
        if let Some(Value::Object(defs)) = root.remove("$defs") {
            for (name, def) in defs {
                components.entry(name).or_insert(def);
            }
        }
        let name = message_id(message.name) + "Envelope";
        components.insert(name.clone(), Value::Object(root));
        roots.push((message.name, name));
    }
    (roots, components)
}

fn rewrite_refs(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        (key, Value::String(target.replacen("#/$defs/", "#/components/schemas/", 1)))
                    }
                    (_, value) => (key, rewrite_refs(value)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(rewrite_refs).collect()),
        other => other,
    }
}

/// Record headers: what requesters send, what the node sets on everything
/// it publishes (omnibase-infra's `_model_headers_to_kafka` set).
fn headers(action: &str) -> Value {
    let text = json!({ "type": "string" });
    if action == "receive" {
        json!({
            "type": "object",
            "properties": {
                "correlation_id": { "type": "string", "description": "Names the requester of a record whose body cannot be read" },
                "message_id": { "type": "string", "description": "The envelope_id; names the request when the body cannot" },
                "traceparent": { "type": "string", "description": "W3C trace context" },
            },
        })
    } else {
        let always = [
            "correlation_id",
            "message_id",
            "timestamp",
            "event_type",
            "schema_version",
            "priority",
            "retry_count",
            "max_retries",
        ];
        let mut properties: Map<String, Value> = always.iter().map(|name| (name.to_string(), text.clone())).collect();
        properties.insert("content_type".into(), json!({ "type": "string", "const": "application/json" }));
        properties.insert("source".into(), json!({ "type": "string", "const": onex_vault_models::NODE_NAME }));
        for optional in ["trace_id", "span_id", "parent_span_id", "parent_message_id", "operation_name", "traceparent"]
        {
            properties.insert(optional.into(), text.clone());
        }
        let required: Vec<&str> = always.iter().copied().chain(["content_type", "source"]).collect();
        json!({ "type": "object", "properties": properties, "required": required })
    }
}

/// `vault-request` → `VaultRequest`.
fn message_id(schema_name: &str) -> String {
    schema_name.split('-').map(upper_first).collect()
}

fn upper_first(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
