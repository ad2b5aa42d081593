//! `issue_credentials`: dynamic credentials through the node, against real
//! engines. The database engine on the PostgreSQL the tests start: the
//! credential logs in, is kept alive past its TTL, and once revoked through
//! the node is refused by PostgreSQL. PKI: the certificate chains to the
//! engine's CA for the name asked, and its serial is the one reported. A
//! strict node seals the credential to its requester; the reply on the
//! topic never holds it in clear. Wrapped delivery, bounds and reserved
//! mounts.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use onex_vault_client::VaultAdapterClient;
use onex_vault_models::{ErrorCode, RuntimeIdentity};
use serde_json::{json, Map, Value};
use support::bus::ReplyWatcher;
use support::node::{node_trust, policy_entry, Node, NodeOptions, NODE_REALM, REPLY_WAIT};
use support::{servers, vault};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::ServerCertVerifier as _;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Logs in to the test PostgreSQL as `user` with `psql`; `current_user` or
/// psql's complaint.
fn psql_login(user: &str, password: &str) -> Result<String, String> {
    let psql = support::tool_path("ONEX_PG_BINDIR").map_or_else(|| "psql".into(), |dir| dir.join("psql"));
    let output = Command::new(&psql)
        .args(["-w", "-h", "127.0.0.1", "-p", &servers().postgres_port().to_string()])
        .args(["-U", user, "-d", "postgres", "-tAc", "select current_user"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e} (set ONEX_PG_BINDIR)", psql.display()));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A database role of its own for a test, with these TTLs; its creds path
/// under the `database` mount (`creds/<role>`).
async fn database_role(name: &str, default_ttl: &str, max_ttl: &str) -> String {
    vault::database_lease_role().await;
    let created = vault::request(
        reqwest::Method::POST,
        &format!("database/roles/{name}"),
        Some(&json!({
            "db_name": "onex-test-pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": default_ttl,
            "max_ttl": max_ttl,
        })),
    )
    .await;
    assert!(created.is_success(), "database role {name}: {:?}", created.body);
    format!("creds/{name}")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A node logged in with AppRole under the shipped least-privilege policy,
/// so the policy is proven to cover the operation (and nothing is done with
/// the root token).
async fn node_with_shipped_policy() -> Node {
    let policy = unique("adapter-shipped");
    vault::put_policy(&policy, include_str!("../deploy/vault/onex-vault-adapter-policy.hcl")).await;
    let role = unique("ic-node");
    let (role_id, secret_id) = vault::enable_approle_role(&role, &[&policy], "1h").await;
    Node::start_with(
        NodeOptions::default()
            .env("VAULT_AUTH_METHOD", "approle")
            .env("VAULT_ROLE_ID", &role_id)
            .env("VAULT_SECRET_ID", &secret_id),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_credential_logs_in_until_it_is_revoked_through_the_node() {
    let creds = database_role(&unique("ic-db"), "10m", "1h").await;
    let node = node_with_shipped_policy().await;
    let requester = node.requester();

    let issued = requester.call(json!({"operation": "issue_credentials", "mount": "database", "path": creds})).await;
    assert_eq!(issued["status"], "success", "{issued}");
    let result = &issued["result"];
    let user = result["data"]["username"].as_str().expect("a username").to_owned();
    let password = result["data"]["password"].as_str().expect("a password").to_owned();
    let lease_id = result["lease_id"].as_str().expect("a lease id").to_owned();
    assert!(lease_id.starts_with(&format!("database/{creds}/")), "{lease_id}");
    assert_eq!(result["lease_duration"], 600, "{result}");
    assert_eq!(result["renewable"], true);
    assert_eq!(result["kept_alive"], false, "no keep_alive asked");
    assert_eq!(vault::lease_lookup(&lease_id).await["id"], lease_id.as_str(), "Vault knows the lease");

    assert_eq!(psql_login(&user, &password), Ok(user.clone()), "the credential logs in to PostgreSQL");
    assert_eq!(node.metric("onex_vault_adapter_credentials_issued_total").await, 1.0);
    assert_eq!(node.metric("onex_vault_adapter_certificates_issued_total").await, 0.0, "not a certificate");

    let revoked = requester.call(json!({"operation": "revoke_lease", "lease_id": lease_id})).await;
    assert_eq!(revoked["result"]["revoked"], true, "{revoked}");
    let refused = psql_login(&user, &password).expect_err("a revoked credential must not log in");
    assert!(
        refused.contains("authentication failed") || refused.contains("does not exist"),
        "refused for another reason: {refused}"
    );
    let log = node.log();
    assert!(!log.contains(&password), "the password reached the node's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_keeps_a_credential_working_past_its_ttl() {
    let creds = database_role(&unique("ic-short"), "4s", "1h").await;
    let node = node_with_shipped_policy().await;
    let requester = node.requester();

    let issued = requester
        .call(json!({"operation": "issue_credentials", "mount": "database", "path": creds, "keep_alive": true}))
        .await;
    let result = &issued["result"];
    assert_eq!(result["kept_alive"], true, "{issued}");
    assert_eq!(result["lease_duration"], 4);
    let lease_id = result["lease_id"].as_str().expect("a lease id").to_owned();
    let (user, password) = (result["data"]["username"].as_str(), result["data"]["password"].as_str());
    let (user, password) = (user.expect("username").to_owned(), password.expect("password").to_owned());
    let looked_up = requester.call(json!({"operation": "lookup_lease", "lease_id": lease_id})).await;
    assert_eq!(looked_up["result"]["kept_alive"], true, "{looked_up}");

    // Twice its 4 s TTL later the lease lives and the credential logs in.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(vault::lease_lookup(&lease_id).await["ttl"].as_u64().is_some_and(|t| t > 0), "lease not kept alive");
    assert_eq!(psql_login(&user, &password), Ok(user.clone()));

    let revoked = requester.call(json!({"operation": "revoke_lease", "lease_id": lease_id})).await;
    assert_eq!(revoked["result"]["revoked"], true);
    let looked_up = requester.call(json!({"operation": "lookup_lease", "lease_id": lease_id})).await;
    assert_eq!(looked_up["status"], "error", "revoked lease still found: {looked_up}");
    assert!(psql_login(&user, &password).is_err(), "a revoked credential must not log in");
}

/// The issue's "done when": a credential obtained through the node, used
/// against PostgreSQL, kept alive by the lease registry across a clean
/// restart of the node and then the SIGKILL of the group member renewing it;
/// it still logs in after its original TTL has run out several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_credential_survives_a_restart_and_a_failover() {
    const SETTLE: Duration = Duration::from_secs(60);
    let creds = database_role(&unique("ic-ha"), "30s", "1h").await;
    let options = |instance: &str| {
        NodeOptions::default().env("VAULT_TOKEN", servers().root_token()).env("ONEX_INSTANCE_ID", instance)
    };
    let mut first = Node::start_with(options("ha-first")).await;
    first.requester().call(json!({"operation": "list_secrets"})).await;
    let issued = first
        .requester()
        .call(json!({"operation": "issue_credentials", "mount": "database", "path": creds, "keep_alive": true}))
        .await;
    let result = &issued["result"];
    assert_eq!(result["kept_alive"], true, "{issued}");
    let lease_id = result["lease_id"].as_str().expect("a lease id").to_owned();
    let user = result["data"]["username"].as_str().expect("username").to_owned();
    let password = result["data"]["password"].as_str().expect("password").to_owned();
    assert_eq!(psql_login(&user, &password), Ok(user.clone()));

    // Restart: a clean stop, then a new process in the same group.
    first.wait_for_metric("onex_vault_adapter_leases_kept_alive", |n| n == 1.0, SETTLE).await;
    assert_eq!(first.stop(), Some(0));
    let expires = vault::lease_expire_time(&lease_id).await;
    let second = Node::start_with(options("ha-second").join(&first)).await;
    vault::wait_for_lease_renewal(&lease_id, expires).await;
    assert_eq!(psql_login(&user, &password), Ok(user.clone()), "logs in after the restart");

    // Failover: a second member joins, then the one renewing the lease is SIGKILLed.
    let third = Node::start_with(options("ha-third").join(&first)).await;
    let deadline = tokio::time::Instant::now() + SETTLE;
    let second_owns = loop {
        let on_second = second.metric("onex_vault_adapter_lease_registry_partitions").await;
        let on_third = third.metric("onex_vault_adapter_lease_registry_partitions").await;
        let kept_second = second.metric("onex_vault_adapter_leases_kept_alive").await;
        let kept_third = third.metric("onex_vault_adapter_leases_kept_alive").await;
        if on_second > 0.0 && on_third > 0.0 && on_second + on_third == 3.0 && kept_second + kept_third == 1.0 {
            break kept_second == 1.0;
        }
        assert!(tokio::time::Instant::now() < deadline, "partitions not shared: {on_second}+{on_third}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut owner, survivor) = if second_owns { (second, third) } else { (third, second) };
    owner.kill();
    let expires = vault::lease_expire_time(&lease_id).await;
    survivor.wait_for_metric("onex_vault_adapter_leases_kept_alive", |n| n >= 1.0, SETTLE).await;
    vault::wait_for_lease_renewal(&lease_id, expires).await;
    assert_eq!(psql_login(&user, &password), Ok(user.clone()), "logs in after the failover");
    for node in [&owner, &survivor] {
        assert!(!node.log().contains(&password), "the password reached a node's log");
    }
    assert!(!first.log().contains(&password), "the password reached the first node's log");
    drop(owner);
}

/// The serial number of a DER certificate (`Certificate.tbsCertificate.serialNumber`),
/// as Vault writes it: lower-case hex pairs joined by `:`, no leading zero byte.
fn der_serial(der: &[u8]) -> String {
    /// (tag, content, rest) of the DER value at the start of `bytes`.
    fn tlv(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (bytes[0], bytes[1] as usize);
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            (bytes[2..2 + n].iter().fold(0usize, |len, b| len << 8 | *b as usize), 2 + n)
        };
        (tag, &bytes[header..header + len], &bytes[header + len..])
    }
    let (_, certificate, _) = tlv(der);
    let (_, tbs, _) = tlv(certificate);
    let (tag, content, rest) = tlv(tbs);
    // An explicit [0] version comes first in v3 certificates.
    let (tag, serial) = if tag == 0xa0 { (tlv(rest).0, tlv(rest).1) } else { (tag, content) };
    assert_eq!(tag, 0x02, "the serial is an INTEGER");
    let serial = match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    serial.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pki_certificate_is_issued_with_its_lease_and_serial() {
    // Sets up the `pki` engine and its `leased` role (generate_lease: true).
    vault::pki_nonrenewable_lease().await;
    let node = Node::start().await;
    let requester = node.requester();
    let name = "svc.onex-test.example";

    let issued = requester
        .call(json!({"operation": "issue_credentials", "mount": "pki", "path": "issue/leased",
            "parameters": {"common_name": name, "ttl": "10m"}, "keep_alive": true}))
        .await;
    assert_eq!(issued["status"], "success", "{issued}");
    let result = &issued["result"];
    let lease_id = result["lease_id"].as_str().expect("a PKI role with generate_lease has a lease").to_owned();
    assert!(lease_id.starts_with("pki/issue/leased/"), "{lease_id}");
    assert_eq!(result["renewable"], false, "PKI leases are not renewable");
    assert_eq!(result["kept_alive"], false, "a lease that cannot be renewed is not kept alive");
    assert!(result["lease_duration"].as_u64().is_some_and(|d| d > 0 && d <= 600), "{result}");
    let data = &result["data"];
    assert!(data["private_key"].as_str().is_some_and(|k| k.contains("PRIVATE KEY")), "a private key comes with it");

    // The certificate is X.509 that chains to the engine's CA, for the name asked, now.
    let certificate = CertificateDer::from_pem_slice(data["certificate"].as_str().expect("PEM").as_bytes())
        .expect("the certificate is PEM");
    let ca = CertificateDer::from_pem_slice(data["issuing_ca"].as_str().expect("PEM").as_bytes()).expect("CA PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("the CA certificate parses");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("a verifier");
    let server_name = ServerName::try_from(name).expect("a DNS name");
    verifier
        .verify_server_cert(&certificate, &[], &server_name, &[], UnixTime::now())
        .expect("the issued certificate is valid for the name, signed by the PKI engine's CA");
    assert_eq!(data["serial_number"].as_str(), Some(der_serial(&certificate).as_str()), "the serial reported");
    assert_eq!(node.metric("onex_vault_adapter_certificates_issued_total").await, 1.0, "counted as a certificate");

    // Vault's lease is the one reported; revoking it through the node revokes the certificate.
    assert_eq!(vault::lease_lookup(&lease_id).await["renewable"], false);
    let revoked = requester.call(json!({"operation": "revoke_lease", "lease_id": lease_id})).await;
    assert_eq!(revoked["result"]["revoked"], true, "{revoked}");
    let serial = data["serial_number"].as_str().unwrap_or_default();
    let cert = vault::request(reqwest::Method::GET, &format!("pki/cert/{serial}"), None).await;
    assert!(cert.body["data"]["revocation_time"].as_i64().is_some_and(|t| t > 0), "not revoked: {:?}", cert.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_credential_is_left_in_vault_behind_a_single_use_token() {
    let creds = database_role(&unique("ic-wrap"), "10m", "1h").await;
    let node = Node::start().await;
    let requester = node.requester();
    let issued = requester
        .call(json!({"operation": "issue_credentials", "mount": "database", "path": creds, "delivery": "wrapped"}))
        .await;
    let result = &issued["result"];
    assert_eq!(result["delivery"], "wrapped", "{issued}");
    assert!(result.get("data").is_none() && result.get("lease_id").is_none(), "nothing but the token: {result}");
    let token = result["wrap_token"].as_str().expect("a wrapping token");
    let unwrapped = vault::request_with_token(token, reqwest::Method::POST, "sys/wrapping/unwrap", None).await;
    assert!(unwrapped.is_success(), "{:?}", unwrapped.body);
    let inner = &unwrapped.body["data"];
    let (user, password) = (inner["data"]["username"].as_str(), inner["data"]["password"].as_str());
    let (user, password) = (user.expect("username"), password.expect("password"));
    assert_eq!(psql_login(user, password), Ok(user.to_owned()), "the unwrapped credential logs in");
    let lease_id = inner["lease_id"].as_str().expect("the lease inside");
    let again = vault::request_with_token(token, reqwest::Method::POST, "sys/wrapping/unwrap", None).await;
    assert!(!again.is_success(), "a wrapping token unwraps once");
    let revoked = requester.call(json!({"operation": "revoke_lease", "lease_id": lease_id})).await;
    assert_eq!(revoked["result"]["revoked"], true, "{revoked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_or_oversized_requests_never_reach_vault() {
    let node = Node::start().await;
    let requester = node.requester();
    let too_many: Map<String, Value> = (0..33).map(|n| (format!("k{n}"), json!("v"))).collect();
    let huge = json!({"common_name": "x".repeat(20 * 1024)});
    let cases = [
        // Vault's own mounts, nested or not: a token minted by POST auth/token/create.
        json!({"operation": "issue_credentials", "mount": "auth/token", "path": "create", "parameters": {}}),
        json!({"operation": "issue_credentials", "mount": "sys", "path": "leases/lookup"}),
        json!({"operation": "issue_credentials", "mount": "database", "path": "creds/../../sys/seal"}),
        json!({"operation": "issue_credentials", "mount": "database", "path": "creds/app?x=1"}),
        json!({"operation": "issue_credentials", "mount": "pki", "path": "issue/leased", "parameters": too_many}),
        json!({"operation": "issue_credentials", "mount": "pki", "path": "issue/leased", "parameters": huge}),
        json!({"operation": "issue_credentials", "path": "creds/app"}),
    ];
    for payload in cases {
        let reply = requester.call(payload.clone()).await;
        assert_eq!(reply["status"], "error", "{payload} → {reply}");
        assert_eq!(reply["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{payload} → {reply}");
    }
    // An engine path with no data to give: an error, never an empty success.
    let missing = requester
        .call(json!({"operation": "issue_credentials", "mount": "database", "path": "creds/no-such-role"}))
        .await;
    assert_eq!(missing["status"], "error", "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_node_seals_the_credential_to_the_granted_requester() {
    let creds = database_role(&unique("ic-strict"), "10m", "1h").await;
    let identity = RuntimeIdentity::generate("node_client_credentials", "t1").expect("keys");
    let grants = json!([
        {"operations": ["issue_credentials"], "mounts": ["database"], "paths": [creds]},
        {"operations": ["revoke_lease"], "paths": [format!("database/{creds}/*")]},
    ]);
    let node = Node::start_strict(vec![policy_entry(&identity, grants)], |_| {}).await;
    let completed = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.completed));
    let client = VaultAdapterClient::connect(node.client_settings().identity(identity, NODE_REALM, node_trust()))
        .await
        .expect("client connects");

    let issued = client.issue_credentials("database", &creds, None, false).await.expect("a granted issue");
    let data = issued.data.expose_secret();
    let user = data["username"].as_str().expect("username").to_owned();
    let password = data["password"].as_str().expect("password").to_owned();
    let lease_id = issued.lease_id.clone().expect("a lease");
    assert!(issued.renewable && issued.lease_duration == 600, "{issued:?}");
    assert_eq!(psql_login(&user, &password), Ok(user.clone()));

    // On the topic the reply was sealed: the password never travelled in clear.
    let reply = completed
        .wait_for(|r| r.json.as_ref().is_some_and(|j| j["payload"]["operation"] == "issue_credentials"), REPLY_WAIT)
        .await
        .expect("the completed reply");
    assert_eq!(reply.json.as_ref().map(|j| j["payload"]["result"]["delivery"].clone()), Some(json!("sealed")));
    assert!(!String::from_utf8_lossy(&reply.value).contains(&password), "the password is in the reply in clear");

    // Only the granted role; clear delivery is not the requester's.
    let other = database_role(&unique("ic-other"), "10m", "1h").await;
    let refused = client.issue_credentials("database", &other, None, false).await.expect_err("not granted");
    assert_eq!(refused.code(), Some(ErrorCode::PermissionDenied), "{refused}");

    client.revoke_lease(&lease_id).await.expect("revoke the granted lease");
    assert!(psql_login(&user, &password).is_err(), "a revoked credential must not log in");
}
