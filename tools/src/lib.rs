//! The operator's and requesters' commands of `onex-vault-adapter`, built on
//! the client and the models (never on the node's internals): `send`,
//! `request`, `resolve`, `keygen` and `health`. The node's binary only parses
//! its command line and calls [`send::run`], [`request::run`],
//! [`resolve::run`], [`identity::keygen`] and [`health_view::run`].
//!
//! Where the node is, and the Kafka settings from the environment, are in one
//! place: [`bus::BusArgs`] (the default topics come from
//! `onex_vault_client::Topics`, TLS/SASL from
//! `onex_vault_client::kafka::KafkaSecurity::from_env`).

pub mod bus;
pub mod health_view;
pub mod identity;
pub mod request;
pub mod resolve;
pub mod send;

use tokio_util::sync::CancellationToken;

/// A token cancelled at Ctrl-C, for the commands that run until stopped.
pub(crate) fn on_ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });
    token
}
