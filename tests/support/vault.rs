//! Admin helpers that prepare Vault/OpenBao state for tests, using the root token
//! and raw HTTP against the Vault API (deliberately not the node's own client code).
//!
//! Every call has a timeout. Helpers panic with the method, path, status and body
//! when Vault answers unexpectedly; [`request`] and [`renew_lease`] return the raw
//! answer instead, for tests that assert on failures.
//!
//! One-time setup (auth methods, engines, roles) is guarded by `tokio::sync::OnceCell`,
//! so tests running in parallel can all call e.g. [`database_lease_role`] safely.
//! "Once" means once per Vault server: after `Servers::vault_start` (a restarted dev
//! server has lost all state, see `faults.rs`) the next call sets things up again.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::servers::servers;

/// Timeout of every HTTP call to Vault.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Name of the database connection and role that [`database_lease_role`] sets up.
const DB_CONNECTION: &str = "onex-test-pg";
const DB_ROLE: &str = "app";
const PKI_ROLE: &str = "leased";

/// Vault's answer: status code and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct VaultResponse {
    pub status: StatusCode,
    pub body: Value,
}

impl VaultResponse {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The `errors` array of an error body, joined.
    pub fn errors(&self) -> String {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string()))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}

/// One HTTP client for all helpers. Idle connections are not pooled: each
/// `#[tokio::test]` has its own runtime, and a pooled connection would belong to the
/// runtime of the test that opened it, which may be gone by the next call.
fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("building the Vault admin HTTP client")
    })
}

/// Sends `method /v1/<path>` with the root token and an optional JSON body.
pub async fn request(method: Method, path: &str, body: Option<&Value>) -> VaultResponse {
    request_with_token(servers().root_token(), method, path, body).await
}

/// Like [`request`], with another token (e.g. one made by [`create_token`]).
/// `path` is relative to `/v1/`. Use `Method::from_bytes(b"LIST")` for LIST.
pub async fn request_with_token(token: &str, method: Method, path: &str, body: Option<&Value>) -> VaultResponse {
    request_as(token, "", method, path, body).await
}

/// Like [`request`], in the Vault namespace `namespace` (`team-a/app`; `""`
/// for the root), sent as the `X-Vault-Namespace` header.
pub async fn request_in(namespace: &str, method: Method, path: &str, body: Option<&Value>) -> VaultResponse {
    request_as(servers().root_token(), namespace, method, path, body).await
}

/// Creates the namespace `name` inside `parent` (`""`: the root) and
/// returns its full path; `None` when the server has no namespaces (Vault
/// without Enterprise answers 404).
pub async fn create_namespace(parent: &str, name: &str) -> Option<String> {
    let response = request_in(parent, Method::POST, &format!("sys/namespaces/{name}"), None).await;
    if response.status == StatusCode::NOT_FOUND {
        return None;
    }
    assert!(response.is_success(), "creating namespace {name} in {parent:?}: {}", response.errors());
    Some(if parent.is_empty() { name.to_owned() } else { format!("{parent}/{name}") })
}

/// `token` and `namespace` (`""`: none sent) for one request.
async fn request_as(token: &str, namespace: &str, method: Method, path: &str, body: Option<&Value>) -> VaultResponse {
    let url = format!("{}/v1/{}", servers().vault_addr(), path.trim_start_matches('/'));
    let mut builder = http().request(method.clone(), &url).header("X-Vault-Token", token);
    if !namespace.is_empty() {
        builder = builder.header("X-Vault-Namespace", namespace);
    }
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let response = builder.send().await.unwrap_or_else(|e| panic!("{method} {url}: no answer from Vault: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    VaultResponse { status, body }
}

/// Sends the request and panics unless Vault answers 2xx. Returns the body.
async fn expect_success(method: Method, path: &str, body: Option<&Value>) -> Value {
    let response = request(method.clone(), path, body).await;
    assert!(response.is_success(), "{method} /v1/{path} answered {}: {}", response.status, response.body);
    response.body
}

/// The status of `GET /v1/sys/health`: 200 active, 503 sealed, ... `Err` when
/// nothing answers (Vault stopped). Never panics.
pub async fn health_status() -> Result<StatusCode, String> {
    let url = format!("{}/v1/sys/health", servers().vault_addr());
    http().get(&url).send().await.map(|response| response.status()).map_err(|e| format!("GET {url}: {e}"))
}

/// Runs `setup` for `key` once per Vault server: parallel callers wait for the one
/// running it, and after a restart (`Servers::vault_start` bumps the generation) the
/// next caller runs it again. If `setup` panics, the next caller retries it.
async fn once_per_vault_server<F, Fut>(key: &str, setup: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    type Done = HashMap<String, (u64, Arc<OnceCell<()>>)>;
    static DONE: OnceLock<Mutex<Done>> = OnceLock::new();
    let generation = servers().vault_generation();
    let once = {
        let mut done = DONE.get_or_init(Default::default).lock().expect("one-time setup registry poisoned");
        let entry = done.entry(key.to_owned()).or_insert_with(|| (generation, Arc::default()));
        if entry.0 < generation {
            *entry = (generation, Arc::default());
        }
        entry.1.clone()
    };
    once.get_or_init(setup).await;
}

/// Enables a secrets engine or auth method, treating "already in use" as done.
async fn enable(sys_path: &str, config: Value) {
    let response = request(Method::POST, sys_path, Some(&config)).await;
    let already = response.status == StatusCode::BAD_REQUEST && response.errors().contains("path is already in use");
    assert!(response.is_success() || already, "POST /v1/{sys_path} answered {}: {}", response.status, response.body);
}

// ---------------------------------------------------------------------------
// KV v2
// ---------------------------------------------------------------------------

/// Mounts a KV v2 engine at `mount` (once per Vault server; `secret` already exists
/// on a dev server) and waits until it serves requests.
pub async fn enable_kv2(mount: &str) {
    once_per_vault_server(&format!("kv2 mount {mount}"), || async {
        enable(&format!("sys/mounts/{mount}"), json!({ "type": "kv", "options": { "version": "2" } })).await;
        // A fresh KV v2 mount may briefly answer "upgrading" before it serves.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let config = request(Method::GET, &format!("{mount}/config"), None).await;
            if config.is_success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "KV v2 mount {mount} not serving after 10s: {} {}",
                config.status,
                config.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Writes `data` (a JSON object) as the new version of `<mount>/<path>`.
/// Returns the version number Vault assigned.
pub async fn write_kv(mount: &str, path: &str, data: &Value) -> u64 {
    let body = expect_success(Method::POST, &format!("{mount}/data/{path}"), Some(&json!({ "data": data }))).await;
    body["data"]["version"].as_u64().unwrap_or_else(|| panic!("KV write of {mount}/{path} returned no version: {body}"))
}

/// The key/value data of the latest version of `<mount>/<path>`, or `None` when
/// Vault answers 404 (missing, or latest version deleted).
pub async fn read_kv(mount: &str, path: &str) -> Option<Value> {
    let response = request(Method::GET, &format!("{mount}/data/{path}"), None).await;
    match response.status {
        StatusCode::NOT_FOUND => None,
        status if status.is_success() => Some(response.body["data"]["data"].clone()),
        status => panic!("GET {mount}/data/{path} answered {status}: {}", response.body),
    }
}

/// The metadata of `<mount>/<path>` (`current_version`, `versions`, ...), or `None` on 404.
pub async fn kv_metadata(mount: &str, path: &str) -> Option<Value> {
    let response = request(Method::GET, &format!("{mount}/metadata/{path}"), None).await;
    match response.status {
        StatusCode::NOT_FOUND => None,
        status if status.is_success() => Some(response.body["data"].clone()),
        status => panic!("GET {mount}/metadata/{path} answered {status}: {}", response.body),
    }
}

// ---------------------------------------------------------------------------
// Policies, tokens, AppRole
// ---------------------------------------------------------------------------

/// Creates or replaces the ACL policy `name`.
pub async fn put_policy(name: &str, hcl: &str) {
    expect_success(Method::PUT, &format!("sys/policies/acl/{name}"), Some(&json!({ "policy": hcl }))).await;
}

/// Creates a child token of the root token. `ttl` is a Vault duration ("1h", "30s").
pub async fn create_token(policies: &[&str], ttl: &str, renewable: bool) -> String {
    let body = expect_success(
        Method::POST,
        "auth/token/create",
        Some(&json!({ "policies": policies, "ttl": ttl, "renewable": renewable })),
    )
    .await;
    body["auth"]["client_token"]
        .as_str()
        .unwrap_or_else(|| panic!("token create returned no client_token: {body}"))
        .to_owned()
}

/// Creates (or updates) the AppRole `role` with `policies` and `token_ttl`, enabling
/// the `approle` auth method once per Vault server. Returns a fresh `(role_id, secret_id)`.
pub async fn enable_approle_role(role: &str, policies: &[&str], token_ttl: &str) -> (String, String) {
    once_per_vault_server("approle auth", || enable("sys/auth/approle", json!({ "type": "approle" }))).await;

    expect_success(
        Method::POST,
        &format!("auth/approle/role/{role}"),
        Some(&json!({ "token_policies": policies, "token_ttl": token_ttl })),
    )
    .await;
    let body = expect_success(Method::GET, &format!("auth/approle/role/{role}/role-id"), None).await;
    let role_id =
        body["data"]["role_id"].as_str().unwrap_or_else(|| panic!("no role_id for AppRole {role}: {body}")).to_owned();
    let body = expect_success(Method::POST, &format!("auth/approle/role/{role}/secret-id"), None).await;
    let secret_id = body["data"]["secret_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret_id for AppRole {role}: {body}"))
        .to_owned();
    (role_id, secret_id)
}

/// Logs in with AppRole credentials; returns the `auth` block (`client_token`,
/// `lease_duration`, `renewable`, `policies`, ...).
pub async fn approle_login(role_id: &str, secret_id: &str) -> Value {
    let response = request_with_token(
        "",
        Method::POST,
        "auth/approle/login",
        Some(&json!({ "role_id": role_id, "secret_id": secret_id })),
    )
    .await;
    assert!(response.is_success(), "AppRole login answered {}: {}", response.status, response.body);
    response.body["auth"].clone()
}

// ---------------------------------------------------------------------------
// Leases: database (renewable) and PKI (not renewable)
// ---------------------------------------------------------------------------

/// Sets up, once per Vault server, the `database` engine against the test PostgreSQL
/// and a role that issues renewable leases (default TTL 1h, max 24h). Returns the
/// creds path to read for a new lease, e.g. `database/creds/app`.
pub async fn database_lease_role() -> String {
    once_per_vault_server("database engine", || async {
        enable("sys/mounts/database", json!({ "type": "database" })).await;
        let servers = servers();
        let connection_url = format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@{}/postgres?sslmode=disable",
            servers.postgres_addr_for_vault()
        );
        expect_success(
            Method::POST,
            &format!("database/config/{DB_CONNECTION}"),
            Some(&json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": connection_url,
                "username": "postgres",
                "password": servers.postgres_password(),
                // Any role: tests add short-lived ones (`short_database_lease`).
                    "allowed_roles": ["*"],
                "verify_connection": true,
            })),
        )
        .await;
        expect_success(
            Method::POST,
            &format!("database/roles/{DB_ROLE}"),
            Some(&json!({
                "db_name": DB_CONNECTION,
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "default_ttl": "1h",
                "max_ttl": "24h",
            })),
        )
        .await;
    })
    .await;
    format!("database/creds/{DB_ROLE}")
}

/// Reads new database credentials: a renewable lease. Returns `(lease_id, lease_duration_secs)`.
pub async fn new_database_lease() -> (String, u64) {
    let creds_path = database_lease_role().await;
    let body = expect_success(Method::GET, &creds_path, None).await;
    let lease_id = body["lease_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("{creds_path} returned no lease_id: {body}"))
        .to_owned();
    let duration =
        body["lease_duration"].as_u64().unwrap_or_else(|| panic!("{creds_path} returned no lease_duration: {body}"));
    (lease_id, duration)
}

/// Issues a certificate from a PKI role with `generate_lease=true` and returns its
/// lease id: a lease that exists but is not renewable (renewing it answers 400).
/// Enables `pki` with a root CA and the role once per Vault server.
pub async fn pki_nonrenewable_lease() -> String {
    once_per_vault_server("pki engine", || async {
        enable("sys/mounts/pki", json!({ "type": "pki", "config": { "max_lease_ttl": "87600h" } })).await;
        expect_success(
            Method::POST,
            "pki/root/generate/internal",
            Some(&json!({ "common_name": "onex-test-root-ca", "ttl": "87600h" })),
        )
        .await;
        expect_success(
            Method::POST,
            &format!("pki/roles/{PKI_ROLE}"),
            Some(&json!({
                "allow_any_name": true,
                "enforce_hostnames": false,
                "generate_lease": true,
                "ttl": "1h",
                "max_ttl": "24h",
            })),
        )
        .await;
    })
    .await;

    let body = expect_success(
        Method::POST,
        &format!("pki/issue/{PKI_ROLE}"),
        Some(&json!({ "common_name": "onex-test.example", "ttl": "1h" })),
    )
    .await;
    body["lease_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("PKI issue returned no lease_id: {body}"))
        .to_owned()
}

/// `PUT sys/leases/lookup`: the lease's `id`, `ttl`, `renewable`, `expire_time`, ...
pub async fn lease_lookup(lease_id: &str) -> Value {
    let body = expect_success(Method::PUT, "sys/leases/lookup", Some(&json!({ "lease_id": lease_id }))).await;
    body["data"].clone()
}

/// `PUT sys/leases/renew`, returning Vault's raw answer (200 with `lease_duration`
/// on success; 400 "lease is not renewable" for a PKI lease).
pub async fn renew_lease(lease_id: &str, increment_secs: Option<u64>) -> VaultResponse {
    let mut body = json!({ "lease_id": lease_id });
    if let Some(increment) = increment_secs {
        body["increment"] = json!(increment);
    }
    request(Method::PUT, "sys/leases/renew", Some(&body)).await
}

/// A renewable database lease from a role with short TTLs (e.g. "3s" and "9s"),
/// for tests of lease keep-alive. Returns `(lease_id, lease_duration_secs)`.
pub async fn short_database_lease(default_ttl: &str, max_ttl: &str) -> (String, u64) {
    database_lease_role().await;
    let role = format!("short-{}-{}", default_ttl, max_ttl);
    expect_success(
        Method::POST,
        &format!("database/roles/{role}"),
        Some(&json!({
            "db_name": DB_CONNECTION,
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": default_ttl,
            "max_ttl": max_ttl,
        })),
    )
    .await;
    let body = expect_success(Method::GET, &format!("database/creds/{role}"), None).await;
    let lease_id = body["lease_id"].as_str().unwrap_or_else(|| panic!("no lease_id: {body}")).to_owned();
    let duration = body["lease_duration"].as_u64().unwrap_or_else(|| panic!("no lease_duration: {body}"));
    (lease_id, duration)
}

/// When Vault says `lease_id` expires (`sys/leases/lookup`'s `expire_time`).
pub async fn lease_expire_time(lease_id: &str) -> chrono::DateTime<chrono::Utc> {
    let lease = lease_lookup(lease_id).await;
    let text = lease["expire_time"].as_str().unwrap_or_else(|| panic!("no expire_time for the lease: {lease}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("expire_time {text:?}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Polls Vault until `lease_id` was renewed: its `expire_time` later than
/// `expires`. Fails if the lease reaches `expires` first (it would have run
/// out) or Vault stops knowing it. Returns the new expiry.
pub async fn wait_for_lease_renewal(
    lease_id: &str,
    expires: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    loop {
        let response = request(Method::PUT, "sys/leases/lookup", Some(&json!({ "lease_id": lease_id }))).await;
        assert!(response.is_success(), "the lease is gone before it was renewed: {}", response.errors());
        let now = chrono::Utc::now();
        if let Some(seen) = response.body["data"]["expire_time"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
        {
            if seen > expires + chrono::TimeDelta::milliseconds(500) {
                return seen;
            }
        }
        assert!(now < expires, "the lease was not renewed before it would have expired at {expires}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
