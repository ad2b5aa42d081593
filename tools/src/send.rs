//! `onex-vault-adapter send`: an envelope from a file, made ready (fresh ids,
//! the identity's requester) and sent through the client library, which
//! signs it and waits for its reply.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use chrono::Utc;
use onex_vault_client::{ClientSettings, VaultAdapterClient};

use crate::bus::BusArgs;
use onex_vault_models::RuntimeIdentity;
use serde_json::Value;
use uuid::Uuid;

/// Makes a file's envelope ready to send: a fresh `envelope_id`,
/// `correlation_id` and `envelope_timestamp` every time (so repeated sends of
/// one example stay apart), and a `source_tool` if it has none (the
/// identity's runtime when signing).
pub fn complete_envelope(mut envelope: Value, identity: Option<&RuntimeIdentity>) -> anyhow::Result<Value> {
    let Some(object) = envelope.as_object_mut() else { bail!("the request must be a JSON object (an envelope)") };
    if !object.contains_key("payload") {
        bail!("the request has no `payload`");
    }
    object.insert("envelope_id".into(), Value::String(Uuid::new_v4().to_string()));
    object.insert("correlation_id".into(), Value::String(Uuid::new_v4().to_string()));
    object.insert("envelope_timestamp".into(), Value::String(Utc::now().to_rfc3339()));
    if let Some(identity) = identity {
        object.insert("source_tool".into(), Value::String(identity.runtime_id.clone()));
    }
    object.entry("source_tool").or_insert_with(|| Value::String("onex_vault_adapter_cli".into()));
    Ok(envelope)
}

/// Sends the envelope (completed first) and returns the reply, its sealed
/// result opened when the settings carry the requester's identity.
pub async fn send(settings: ClientSettings, envelope: Value) -> anyhow::Result<Value> {
    let envelope = complete_envelope(envelope, settings.identity.as_ref().map(|s| &s.identity))?;
    let correlation_id = envelope
        .get("correlation_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .context("the envelope has no correlation_id")?;
    let client = VaultAdapterClient::connect(settings).await?;
    let mut reply = client.send_record(&serde_json::to_vec(&envelope)?, correlation_id).await?;
    if let Some(result) = reply.payload.result.take() {
        match client.open_result(correlation_id, result.clone()) {
            Ok(opened) => reply.payload.result = Some(opened),
            Err(error) => {
                reply.payload.result = Some(result);
                eprintln!("note: {error}");
            }
        }
    }
    Ok(serde_json::to_value(reply)?)
}

/// The `send` command: exit 0 on a success reply, 1 on an error reply, 2
/// when no reply came.
pub fn run(file: &Path, bus: &BusArgs) -> ExitCode {
    let text =
        if file.as_os_str() == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(file) };
    let outcome = async {
        let text = text.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let settings = bus.client_settings().map_err(anyhow::Error::msg)?;
        send(settings, serde_json::from_str(&text)?).await
    };
    let reply = match tokio::runtime::Runtime::new().map_err(anyhow::Error::from) {
        Ok(runtime) => runtime.block_on(outcome),
        Err(error) => Err(error),
    };
    match reply {
        Ok(reply) => {
            println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
            if reply.pointer("/payload/status").and_then(|s| s.as_str()) == Some("success") {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("send failed: {error:#}");
            ExitCode::from(2)
        }
    }
}
