//! Payloads of the operations on the node's own token.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupToken {}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewToken {
    /// Requested extension; Vault may grant less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment_seconds: Option<u64>,
}
