//! The ONEX Vault adapter node (`node_vault_adapter_effect`) as a library:
//! the binary in `main.rs` is a thin CLI over it, and the integration tests
//! drive the same code.

pub mod contract;
