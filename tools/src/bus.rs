//! Where the node is and who is asking, for every requester command
//! (`send`, `request`, `resolve`): Kafka and topics (defaults: the shipped
//! contract's, from the client crate), TLS/SASL from the environment
//! variables the node's contract reads (`KafkaSecurity::from_env`), and the
//! requester identity that signs requests and opens sealed replies.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use onex_vault_client::kafka::KafkaSecurity;
use onex_vault_client::{ClientSettings, NodeTrust, Topics};
use onex_vault_models::{RuntimeKey, SealingPublicKey};

/// Where the node is and who is asking: shared by `send`, `request` and
/// `resolve`. TLS/SASL to Kafka come from the node's variables
/// (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
/// `KAFKA_SASL_PASSWORD(_FILE)`, `KAFKA_SSL_CA_FILE`, …).
#[derive(Args)]
pub struct BusArgs {
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", global = true)]
    bootstrap_servers: Option<String>,
    /// Requester identity file (from `keygen`): signs requests, opens sealed
    /// replies (the node's strict profile; needs --realm and --node-key).
    #[arg(long, env = "ONEX_IDENTITY_FILE", global = true)]
    identity: Option<PathBuf>,
    /// The ONEX realm requests are signed for (the node's `security.realm`).
    #[arg(long, env = "ONEX_REALM", global = true)]
    realm: Option<String>,
    /// The node's public signing key (`keygen` printed it): replies signed
    /// by anything else are ignored.
    #[arg(long, env = "ONEX_NODE_PUBLIC_KEY", global = true)]
    node_key: Option<String>,
    /// The node's runtime id (the `runtime_id` of its identity file).
    #[arg(long, env = "ONEX_NODE_RUNTIME_ID", default_value = onex_vault_models::NODE_NAME, global = true)]
    node_runtime_id: String,
    /// The node's sealing key, `KEY_ID:PUBLIC_KEY` (the `sealing_key` id and
    /// public key `keygen` printed for the node): `set` data and `encrypt`
    /// plaintext are then sent sealed to it, never in clear.
    #[arg(long, env = "ONEX_NODE_SEALING_KEY", value_name = "KEY_ID:PUBLIC_KEY", global = true)]
    seal_to_node: Option<String>,
    /// Seconds to wait for a reply (per attempt).
    #[arg(long, default_value_t = 15, global = true)]
    timeout_seconds: u64,
    #[arg(long, default_value = Topics::DEFAULT_REQUESTS, global = true)]
    request_topic: String,
    #[arg(long, default_value = Topics::DEFAULT_COMPLETED, global = true)]
    completed_topic: String,
    #[arg(long, default_value = Topics::DEFAULT_FAILED, global = true)]
    failed_topic: String,
}

impl BusArgs {
    /// Client settings, or what is missing or unreadable.
    pub fn client_settings(&self) -> Result<ClientSettings, String> {
        let bootstrap =
            self.bootstrap_servers.as_deref().ok_or("--bootstrap-servers (or KAFKA_BOOTSTRAP_SERVERS) is required")?;
        let mut settings = ClientSettings::new(bootstrap)
            .topics(Topics {
                requests: self.request_topic.clone(),
                completed: self.completed_topic.clone(),
                failed: self.failed_topic.clone(),
            })
            .call_timeout(Duration::from_secs(self.timeout_seconds))
            .max_attempts(1);
        // TLS and SASL from the variables the node's contract reads.
        for (key, value) in KafkaSecurity::from_env()?.librdkafka_properties() {
            settings = settings.property(&key, &value);
        }
        if let Some(key) = &self.seal_to_node {
            let (key_id, public_key) =
                key.split_once(':').ok_or("--seal-to-node: KEY_ID:PUBLIC_KEY (the node's sealing_key id and key)")?;
            let key = SealingPublicKey::from_base64(key_id, public_key).map_err(|e| format!("--seal-to-node: {e}"))?;
            settings = settings.seal_to_node(key);
        }
        if let Some(path) = &self.identity {
            let identity = crate::identity::read_identity(path).map_err(|e| format!("{e:#}"))?;
            let realm = self.realm.as_deref().ok_or("--identity needs --realm (or ONEX_REALM): the node's realm")?;
            let key = self
                .node_key
                .as_deref()
                .ok_or("--identity needs --node-key (or ONEX_NODE_PUBLIC_KEY): the node's public signing key")?;
            let key = RuntimeKey::from_base64(key).map_err(|e| format!("--node-key: {e}"))?;
            let node = NodeTrust { runtime_id: self.node_runtime_id.clone(), key };
            settings = settings.identity(identity, realm, node);
        }
        Ok(settings)
    }
}
