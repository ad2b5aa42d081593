//! Test support shared by the integration tests (`mod support;` in each test file).
//!
//! - [`servers()`] starts real servers once per test binary: OpenBao/Vault, a Kafka
//!   broker (Tansu or Apache Kafka) and PostgreSQL, as local processes or containers.
//! - [`vault`] holds admin helpers (root token, raw HTTP) to prepare Vault state.
//! - [`bus`] holds Kafka helpers: topic creation, a producer, and a reply watcher.
//! - [`faults`] seals, unseals, kills and restarts the shared Vault server; fault
//!   tests live in their own test binaries (see there why).
//! - [`proxy`] is a loopback TCP proxy that can delay, stall or cut a link.
//! - [`kafka_link`] puts such a proxy between the node and the broker, for the node only
//!   (optionally with TLS at the node's end, from [`tls`]).
//! - [`load`] sends many requests and accounts for their replies (lost, duplicated, latency).
//!
//! Every test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

mod background;
pub mod bus;
mod container_stack;
pub mod faults;
pub mod kafka_link;
pub mod load;
mod local_stack;
pub mod node;
pub mod proxy;
pub mod servers;
pub mod tls;
pub mod vault;

#[allow(unused_imports)]
pub use local_stack::tool_path;
#[allow(unused_imports)] // not every test binary names both
pub use servers::{servers, Servers};
