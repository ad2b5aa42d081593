//! The node's connection to Vault: one authenticated client shared by every
//! operation, plus raw HTTP for the endpoints `vaultrs` does not cover
//! (`sys/leases/*`, `sys/health`, `auth/token/lookup-self`).
//!
//! The token lives in a `SecretString`; `vaultrs` gets a copy inside its client
//! (it has no secret type), and that client is rebuilt, not mutated, when the
//! token changes, so calls in flight keep the client they started with.

mod error;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub use error::{Hint, VaultError};

use crate::contract::{AuthMethod, VaultSettings};

/// What `auth/token/lookup-self` says of the node's token (never the token).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TokenInfo {
    /// Seconds left; 0 for a token without expiry (a root token).
    pub ttl: u64,
    #[serde(default)]
    pub renewable: bool,
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
    client: RwLock<Arc<VaultClient>>,
    http: reqwest::Client,
}

impl Vault {
    /// Logs in as the contract says and checks the token works.
    pub async fn connect(settings: &VaultSettings) -> Result<Vault, VaultError> {
        let timeout = Duration::from_millis(settings.request_timeout_ms);
        let namespace = (!settings.namespace.is_empty()).then(|| settings.namespace.clone());
        let address = settings.address.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|_| VaultError::Malformed)?;
        let placeholder = SecretString::from(String::new());
        let client = build_client(&address, namespace.as_deref(), timeout, &placeholder)?;
        let vault = Vault {
            address,
            namespace,
            timeout,
            token: RwLock::new(placeholder),
            client: RwLock::new(Arc::new(client)),
            http,
        };
        let auth = &settings.auth;
        let token = match auth.method {
            AuthMethod::Token => auth.token.clone().ok_or(VaultError::Login { status: None })?,
            AuthMethod::Approle => {
                let (Some(role_id), Some(secret_id)) = (&auth.role_id, &auth.secret_id) else {
                    return Err(VaultError::Login { status: None });
                };
                vault.approle_login(&auth.approle_mount, role_id, secret_id).await?
            }
        };
        vault.use_token(token)?;
        vault.lookup_self().await.map_err(|e| match e {
            VaultError::Status { status, .. } => VaultError::Login { status: Some(status) },
            other => other,
        })?;
        Ok(vault)
    }

    async fn approle_login(
        &self,
        mount: &str,
        role_id: &SecretString,
        secret_id: &SecretString,
    ) -> Result<SecretString, VaultError> {
        let client = self.client();
        let auth =
            vaultrs::auth::approle::login(client.as_ref(), mount, role_id.expose_secret(), secret_id.expose_secret())
                .await
                .map_err(|e| match VaultError::from(e) {
                    VaultError::Status { status, .. } => VaultError::Login { status: Some(status) },
                    other => other,
                })?;
        Ok(SecretString::from(auth.client_token))
    }

    /// Makes `token` the one every later call uses.
    fn use_token(&self, token: SecretString) -> Result<(), VaultError> {
        let client = build_client(&self.address, self.namespace.as_deref(), self.timeout, &token)?;
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(client);
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token;
        Ok(())
    }

    /// The current `vaultrs` client, for the typed KV v2 and token endpoints.
    pub fn client(&self) -> Arc<VaultClient> {
        self.client.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `auth/token/lookup-self`: the node's token's TTL and renewability.
    pub async fn lookup_self(&self) -> Result<TokenInfo, VaultError> {
        self.call(Method::GET, "auth/token/lookup-self", None).await
    }

    /// `sys/health`, reading sealed (503), standby (429) and uninitialized
    /// (501) answers as answers, not errors.
    pub async fn health(&self) -> Result<SysHealth, VaultError> {
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
        let url = format!("{}/v1/{}", self.address, path);
        let mut request = self.http.request(method, url);
        {
            let token = self.token.read().unwrap_or_else(|p| p.into_inner());
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
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
        #[derive(Deserialize)]
        struct Answer {
            data: Option<Value>,
            // `sys/leases/renew` answers at the top level, not under `data`.
            #[serde(flatten)]
            top: serde_json::Map<String, Value>,
        }
        // 204 No Content (e.g. `sys/leases/revoke`) reads as an empty object.
        let text = if text.trim().is_empty() { "{}" } else { text.as_str() };
        let answer: Answer = serde_json::from_str(text).map_err(|_| VaultError::Malformed)?;
        let data = answer.data.unwrap_or(Value::Object(answer.top));
        serde_json::from_value(data).map_err(|_| VaultError::Malformed)
    }
}

fn build_client(
    address: &str,
    namespace: Option<&str>,
    timeout: Duration,
    token: &SecretString,
) -> Result<VaultClient, VaultError> {
    let mut settings = VaultClientSettingsBuilder::default();
    settings.address(address).token(token.expose_secret()).timeout(Some(timeout));
    if let Some(namespace) = namespace {
        settings.namespace(Some(namespace.to_owned()));
    }
    let settings = settings.build().map_err(|_| VaultError::Malformed)?;
    VaultClient::new(settings).map_err(|_| VaultError::Malformed)
}
