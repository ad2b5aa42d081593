//! The node's connection to Vault: one authenticated client shared by every
//! operation, plus raw HTTP for the endpoints `vaultrs` does not cover
//! (`sys/leases/*`, `sys/health`, `auth/token/lookup-self`).
//!
//! The token lives in a `SecretString`; `vaultrs` gets a copy inside its client
//! (it has no secret type), and that client is rebuilt, not mutated, when the
//! token changes, so calls in flight keep the client they started with.
//!
//! Namespaces: the node logs in and lives in its own (`vault.namespace`); a
//! request may name a child of it. Every call goes through [`Vault::at`]
//! (the node's own namespace or a child), which sends `X-Vault-Namespace`:
//! `vaultrs` clients carry it in their settings, so one client is kept per
//! namespace (at most [`MAX_NAMESPACE_CLIENTS`], all dropped when the token
//! changes); raw calls set the header themselves.
//!
//! Over 500 lines only with its unit tests.

mod error;
mod leases;
mod renewal;
mod startup;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub use error::{Hint, TlsFailure, VaultError};
pub use leases::{LeaseInfo, RenewedLease};
pub use renewal::keep_token_alive;
pub use startup::connect_at_start;

use crate::contract::{AuthMethod, VaultSettings, VaultTls};
use crate::telemetry::Telemetry;

/// What `auth/token/lookup-self` says of the node's token (never the token).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TokenInfo {
    /// Seconds left; 0 for a token without expiry (a root token).
    pub ttl: u64,
    #[serde(default)]
    pub renewable: bool,
    /// The TTL the token was created with.
    #[serde(default)]
    pub creation_ttl: u64,
}

/// What `sys/health` says. Every field is optional: OpenBao omits some that
/// Vault sends, and a sealed or standby server answers with a non-200 status.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SysHealth {
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
    pub standby: Option<bool>,
    pub version: Option<String>,
    pub cluster_name: Option<String>,
}

pub struct Vault {
    address: String,
    namespace: Option<String>,
    timeout: Duration,
    token: RwLock<SecretString>,
    clients: RwLock<Clients>,
    http: reqwest::Client,
    tls: TlsFiles,
    /// AppRole credentials, kept to log in again when the token can no
    /// longer be renewed or was revoked; `None` with token auth.
    approle: Option<AppRole>,
    /// Bumped at every login, so concurrent callers that saw the same dead
    /// token log in once, not once each.
    generation: AtomicU64,
    /// Logins after the first, for the health event.
    logins: AtomicU64,
    login_lock: tokio::sync::Mutex<()>,
    /// Where logins and token lookups are counted.
    telemetry: Arc<Telemetry>,
}

/// Most `vaultrs` clients kept for namespaces other than the node's own;
/// past it they are all dropped and rebuilt as needed.
pub const MAX_NAMESPACE_CLIENTS: usize = 64;

/// The `vaultrs` clients of the current token: the node's own namespace's,
/// and those of child namespaces requests named, by full namespace.
struct Clients {
    own: Arc<VaultClient>,
    children: HashMap<String, Arc<VaultClient>>,
}

struct AppRole {
    mount: String,
    role_id: SecretString,
    secret_id: SecretString,
}

impl Vault {
    /// Logs in as the contract says and checks the token works.
    pub async fn connect(settings: &VaultSettings, telemetry: Arc<Telemetry>) -> Result<Vault, VaultError> {
        // The per-attempt limit is `resilience::with_timeout`'s; the HTTP
        // clients get a later backstop so a slow Vault is always reported as
        // a timeout, never as a transport error.
        let timeout = Duration::from_millis(settings.request_timeout_ms) + Duration::from_secs(1);
        let namespace = (!settings.namespace.is_empty()).then(|| settings.namespace.clone());
        let address = settings.address.trim_end_matches('/').to_owned();
        let tls = TlsFiles::read(&settings.tls)?;
        let http = http_client(timeout, &tls)?;
        let placeholder = SecretString::from(String::new());
        let client = build_client(&address, namespace.as_deref(), timeout, &tls, &placeholder)?;
        let auth = &settings.auth;
        let approle = match (auth.method, &auth.role_id, &auth.secret_id) {
            (AuthMethod::Approle, Some(role_id), Some(secret_id)) => Some(AppRole {
                mount: auth.approle_mount.clone(),
                role_id: role_id.clone(),
                secret_id: secret_id.clone(),
            }),
            (AuthMethod::Approle, _, _) => return Err(VaultError::Login { status: None }),
            (AuthMethod::Token, _, _) => None,
        };
        let vault = Vault {
            address,
            namespace,
            timeout,
            token: RwLock::new(placeholder),
            clients: RwLock::new(Clients { own: Arc::new(client), children: HashMap::new() }),
            http,
            tls,
            approle,
            generation: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            login_lock: tokio::sync::Mutex::new(()),
            telemetry,
        };
        let token = match &vault.approle {
            Some(approle) => vault.approle_login(approle).await?,
            None => auth.token.clone().ok_or(VaultError::Login { status: None })?,
        };
        vault.use_token(token)?;
        vault.lookup_self().await.map_err(|e| match e {
            VaultError::Status { status, .. } => VaultError::Login { status: Some(status) },
            other => other,
        })?;
        Ok(vault)
    }

    async fn approle_login(&self, approle: &AppRole) -> Result<SecretString, VaultError> {
        let client = self.client();
        let (role_id, secret_id) = (approle.role_id.expose_secret(), approle.secret_id.expose_secret());
        let login = vaultrs::auth::approle::login(client.as_ref(), &approle.mount, role_id, secret_id).await;
        // Counted when Vault answered: a Vault not up authenticates no one.
        let auth = login.map_err(|e| match VaultError::from(e) {
            VaultError::Status { status, .. } => {
                self.telemetry.record_authentication(false);
                VaultError::Login { status: Some(status) }
            }
            other => other,
        })?;
        self.telemetry.record_authentication(true);
        Ok(SecretString::from(auth.client_token))
    }

    /// Makes `token` the one every later call uses. Calls in flight keep the
    /// client (and token) they started with.
    fn use_token(&self, token: SecretString) -> Result<(), VaultError> {
        let client = build_client(&self.address, self.namespace.as_deref(), self.timeout, &self.tls, &token)?;
        // Under the clients' lock, so no child client is built with the old token after this.
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        *clients = Clients { own: Arc::new(client), children: HashMap::new() };
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The node's own namespace (`vault.namespace`); `None`: the root.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Calls in `namespace` (in full, e.g. `team-a/app`); `None`, or the
    /// node's own namespace spelled out: the node's own.
    pub fn at(&self, namespace: Option<String>) -> At<'_> {
        let namespace = namespace.filter(|ns| Some(ns.as_str()) != self.namespace.as_deref());
        At { vault: self, namespace }
    }

    /// The `vaultrs` client for `namespace` (a child's; `None`: the node's own).
    fn client_in(&self, namespace: Option<&str>) -> Result<Arc<VaultClient>, VaultError> {
        let Some(namespace) = namespace else {
            return Ok(self.clients.read().unwrap_or_else(|p| p.into_inner()).own.clone());
        };
        if let Some(client) = self.clients.read().unwrap_or_else(|p| p.into_inner()).children.get(namespace) {
            return Ok(client.clone());
        }
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.children.get(namespace) {
            return Ok(client.clone());
        }
        if clients.children.len() >= MAX_NAMESPACE_CLIENTS {
            clients.children.clear();
        }
        let token = self.token.read().unwrap_or_else(|p| p.into_inner());
        let client = Arc::new(build_client(&self.address, Some(namespace), self.timeout, &self.tls, &token)?);
        clients.children.insert(namespace.to_owned(), client.clone());
        Ok(client)
    }

    /// Whether the node can get itself a new token (AppRole auth).
    pub fn can_log_in_again(&self) -> bool {
        self.approle.is_some()
    }

    /// Logins after the first.
    pub fn logins_total(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// Which token is in use: changes at every login.
    pub fn token_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Logs in again with AppRole, unless someone already did since the
    /// caller saw `generation` in use. Returns whether a login happened.
    pub async fn log_in_again(&self, generation: u64) -> Result<bool, VaultError> {
        let Some(approle) = &self.approle else { return Ok(false) };
        let _one_at_a_time = self.login_lock.lock().await;
        if self.token_generation() != generation {
            return Ok(false);
        }
        let token = self.approle_login(approle).await?;
        self.use_token(token)?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        tracing::info!("logged in to Vault again with AppRole");
        Ok(true)
    }

    /// Whether the current token is dead (expired or revoked): Vault refuses
    /// even to describe it. A 403 on a path with a live token is policy.
    pub async fn token_is_dead(&self) -> bool {
        matches!(self.lookup_self().await, Err(VaultError::Status { status: 403, .. }))
    }

    /// The current `vaultrs` client of the node's own namespace.
    pub fn client(&self) -> Arc<VaultClient> {
        self.clients.read().unwrap_or_else(|p| p.into_inner()).own.clone()
    }

    /// `auth/token/lookup-self`: the node's token's TTL and renewability.
    pub async fn lookup_self(&self) -> Result<TokenInfo, VaultError> {
        self.at(None).lookup_self().await
    }

    /// `sys/health`, reading sealed (503), standby (429) and uninitialized
    /// (501) answers as answers, not errors.
    pub async fn health(&self) -> Result<SysHealth, VaultError> {
        // Raw: vaultrs's sys::health reads a sealed (503) or standby (429) answer as an error, and wants fields OpenBao omits.
        let url = format!("{}/v1/sys/health", self.address);
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        if matches!(status, 200 | 429 | 472 | 473 | 501 | 503) {
            response.json().await.map_err(|_| VaultError::Malformed)
        } else {
            Err(VaultError::status(status, &[]))
        }
    }

    /// One authenticated call to the Vault HTTP API (`path` under `/v1/`),
    /// returning the `data` object of the answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, VaultError> {
        self.at(None).call(method, path, body).await
    }

    async fn call_in<T: DeserializeOwned>(
        &self,
        namespace: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, VaultError> {
        let mut answer = self.send(namespace, method, path, body, None).await?;
        // `sys/leases/renew` answers at the top level, not under `data`.
        let data = match answer.remove("data") {
            Some(data) if !data.is_null() => data,
            _ => Value::Object(answer),
        };
        serde_json::from_value(data).map_err(|_| VaultError::Malformed)
    }

    /// Sends one request with the node's token in `namespace` (a child's in
    /// full; `None`: the node's own); the answer's top-level object, or the
    /// error its status means.
    async fn send(
        &self,
        namespace: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
        wrap_ttl: Option<Duration>,
    ) -> Result<serde_json::Map<String, Value>, VaultError> {
        let url = format!("{}/v1/{}", self.address, path);
        let mut request = self.http.request(method, url);
        {
            let token = self.token.read().unwrap_or_else(|p| p.into_inner());
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(namespace) = namespace.or(self.namespace.as_deref()) {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(ttl) = wrap_ttl {
            request = request.header("X-Vault-Wrap-TTL", format!("{}s", ttl.as_secs().max(1)));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            #[derive(Deserialize, Default)]
            struct ErrorBody {
                #[serde(default)]
                errors: Vec<String>,
            }
            let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
            return Err(VaultError::status(status.as_u16(), &body.errors));
        }
        // 204 No Content (e.g. `sys/leases/revoke`) reads as an empty object.
        let text = if text.trim().is_empty() { "{}" } else { text.as_str() };
        serde_json::from_str(text).map_err(|_| VaultError::Malformed)
    }
}

/// Vault as seen from one namespace: the node's own or a child of it. The
/// one way operations call Vault.
pub struct At<'v> {
    vault: &'v Vault,
    /// In full; `None`: the node's own.
    namespace: Option<String>,
}

impl At<'_> {
    /// The namespace calls go to, in full; `None`: the node's own.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The `vaultrs` client for this namespace, for the typed KV v2 and token endpoints.
    pub fn client(&self) -> Result<Arc<VaultClient>, VaultError> {
        self.vault.client_in(self.namespace())
    }

    /// One authenticated call to the Vault HTTP API (`path` under `/v1/`),
    /// returning the `data` object of the answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, VaultError> {
        self.vault.call_in(self.namespace(), method, path, body).await
    }

    /// `auth/token/lookup-self`, read as `T`: the one way the node looks up
    /// its token (counted for the health figures).
    pub async fn lookup_self<T: DeserializeOwned>(&self) -> Result<T, VaultError> {
        self.vault.telemetry.record_token_lookup();
        // Raw: read into the caller's own type (the TTL, or what `lookup_token` shows), never the token id vaultrs's type keeps.
        self.call(Method::GET, "auth/token/lookup-self", None).await
    }

    /// A read whose answer Vault keeps behind a single-use wrapping token
    /// living `ttl` (header `X-Vault-Wrap-TTL`); returns the token's details.
    /// The token lives in this namespace (unwrap it there).
    pub async fn wrapped(&self, path: &str, ttl: Duration) -> Result<WrapInfo, VaultError> {
        // Raw: vaultrs's `api::wrap` fixes the wrapping TTL at 10 minutes; the contract chooses it here.
        let mut answer = self.vault.send(self.namespace(), Method::GET, path, None, Some(ttl)).await?;
        let info = answer.remove("wrap_info").ok_or(VaultError::Malformed)?;
        serde_json::from_value(info).map_err(|_| VaultError::Malformed)
    }

    /// `data` kept by Vault behind a single-use wrapping token living `ttl`
    /// (`sys/wrapping/wrap`): for results the node made itself.
    pub async fn wrap_data(&self, data: &Value, ttl: Duration) -> Result<WrapInfo, VaultError> {
        // Raw: vaultrs 0.8 has no sys/wrapping/wrap.
        let mut answer =
            self.vault.send(self.namespace(), Method::POST, "sys/wrapping/wrap", Some(data), Some(ttl)).await?;
        let info = answer.remove("wrap_info").ok_or(VaultError::Malformed)?;
        serde_json::from_value(info).map_err(|_| VaultError::Malformed)
    }
}

/// What Vault says of a response-wrapping token it created.
#[derive(Deserialize)]
pub struct WrapInfo {
    pub token: SecretString,
    pub accessor: String,
    pub ttl: u64,
    pub creation_time: String,
}

/// The contract's TLS files, read and parsed once (`vault.tls`).
#[derive(Clone, Default)]
struct TlsFiles {
    ca_cert: Option<String>,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

impl TlsFiles {
    fn read(tls: &VaultTls) -> Result<TlsFiles, VaultError> {
        let read = |file: &str| std::fs::read(file).map_err(|_| VaultError::TlsFile);
        let mut files = TlsFiles::default();
        if !tls.ca_cert.is_empty() {
            let pem = read(&tls.ca_cert)?;
            files.roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| VaultError::TlsFile)?;
            files.ca_cert = Some(tls.ca_cert.clone());
        }
        if !tls.client_cert.is_empty() && !tls.client_key.is_empty() {
            let mut pem = read(&tls.client_cert)?;
            pem.extend(read(&tls.client_key)?);
            files.identity = Some(reqwest::Identity::from_pem(&pem).map_err(|_| VaultError::TlsFile)?);
        }
        Ok(files)
    }

    /// The raw HTTP client with the same trust and identity as `vaultrs`'s.
    fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if !self.roots.is_empty() {
            builder = builder.tls_certs_merge(self.roots.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}

fn build_client(
    address: &str,
    namespace: Option<&str>,
    timeout: Duration,
    tls: &TlsFiles,
    token: &SecretString,
) -> Result<VaultClient, VaultError> {
    let mut settings = VaultClientSettingsBuilder::default();
    // Explicit, so vaultrs does not read VAULT_CACERT & co. behind the contract's back.
    settings
        .address(address)
        .token(token.expose_secret())
        .timeout(Some(timeout))
        .verify(true)
        .ca_certs(tls.ca_cert.iter().cloned().collect())
        .identity(tls.identity.clone());
    if let Some(namespace) = namespace {
        settings.namespace(Some(namespace.to_owned()));
    }
    let settings =
        settings.build().map_err(|_| VaultError::Internal("the vaultrs client settings could not be built"))?;
    let mut client =
        VaultClient::new(settings).map_err(|_| VaultError::Internal("the vaultrs client could not be made"))?;
    // vaultrs's own HTTP client follows redirects, and `X-Vault-Token` is not
    // a header reqwest drops when it does: calls go through ours instead.
    client.http = rustify::clients::reqwest::Client::new(address, http_client(timeout, tls)?);
    Ok(client)
}

/// The HTTP client of every Vault call, raw or through vaultrs: the
/// contract's TLS trust and identity, a timeout, and no redirects (every
/// call carries the token: never to another address).
fn http_client(timeout: Duration, tls: &TlsFiles) -> Result<reqwest::Client, VaultError> {
    let builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    tls.apply(builder).build().map_err(|_| VaultError::Internal("the Vault HTTP client could not be made"))
}

/// Sleeps for `duration`; true if `stop` fired first. For the background
/// waits of this module (token renewal, start-up).
async fn sleep_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use secrecy::SecretString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{build_client, http_client, TlsFiles};

    /// A "Vault" that answers every call with a redirect to another address:
    /// neither the vaultrs client nor the raw one follows it, so the token
    /// never reaches the other address.
    #[tokio::test]
    async fn no_vault_call_follows_a_redirect() {
        let (Ok(elsewhere), Ok(redirector)) =
            (TcpListener::bind("127.0.0.1:0").await, TcpListener::bind("127.0.0.1:0").await)
        else {
            panic!("cannot listen on 127.0.0.1");
        };
        let (elsewhere_addr, vault_addr) = (elsewhere.local_addr().ok(), redirector.local_addr().ok());
        let (Some(elsewhere_addr), Some(vault_addr)) = (elsewhere_addr, vault_addr) else { panic!("no address") };
        let reached = Arc::new(AtomicUsize::new(0));
        let redirected = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        tokio::spawn(async move {
            while elsewhere.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let counter = redirected.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = redirector.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere_addr}/v1/auth/token/lookup-self\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });

        let token = SecretString::from("redirect-canary-token".to_owned());
        let tls = TlsFiles::default();
        let address = format!("http://{vault_addr}");
        let client = build_client(&address, None, Duration::from_secs(5), &tls, &token).expect("client");
        assert!(vaultrs::token::lookup_self(&client).await.is_err(), "a redirect is not an answer");
        let raw = http_client(Duration::from_secs(5), &tls).expect("client");
        let answer = raw.get(format!("{address}/v1/sys/health")).header("X-Vault-Token", "t").send().await;
        assert_eq!(answer.map(|a| a.status().as_u16()).ok(), Some(307), "the raw client hands the redirect back");

        assert_eq!(redirected.load(Ordering::SeqCst), 2, "both calls reached the redirecting Vault");
        assert_eq!(reached.load(Ordering::SeqCst), 0, "a redirect was followed to another address");
    }
}
