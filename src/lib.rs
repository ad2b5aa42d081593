//! The ONEX Vault adapter node (`node_infrastructure_vault_adapter_effect`) as a library:
//! `main.rs` is a thin CLI over it, and the integration tests drive the binary.
//!
//! Reading order, along the data path: `contract` (what the node is told),
//! `runtime` (the consume → decode → dispatch → reply → store-offset loop),
//! `decode` (bytes to typed request), `security` (signature, replay and
//! access-policy checks; sealed and wrapped delivery), `operations` (typed request to Vault
//! call), `resilience` (timeout, retry, breaker), `vault` (the Vault client),
//! `bus` (Kafka settings, publishing, offsets).

pub mod asyncapi;
pub mod bus;
pub mod cache;
pub mod contract;
pub mod decode;
pub mod health;
pub mod http;
pub mod leases;
pub mod logging;
pub mod messages;
pub mod operations;
pub mod redact;
pub mod resilience;
pub mod runtime;
pub mod security;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
pub mod vault;
