//! Vault namespaces against OpenBao 2.7 (`bao server -dev`), driven over
//! Kafka: a node living in a namespace (AppRole inside it), and requests that
//! name a child namespace, granted per requester, refused when hostile, and
//! cached apart.
//!
//! What OpenBao 2.7.2 does, checked by hand against `bao server -dev` (root
//! token) before these tests were written:
//! - `bao namespace create team-a`, then `bao namespace create -namespace=team-a app`
//!   make `team-a/` and `team-a/app/`; a kv-v2 mount is enabled inside one
//!   with `bao secrets enable -namespace=team-a/app -path=secret kv-v2`
//!   (API: `POST sys/namespaces/NAME` and `POST sys/mounts/secret` with
//!   the parent's / the namespace's `X-Vault-Namespace`).
//! - A namespace is reached three equivalent ways: header
//!   `X-Vault-Namespace: team-a/app` + `secret/data/x`; no header +
//!   `team-a/app/secret/data/x`; header `team-a` + `app/secret/data/x`. The
//!   root namespace's `secret/` is another mount (the secret is not there).
//! - AppRole inside a namespace: `auth/approle` enabled with header `team-a`;
//!   login works with header `team-a` (or path `team-a/auth/approle/login`),
//!   and is refused (403) without it. Its token (`s.` prefix, accessor
//!   suffixed with the namespace id) works in `team-a` and in every child of
//!   it, and not in the root (403).
//! - Policies: a token of `team-a` reaches `team-a/app` only when a policy of
//!   `team-a` grants the child's paths prefixed (`app/secret/*`); with only
//!   `secret/*` the same token gets 403 in `team-a/app`. `auth/token/lookup-self`
//!   and `renew-self` answer in `team-a` and in its children alike.
//! - Spellings: OpenBao reads `/team-a`, `team-a/` and `team-a//app` as
//!   `team-a` and `team-a/app`, `/` as the root; `../x`, `sys`, unknown names
//!   are "namespace not found"; creating `sys`, `audit` or `root` is refused
//!   as reserved; `a.b` is allowed. The node accepts one spelling only (see
//!   `onex_vault_models::Namespace`).
//!
//! `hashicorp/vault` (the container stack) has no namespaces: there these
//! tests say so and stop; on OpenBao they must pass.

mod support;

use onex_vault_models::{RuntimeIdentity, RuntimeSigner};
use reqwest::Method;
use serde_json::{json, Value};
use support::bus::{Record, ReplyWatcher};
use support::node::{policy_entry, Node, NodeOptions, Requester, NODE_REALM, REPLY_WAIT};
use support::servers::Stack;
use support::{servers, vault};
use uuid::Uuid;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// Creates `name` in `parent`; `None` (the test stops) only on a stack
/// whose Vault has no namespaces.
async fn namespace(parent: &str, name: &str) -> Option<String> {
    let created = vault::create_namespace(parent, name).await;
    if created.is_none() {
        assert_eq!(servers().stack(), Stack::Containers, "OpenBao answered 404 to creating a namespace");
        eprintln!("skipped: {} has no Vault namespaces", servers().stack_name());
    }
    created
}

/// Asserts Vault answered 2xx; returns the body.
fn ok(response: vault::VaultResponse, what: &str) -> Value {
    assert!(response.is_success(), "{what}: {} {}", response.status, response.errors());
    response.body
}

/// A kv-v2 engine at `secret/` inside `namespace`.
async fn enable_kv2_in(namespace: &str) {
    let body = json!({"type": "kv", "options": {"version": "2"}});
    ok(vault::request_in(namespace, Method::POST, "sys/mounts/secret", Some(&body)).await, "enable kv-v2");
}

async fn write_in(namespace: &str, path: &str, data: Value) {
    let body = json!({ "data": data });
    ok(vault::request_in(namespace, Method::POST, &format!("secret/data/{path}"), Some(&body)).await, "write");
}

/// The secret's data read straight from OpenBao in `namespace` (`""`: the
/// root); `None` when it is not there.
async fn read_in(namespace: &str, path: &str) -> Option<Value> {
    let response = vault::request_in(namespace, Method::GET, &format!("secret/data/{path}"), None).await;
    response.is_success().then(|| response.body["data"]["data"].clone())
}

async fn policy_in(namespace: &str, name: &str, hcl: &str) {
    let body = json!({ "policy": hcl });
    ok(vault::request_in(namespace, Method::PUT, &format!("sys/policies/acl/{name}"), Some(&body)).await, "policy");
}

fn audit_watcher(node: &Node) -> ReplyWatcher {
    ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.audit))
}

/// The audit record of the request with `correlation_id`.
async fn audit_of(audit: &ReplyWatcher, correlation_id: &str) -> Value {
    let id = correlation_id.to_owned();
    let record: Record =
        audit.wait_for(move |r| r.correlation_id() == Some(id.as_str()), REPLY_WAIT).await.expect("an audit record");
    record.json.expect("JSON audit record")["payload"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_a_namespace_logs_in_and_serves_kv_there() {
    let Some(ns) = namespace("", &unique("tenant")).await else { return };
    enable_kv2_in(&ns).await;
    policy_in(&ns, "node", r#"path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#)
        .await;
    let approle = json!({"type": "approle"});
    ok(vault::request_in(&ns, Method::POST, "sys/auth/approle", Some(&approle)).await, "enable approle");
    let role = json!({"token_policies": ["node"], "token_ttl": "1h"});
    ok(vault::request_in(&ns, Method::POST, "auth/approle/role/node", Some(&role)).await, "role");
    let role_id = ok(vault::request_in(&ns, Method::GET, "auth/approle/role/node/role-id", None).await, "role-id")
        ["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let secret_id = ok(vault::request_in(&ns, Method::POST, "auth/approle/role/node/secret-id", None).await, "id")
        ["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    // The AppRole lives only in the namespace: the root refuses its login.
    let at_root = vault::request_in(
        "",
        Method::POST,
        "auth/approle/login",
        Some(&json!({"role_id": role_id, "secret_id": secret_id})),
    )
    .await;
    assert!(!at_root.is_success(), "an AppRole of {ns} logged in at the root: {}", at_root.body);

    let base = unique("e2e");
    write_in(&ns, &format!("{base}/direct"), json!({"v": "in-namespace"})).await;
    vault::write_kv("secret", &format!("{base}/direct"), &json!({"v": "in-root"})).await;

    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_NAMESPACE", &ns)
            .env("VAULT_AUTH_METHOD", "approle")
            .env("VAULT_ROLE_ID", &role_id)
            .env("VAULT_SECRET_ID", &secret_id),
    )
    .await;
    let requester = node.requester();
    let audit = audit_watcher(&node);

    // get: the namespace's value, not the root's at the same path.
    let envelope = Requester::envelope(json!({"operation": "get_secret", "path": format!("{base}/direct")}));
    let got = requester.send(&envelope).await.json.expect("JSON reply")["payload"].clone();
    assert_eq!(got["result"]["data"], json!({"v": "in-namespace"}), "{got}");
    let record = audit_of(&audit, envelope["correlation_id"].as_str().expect("id")).await;
    assert_eq!(record["namespace"], ns.as_str(), "the audit record names the namespace: {record}");

    // set: lands in the namespace and nowhere in the root.
    let set = requester
        .call(json!({"operation": "set_secret", "path": format!("{base}/written"), "data": {"v": "by-the-node"}}))
        .await;
    assert_eq!(set["status"], "success", "{set}");
    assert_eq!(read_in(&ns, &format!("{base}/written")).await, Some(json!({"v": "by-the-node"})));
    assert_eq!(read_in("", &format!("{base}/written")).await, None, "written to the root namespace");
    assert_eq!(vault::read_kv("secret", &format!("{base}/direct")).await, Some(json!({"v": "in-root"})));

    // list: the namespace's folder.
    let listed = requester.call(json!({"operation": "list_secrets", "path": format!("{base}/")})).await;
    assert_eq!(listed["result"]["keys"], json!(["direct", "written"]), "{listed}");

    // The node's own token is the namespace's AppRole token.
    let token = requester.call(json!({"operation": "lookup_token"})).await;
    let policies = token["result"]["policies"].as_array().cloned().unwrap_or_default();
    assert!(policies.contains(&json!("node")), "{token}");
    let log = node.log();
    assert!(!log.contains(&secret_id) && !log.contains(&role_id), "AppRole credentials in the log");
}

/// A requester runtime with its signer, as the access policy lists it.
struct Runtime {
    identity: RuntimeIdentity,
    signer: RuntimeSigner,
}

impl Runtime {
    fn new(name: &str) -> Runtime {
        let identity = RuntimeIdentity::generate(name, "t1").expect("keys");
        let signer = identity.signer(NODE_REALM).expect("signer");
        Runtime { identity, signer }
    }

    /// Its `access_policy.requesters` entry; `namespaces: None` leaves the field out.
    fn entry(&self, namespaces: Option<Value>) -> Value {
        let grants =
            json!([{"operations": ["get_secret", "set_secret", "list_secrets", "renew_token"], "paths": ["**"]}]);
        let mut entry = policy_entry(&self.identity, grants);
        entry["clear_delivery"] = true.into();
        if let Some(namespaces) = namespaces {
            entry["namespaces"] = namespaces;
        }
        entry
    }

    /// Sends `payload` signed as this runtime; the reply's payload and the
    /// correlation id.
    async fn call(&self, requester: &Requester, payload: Value) -> (Value, String) {
        let correlation = Uuid::new_v4();
        let envelope = json!({
            "envelope_id": Uuid::new_v4(),
            "envelope_timestamp": chrono::Utc::now().to_rfc3339(),
            "correlation_id": correlation,
            "source_tool": self.identity.runtime_id,
            "payload": payload,
        });
        let signed =
            self.signer.sign_text(&envelope.to_string(), "default", correlation, None).expect("a signed envelope");
        let id = correlation.to_string();
        requester.send_raw(Some(id.as_bytes()), signed.as_bytes()).await;
        let reply = requester.reply_to(&id).await;
        (reply.json.expect("JSON reply")["payload"].clone(), id)
    }
}

fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_name_child_namespaces_granted_per_requester_and_cached_apart() {
    let Some(ns) = namespace("", &unique("tenants")).await else { return };
    let app = namespace(&ns, "app").await.expect("a child namespace");
    let billing = namespace(&ns, "billing").await.expect("a child namespace");
    for namespace in [&ns, &app, &billing] {
        enable_kv2_in(namespace).await;
    }
    // The node's token is one of its own namespace; a policy there grants
    // the children's paths by prefix (without it the token gets 403 there).
    let all = r#"capabilities = ["create", "read", "update", "delete", "list"]"#;
    let hcl = format!(
        "path \"secret/*\" {{ {all} }}\npath \"app/secret/*\" {{ {all} }}\npath \"billing/secret/*\" {{ {all} }}"
    );
    policy_in(&ns, "node", &hcl).await;
    let token = json!({"policies": ["node"], "ttl": "1h"});
    let created = ok(vault::request_in(&ns, Method::POST, "auth/token/create", Some(&token)).await, "token");
    let token = created["auth"]["client_token"].as_str().expect("client_token").to_owned();

    let tenant = Runtime::new("node_tenant_app");
    let other = Runtime::new("node_other");
    let ops = Runtime::new("node_ops");
    let requesters = vec![tenant.entry(Some(json!(["app"]))), other.entry(None), ops.entry(Some(json!(["", "*"])))];
    let node = Node::start_with(
        NodeOptions::default()
            .strict(requesters)
            .env("VAULT_TOKEN", &token)
            .env("VAULT_NAMESPACE", &ns)
            .env("ONEX_READ_CACHE", "true")
            .edit(|contract| contract["security"]["default_delivery"] = "clear".into()),
    )
    .await;
    let requester = node.requester();
    let audit = audit_watcher(&node);

    // Granted `app`: writes and reads in ns/app, and only there.
    let (set, id) = tenant
        .call(
            &requester,
            json!({"operation": "set_secret", "namespace": "app", "path": "cfg/db", "data": {"v": "tenant-value"}}),
        )
        .await;
    assert_eq!(set["status"], "success", "{set}");
    assert_eq!(read_in(&app, "cfg/db").await, Some(json!({"v": "tenant-value"})));
    assert_eq!(read_in(&ns, "cfg/db").await, None, "written to the node's own namespace");
    let record = audit_of(&audit, &id).await;
    assert_eq!(record["namespace"], app.as_str(), "{record}");
    assert_eq!(record["outcome"], "success", "{record}");
    let (got, _) =
        tenant.call(&requester, json!({"operation": "get_secret", "namespace": "app", "path": "cfg/db"})).await;
    assert_eq!(got["result"]["data"], json!({"v": "tenant-value"}), "{got}");
    let (listed, _) =
        tenant.call(&requester, json!({"operation": "list_secrets", "namespace": "app", "path": "cfg/"})).await;
    assert_eq!(listed["result"]["keys"], json!(["db"]), "{listed}");

    // Not granted: the one denial answer; the audit record says why and where.
    let denials =
        [(&other, Some("app"), app.clone()), (&tenant, None, ns.clone()), (&tenant, Some("billing"), billing.clone())];
    for (who, namespace, full) in denials {
        let mut payload = json!({"operation": "get_secret", "path": "cfg/db"});
        if let Some(namespace) = namespace {
            payload["namespace"] = namespace.into();
        }
        let (denied, id) = who.call(&requester, payload).await;
        assert_eq!(error_code(&denied), "ONEX_CORE_025_PERMISSION_DENIED", "{denied}");
        let message = denied["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("namespace"), "the requester must not learn which check failed: {message}");
        let record = audit_of(&audit, &id).await;
        assert_eq!(record["denial"], "namespace_not_granted", "{record}");
        assert_eq!(record["namespace"], full.as_str(), "{record}");
    }

    // Hostile namespaces: a typed error each, nothing reaches Vault, the node goes on.
    let long = "a".repeat(300);
    let hostile: [Value; 10] = [
        "../x".into(),
        "/".into(),
        long.as_str().into(),
        "sys".into(),
        "app/".into(),
        "/app".into(),
        "app//x".into(),
        "ROOT".into(),
        "".into(),
        json!(7),
    ];
    for namespace in hostile {
        let payload = json!({"operation": "get_secret", "namespace": namespace, "path": "cfg/db"});
        let (refused, _) = tenant.call(&requester, payload).await;
        assert_eq!(error_code(&refused), "ONEX_CORE_007_INVALID_INPUT", "{namespace}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("namespace"), "{namespace}: the error names the field: {message}");
    }
    // The node's own token lives in its own namespace: token operations take none.
    let (refused, _) = tenant.call(&requester, json!({"operation": "renew_token", "namespace": "app"})).await;
    assert_eq!(error_code(&refused), "ONEX_CORE_007_INVALID_INPUT", "{refused}");
    let (still, _) =
        tenant.call(&requester, json!({"operation": "get_secret", "namespace": "app", "path": "cfg/db"})).await;
    assert_eq!(still["result"]["data"], json!({"v": "tenant-value"}), "after the hostile ones: {still}");

    // One path, three namespaces, three values, with the read cache on.
    for (namespace, value) in [(&ns, "own-1"), (&app, "app-1"), (&billing, "billing-1")] {
        write_in(namespace, "shared/cfg", json!({"v": value})).await;
    }
    let read = |namespace: Option<&'static str>| {
        let mut payload = json!({"operation": "get_secret", "path": "shared/cfg"});
        if let Some(namespace) = namespace {
            payload["namespace"] = namespace.into();
        }
        let (ops, requester) = (&ops, &requester);
        async move {
            let (reply, _) = ops.call(requester, payload).await;
            reply["result"]["data"]["v"].as_str().unwrap_or_else(|| panic!("no value: {reply}")).to_owned()
        }
    };
    let spaces = [None, Some("app"), Some("billing")];
    let mut first = Vec::new();
    for namespace in spaces {
        first.push(read(namespace).await);
    }
    assert_eq!(first, ["own-1", "app-1", "billing-1"]);
    // Changed behind the node's back: cached reads still answer, each from
    // its own namespace's entry (so the cache is in play, and keyed apart).
    for (namespace, value) in [(&ns, "own-2"), (&app, "app-2"), (&billing, "billing-2")] {
        write_in(namespace, "shared/cfg", json!({"v": value})).await;
    }
    let mut cached = Vec::new();
    for namespace in spaces {
        cached.push(read(namespace).await);
    }
    assert_eq!(cached, ["own-1", "app-1", "billing-1"], "served from the cache, each namespace its own");
    // A write through the node in `app` drops app's entry only.
    let (set, _) = ops
        .call(
            &requester,
            json!({"operation": "set_secret", "namespace": "app", "path": "shared/cfg", "data": {"v": "app-3"}}),
        )
        .await;
    assert_eq!(set["status"], "success", "{set}");
    let mut after = Vec::new();
    for namespace in spaces {
        after.push(read(namespace).await);
    }
    assert_eq!(after, ["own-1", "app-3", "billing-1"]);
}
