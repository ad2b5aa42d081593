//! Fault injection on the shared Vault server: seal and unseal it, kill it and start
//! it again, for tests of how the node copes with a sealed or vanished Vault.
//! (Slow or broken links are made with [`super::proxy::Proxy`] instead.)
//!
//! ```ignore
//! let _vault = faults::exclusive_vault().await;
//! servers().vault_seal().await;      // sys/health now answers 503
//! servers().vault_unseal().await;    // 200 again; all data kept
//! servers().vault_stop();            // SIGKILL; the port refuses connections
//! servers().vault_start().await;     // same port, same root token, EMPTY server
//! ```
//!
//! **Fault tests live in their own test binaries** (their own `tests/<name>.rs`):
//! [`servers()`](super::servers()) is shared by every test of one binary, so a test
//! that seals or kills Vault would break whatever other tests run at the same time.
//! Inside such a binary, each test holds [`exclusive_vault`] for its whole run, so
//! its faults do not overlap another test's; it also repairs a Vault that an
//! earlier, failed test left sealed or stopped.
//!
//! **A restart loses all state.** The dev server keeps everything in memory: KV
//! data, policies, tokens other than the root token, auth methods (AppRole), secrets
//! engines (database, PKI, extra KV mounts) and leases are gone. A fresh dev server
//! has KV v2 at `secret/` again and the same root token. The one-time setup in
//! `vault.rs` (`enable_kv2`, `database_lease_role`, `enable_approle_role`,
//! `pki_nonrenewable_lease`) is keyed on [`Servers::vault_generation`], which
//! [`Servers::vault_start`] bumps, so those helpers set things up again afterwards.
//! Sealing keeps everything; the unseal key changes with each restart and
//! [`Servers::unseal_key`] follows it.
//!
//! On the containers stack, stop and start are `docker stop -t 0` / `docker start`
//! of the Vault container (same host port: it is mapped to a fixed one); seal and
//! unseal go through the HTTP API on both stacks.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard};

use super::{
    container_stack::ContainerVault,
    local_stack::LocalVault,
    servers::{poll_until_ready, probe_vault_down, servers, Servers},
    vault,
};

/// How long Vault may take to reach the state a control asked for.
const STATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the state is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The Vault server process (local stack) or container (containers stack).
#[derive(Debug)]
pub(super) enum VaultProcess {
    Local(LocalVault),
    Container(ContainerVault),
}

impl VaultProcess {
    fn is_running(&self) -> bool {
        match self {
            VaultProcess::Local(vault) => vault.is_running(),
            VaultProcess::Container(vault) => vault.is_running(),
        }
    }

    fn stop(&self) -> Result<(), String> {
        match self {
            VaultProcess::Local(vault) => vault.kill(),
            VaultProcess::Container(vault) => vault.stop(),
        }
    }

    /// Starts Vault again and waits until it is ready; returns its new unseal key.
    fn restart(&self) -> Result<Option<String>, String> {
        match self {
            VaultProcess::Local(vault) => vault.restart(),
            VaultProcess::Container(vault) => vault.restart(),
        }
    }
}

impl Servers {
    /// Seals Vault (`PUT /v1/sys/seal` with the root token) and returns once
    /// `sys/health` answers 503. Everything stored is kept; [`Self::vault_unseal`]
    /// brings it back.
    pub async fn vault_seal(&self) {
        let response = vault::request(Method::PUT, "sys/seal", None).await;
        assert!(response.is_success(), "PUT /v1/sys/seal answered {}: {}", response.status, response.body);
        wait_for_health("sealed", |status| status == Some(StatusCode::SERVICE_UNAVAILABLE)).await;
    }

    /// Unseals Vault with the dev server's unseal key (`PUT /v1/sys/unseal`) and
    /// returns once `sys/health` answers 200.
    pub async fn vault_unseal(&self) {
        let key =
            self.unseal_key().expect("the Vault dev server's unseal key is unknown (it was not found in its output)");
        let response = vault::request_with_token("", Method::PUT, "sys/unseal", Some(&json!({ "key": key }))).await;
        assert!(
            response.is_success() && response.body["sealed"] == false,
            "PUT /v1/sys/unseal answered {}: {}",
            response.status,
            response.body
        );
        wait_for_health("unsealed and active", |status| status == Some(StatusCode::OK)).await;
    }

    /// Kills Vault (SIGKILL; `docker stop -t 0` on containers) and returns once its
    /// port refuses connections. Blocks for that long (normally well under a second
    /// locally). Panics if Vault is already stopped.
    pub fn vault_stop(&self) {
        self.vault_process.stop().unwrap_or_else(|failure| panic!("vault_stop: {failure}"));
        let host_port = self.vault_socket_addr().to_string();
        poll_until_ready(
            "Vault to go away after vault_stop",
            STATE_TIMEOUT,
            || Ok(()),
            || probe_vault_down(&host_port),
        )
        .unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// Starts Vault again after [`Self::vault_stop`]: on the same port, with the same
    /// root token, and returns once `sys/health` answers 200. The server is a fresh
    /// dev server with **no state** (see the module comment); this bumps
    /// [`Self::vault_generation`] so the `vault.rs` helpers set things up again.
    /// Panics if Vault is already running.
    ///
    /// Takes `&'static self`, as [`servers()`] hands out, because the blocking start
    /// runs on Tokio's blocking pool rather than stalling the test's runtime.
    pub async fn vault_start(&'static self) {
        let restarted = tokio::task::spawn_blocking(|| self.vault_process.restart())
            .await
            .unwrap_or_else(|e| panic!("vault_start: the blocking task failed: {e}"));
        let unseal_key = restarted.unwrap_or_else(|failure| panic!("vault_start: {failure}"));
        *self.unseal_key.lock().expect("unseal key lock poisoned") = unseal_key;
        self.vault_generation.fetch_add(1, Ordering::SeqCst);
        // The process answers 200 already; check it through the HTTP client too.
        wait_for_health("active after restart", |status| status == Some(StatusCode::OK)).await;
    }

    /// False between [`Self::vault_stop`] and [`Self::vault_start`] (or when the
    /// local OpenBao process died by itself).
    pub fn vault_is_running(&self) -> bool {
        self.vault_process.is_running()
    }

    /// How often Vault was restarted with [`Self::vault_start`]: 0 at first. State set
    /// up in Vault is only there for the generation it was set up in.
    pub fn vault_generation(&self) -> u64 {
        self.vault_generation.load(Ordering::SeqCst)
    }
}

/// Serialises the tests of one binary that inject Vault faults (or need Vault
/// healthy while others do): hold the guard for the whole test.
///
/// Before handing out the guard, repairs what an earlier test may have left behind
/// when it failed half-way: starts Vault if it is stopped and unseals it if it is
/// sealed. (Vault state that test set up may still be gone.)
pub async fn exclusive_vault() -> MutexGuard<'static, ()> {
    static VAULT: Mutex<()> = Mutex::const_new(());
    let guard = VAULT.lock().await;
    let servers = servers();
    if !servers.vault_is_running() {
        servers.vault_start().await;
    }
    if vault::health_status().await.ok() == Some(StatusCode::SERVICE_UNAVAILABLE) {
        servers.vault_unseal().await;
    }
    guard
}

/// Polls `GET /v1/sys/health` until `wanted` accepts its status (`None`: no answer),
/// or panics after [`STATE_TIMEOUT`] naming `state` and the last answer.
async fn wait_for_health(state: &str, wanted: impl Fn(Option<StatusCode>) -> bool) {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let answer = vault::health_status().await;
        if wanted(answer.as_ref().ok().copied()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Vault was not {state} after {STATE_TIMEOUT:?}; sys/health last answered {answer:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
