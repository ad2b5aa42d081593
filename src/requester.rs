//! `onex-vault-adapter send`: an envelope from a file, made ready (fresh ids,
//! the identity's requester) and sent through the client library, which
//! signs it and waits for its reply. Also the identity-file helpers shared by
//! `send`, `request`, `resolve` and `keygen`.

use std::path::Path;

use anyhow::{bail, Context as _};
use chrono::Utc;
use onex_vault_client::{ClientSettings, VaultAdapterClient};
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

/// Reads a runtime identity file (see `keygen`).
pub fn read_identity(path: &Path) -> anyhow::Result<RuntimeIdentity> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    RuntimeIdentity::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes `text` to a new file only its owner can read.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}
