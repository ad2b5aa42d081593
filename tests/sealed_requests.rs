//! Sealed input (issue 12): secret material a requester sends — `set_secret`
//! data, `encrypt` plaintext — sealed to the node's X25519 key, so the
//! request topic never carries it in clear. Driven through Kafka against the
//! real servers: the client seals, the node opens and writes; the canary is
//! then searched for in every record of the request topic, the node's log,
//! the audit trail and the replies. Boxes cut from one request and pasted
//! into another, sealed to another key, or tampered with are refused and
//! write nothing.

mod support;

use onex_vault_client::VaultAdapterClient;
use onex_vault_models::{
    ErrorCode, InputBinding, RuntimeIdentity, SealedInput, SealedMaterial, SealingPublicKey, SealingSecretKey,
    SecretData,
};
use reqwest::Method;
use serde_json::{json, Map, Value};
use support::bus::{Record, ReplyWatcher};
use support::node::{node_identity, node_trust, policy_entry, Node, NodeOptions, Requester, NODE_REALM, REPLY_WAIT};
use support::{servers, vault};
use uuid::Uuid;

const CANARY: &str = "canary-sealed-input-5e2f91-never-in-clear";
const PLAIN_CANARY: &str = "canary-sealed-plaintext-77ac03";
const TRANSIT_KEY: &str = "sealed-input-test";

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The test nodes' sealing key, as a requester knows it.
fn node_sealing_key() -> SealingPublicKey {
    let sealer = &node_identity().sealer;
    SealingPublicKey::from_base64(sealer.key_id(), &sealer.public_key_base64()).expect("the node's sealing key")
}

fn data(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn copy(identity: &RuntimeIdentity) -> RuntimeIdentity {
    RuntimeIdentity::from_json(&identity.to_json()).expect("the identity reads back")
}

/// Forgets `paths` of the `secret` mount, so a rerun against the same
/// servers starts from nothing.
async fn forget(paths: &[&str]) {
    for path in paths {
        let _ = vault::request(Method::DELETE, &format!("secret/metadata/{path}"), None).await;
    }
}

async fn transit_key() {
    let _ = vault::request(Method::POST, "sys/mounts/transit", Some(&json!({"type": "transit"}))).await;
    let created = vault::request(Method::POST, &format!("transit/keys/{TRANSIT_KEY}"), None).await;
    assert!(created.is_success(), "creating the transit key: {}", created.errors());
}

/// A hand-made request with sealed input: `payload` around `sealed`, in an
/// envelope with `correlation_id`, signed as `who` (unsigned without).
struct Sender<'a> {
    requester: Requester,
    who: Option<&'a RuntimeIdentity>,
}

impl Sender<'_> {
    /// Sends `payload` in an envelope with `correlation_id`; the reply's payload.
    async fn send(&self, payload: Value, correlation_id: Uuid) -> Value {
        let mut envelope = Requester::envelope(payload);
        envelope["correlation_id"] = correlation_id.to_string().into();
        let value = match self.who {
            Some(who) => {
                envelope["source_tool"] = who.runtime_id.clone().into();
                let signer = who.signer(NODE_REALM).expect("signer");
                serde_json::to_value(signer.sign(envelope, "default", correlation_id, None)).expect("JSON")
            }
            None => envelope,
        };
        self.requester.send_raw(None, value.to_string().as_bytes()).await;
        let reply = self.requester.reply_to(&correlation_id.to_string()).await;
        let json = reply.json.expect("a JSON reply");
        // A strict node's reply is a signed wrapper around the envelope.
        let envelope = if json.get("signature").is_some() { json["payload"].clone() } else { json };
        envelope["payload"].clone()
    }

    /// Asserts the reply is the refusal of sealed input, naming `why`.
    async fn refused(&self, payload: Value, correlation_id: Uuid, why: &str) {
        let reply = self.send(payload, correlation_id).await;
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(reply["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{reply}");
        assert_eq!(reply["error"]["retryable"], false, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "expected {why:?} in {message:?}");
    }
}

fn binding(correlation_id: Uuid, requester: &str, operation: &str, target: &str) -> InputBinding {
    InputBinding {
        correlation_id,
        requester: requester.to_owned(),
        operation: operation.to_owned(),
        mount: None,
        target: target.to_owned(),
    }
}

fn sealed_data(key: &SealingPublicKey, binding: &InputBinding, value: &str) -> SealedInput {
    let data = SecretData::new(data(json!({"password": value})));
    key.seal_input(binding, &SealedMaterial::Data(data)).expect("seals")
}

fn set_sealed(path: &str, sealed: &SealedInput) -> Value {
    json!({"operation": "set_secret", "path": path, "sealed_data": sealed})
}

/// Every record's text, concatenated.
fn text_of(records: Vec<Record>) -> String {
    records.iter().map(|r| r.value_str().into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_set_secret_and_encrypt_never_put_the_value_on_the_request_topic() {
    transit_key().await;
    forget(&["sealed/app/db", "sealed/app/other"]).await;
    let identity = RuntimeIdentity::generate("node_sealing_requester", "t1").expect("keys");
    let grants = json!([
        {"operations": ["set_secret", "get_secret"], "paths": ["sealed/**"], "mounts": ["secret"]},
        {"operations": ["encrypt", "decrypt"], "paths": [TRANSIT_KEY], "mounts": ["transit"]},
    ]);
    let mut node = Node::start_strict(vec![policy_entry(&identity, grants)], |_| {}).await;
    let bootstrap = servers().bootstrap_servers();
    let request_topic = ReplyWatcher::start(&bootstrap, std::slice::from_ref(&node.topics.requests));
    let audit = ReplyWatcher::start(&bootstrap, std::slice::from_ref(&node.topics.audit));
    let sender = Sender { requester: node.requester(), who: Some(&identity) };
    let client = VaultAdapterClient::connect(
        node.client_settings()
            .max_attempts(1)
            .identity(copy(&identity), NODE_REALM, node_trust())
            .seal_to_node(node_sealing_key()),
    )
    .await
    .expect("client connects");

    // The client seals; the node opens and writes the value to Vault.
    let written = client.set_secret("sealed/app/db", data(json!({"password": CANARY}))).await.expect("sealed set");
    assert_eq!(written.version, 1);
    assert_eq!(vault::read_kv("secret", "sealed/app/db").await.expect("written")["password"], CANARY);
    // Transit: sealed plaintext in, decrypt (sealed to us) gives it back.
    let encrypted = client.encrypt(TRANSIT_KEY, PLAIN_CANARY.as_bytes()).await.expect("sealed encrypt");
    assert!(encrypted.ciphertext.starts_with("vault:v1:"), "{encrypted:?}");
    let decrypted = client.decrypt(TRANSIT_KEY, &encrypted.ciphertext).await.expect("decrypt");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&decrypted.plaintext), b64(PLAIN_CANARY));

    // Cut from one request and pasted into another: refused, nothing written.
    let me = identity.runtime_id.as_str();
    let key = node_sealing_key();
    let id = Uuid::new_v4();
    let for_db = sealed_data(&key, &binding(id, me, "set_secret", "sealed/app/db"), &format!("{CANARY}-2"));
    sender.refused(set_sealed("sealed/app/other", &for_db), id, "sealed for another path").await;
    let id = Uuid::new_v4();
    let mut on_kv = binding(id, me, "set_secret", "sealed/app/db");
    on_kv.mount = Some("kv".into());
    let for_kv = sealed_data(&key, &on_kv, &format!("{CANARY}-2"));
    sender.refused(set_sealed("sealed/app/db", &for_kv), id, "sealed for another mount").await;
    // A set_secret's box in an encrypt (the same name as target).
    let id = Uuid::new_v4();
    let for_set = sealed_data(&key, &binding(id, me, "set_secret", TRANSIT_KEY), &format!("{CANARY}-2"));
    let pasted = json!({"operation": "encrypt", "key": TRANSIT_KEY, "sealed_plaintext": for_set});
    sender.refused(pasted, id, "sealed for another operation").await;
    // Sealed to another key that claims the node's key id, to another key id,
    // and a changed byte.
    let id = Uuid::new_v4();
    let impostor = SealingSecretKey::generate(node_identity().sealer.key_id()).expect("key");
    let impostor = SealingPublicKey::from_base64(impostor.key_id(), &impostor.public_key_base64()).expect("key");
    let sealed = sealed_data(&impostor, &binding(id, me, "set_secret", "sealed/app/db"), &format!("{CANARY}-2"));
    sender.refused(set_sealed("sealed/app/db", &sealed), id, "cannot be opened").await;
    let id = Uuid::new_v4();
    let mut other_id = sealed_data(&key, &binding(id, me, "set_secret", "sealed/app/db"), &format!("{CANARY}-2"));
    other_id.key_id = "someone-else-seal".into();
    sender.refused(set_sealed("sealed/app/db", &other_id), id, "sealed to key").await;
    let id = Uuid::new_v4();
    let mut tampered = sealed_data(&key, &binding(id, me, "set_secret", "sealed/app/db"), &format!("{CANARY}-2"));
    let mut bytes = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&tampered.ciphertext).expect("base64")
    };
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    tampered.ciphertext = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    sender.refused(set_sealed("sealed/app/db", &tampered), id, "cannot be opened").await;
    // Both the clear and the sealed form: refused before anything is opened.
    let id = Uuid::new_v4();
    let sealed = sealed_data(&key, &binding(id, me, "set_secret", "sealed/app/db"), &format!("{CANARY}-2"));
    let both = json!({"operation": "set_secret", "path": "sealed/app/db", "data": {"x": "y"}, "sealed_data": sealed});
    sender.refused(both, id, "not both").await;

    let stored = vault::read_kv("secret", "sealed/app/db").await.expect("still there");
    assert_eq!(stored["password"], CANARY, "a refused box wrote: {stored}");
    assert!(vault::read_kv("secret", "sealed/app/other").await.is_none(), "a pasted box wrote elsewhere");
    assert_eq!(vault::kv_metadata("secret", "sealed/app/db").await.expect("metadata")["current_version"], 1);

    // Nowhere in clear: the request topic, the log, the audit trail, the replies.
    let sealed_in_topic = request_topic
        .wait_for(|r| r.value_str().contains("sealed_plaintext"), REPLY_WAIT)
        .await
        .expect("the request topic is read");
    assert!(!sealed_in_topic.value_str().contains(&b64(PLAIN_CANARY)));
    let requests = text_of(request_topic.all_records());
    let audit = text_of(audit.all_records());
    let replies = text_of(sender.requester.watcher.all_records());
    node.stop();
    let log = node.log();
    assert!(requests.contains("sealed_data") && requests.contains(&node_identity().sealer.key_id().to_owned()));
    assert!(audit.contains("sealed/app/db") && replies.contains("ONEX_CORE_007_INVALID_INPUT"), "places are real");
    for needle in [CANARY, PLAIN_CANARY, &b64(PLAIN_CANARY)] {
        for (place, text) in
            [("request topic", &requests), ("node log", &log), ("audit trail", &audit), ("replies", &replies)]
        {
            assert!(!text.contains(needle), "{needle} appears in the {place}");
        }
    }
}

/// A box opens only in the request it was sealed for: its correlation id and
/// its requester (the signing runtime) too. Needs `src/runtime.rs` to pass
/// them to the dispatcher (`Dispatcher::handle`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_box_opens_only_for_its_correlation_id_and_requester() {
    forget(&["sealed/bound/db"]).await;
    let identity = RuntimeIdentity::generate("node_sealing_bound", "t1").expect("keys");
    let thief = RuntimeIdentity::generate("node_sealing_thief", "t1").expect("keys");
    let grants = json!([{"operations": ["set_secret"], "paths": ["sealed/bound/**"], "mounts": ["secret"]}]);
    let node =
        Node::start_strict(vec![policy_entry(&identity, grants.clone()), policy_entry(&thief, grants)], |_| {}).await;
    let owner = Sender { requester: node.requester(), who: Some(&identity) };
    let other = Sender { requester: node.requester(), who: Some(&thief) };
    let key = node_sealing_key();
    let me = identity.runtime_id.as_str();

    // Sealed for one call, sent (by its own requester) in another.
    let (sealed_for, sent_in) = (Uuid::new_v4(), Uuid::new_v4());
    let sealed = sealed_data(&key, &binding(sealed_for, me, "set_secret", "sealed/bound/db"), CANARY);
    owner.refused(set_sealed("sealed/bound/db", &sealed), sent_in, "sealed for another request").await;
    // Copied by another requester into its own request, same correlation id.
    let id = Uuid::new_v4();
    let sealed = sealed_data(&key, &binding(id, me, "set_secret", "sealed/bound/db"), CANARY);
    other.refused(set_sealed("sealed/bound/db", &sealed), id, "sealed for another requester").await;
    assert!(vault::read_kv("secret", "sealed/bound/db").await.is_none(), "a box opened in the wrong request");
    // The right request still opens.
    let id = Uuid::new_v4();
    let sealed = sealed_data(&key, &binding(id, me, "set_secret", "sealed/bound/db"), CANARY);
    let reply = owner.send(set_sealed("sealed/bound/db", &sealed), id).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(vault::read_kv("secret", "sealed/bound/db").await.expect("written")["password"], CANARY);
}

/// The dev profile: a node with an identity opens input an unsigned client
/// sealed (bound to its `source_tool`); one without an identity refuses it,
/// saying why, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_profile_opens_sealed_input_with_an_identity_and_refuses_it_without() {
    transit_key().await;
    forget(&["sealed/dev/db", "sealed/dev/none", "sealed/dev/cli"]).await;
    let node = Node::start().await;
    let client = VaultAdapterClient::connect(node.client_settings().max_attempts(1).seal_to_node(node_sealing_key()))
        .await
        .expect("client connects");
    client.set_secret("sealed/dev/db", data(json!({"password": CANARY}))).await.expect("sealed set in dev");
    assert_eq!(vault::read_kv("secret", "sealed/dev/db").await.expect("written")["password"], CANARY);
    let encrypted = client.encrypt(TRANSIT_KEY, PLAIN_CANARY.as_bytes()).await.expect("sealed encrypt in dev");
    let decrypted = client.decrypt(TRANSIT_KEY, &encrypted.ciphertext).await.expect("decrypt (clear in dev)");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&decrypted.plaintext), b64(PLAIN_CANARY));

    // The request CLI seals with --seal-to-node; the request topic never sees the value.
    let watched = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.requests));
    let sealer = &node_identity().sealer;
    let seal_to = format!("{}:{}", sealer.key_id(), sealer.public_key_base64());
    let topics = &node.topics;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .args(["request", "set", "sealed/dev/cli", &format!("password={CANARY}-cli"), "--seal-to-node", &seal_to])
        .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--timeout-seconds", "40"])
        .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed])
        .env_remove("ONEX_IDENTITY_FILE")
        .output()
        .expect("run onex-vault-adapter request");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = vault::read_kv("secret", "sealed/dev/cli").await.expect("written by the CLI");
    assert_eq!(stored["password"], format!("{CANARY}-cli"));
    watched.wait_for(|r| r.value_str().contains("sealed/dev/cli"), REPLY_WAIT).await.expect("the CLI's request");
    let requests = text_of(watched.all_records());
    assert!(requests.contains("sealed_data") && !requests.contains(CANARY), "a value in clear: {requests}");

    let anonymous = Node::start_with(
        NodeOptions::default().env("VAULT_TOKEN", servers().root_token()).env("ONEX_NODE_IDENTITY_FILE", ""),
    )
    .await;
    let client =
        VaultAdapterClient::connect(anonymous.client_settings().max_attempts(1).seal_to_node(node_sealing_key()))
            .await
            .expect("client connects");
    let refused = client.set_secret("sealed/dev/none", data(json!({"password": CANARY}))).await.expect_err("refused");
    assert_eq!(refused.code(), Some(ErrorCode::InvalidInput), "{refused}");
    assert!(refused.to_string().contains("no runtime identity"), "{refused}");
    assert!(vault::read_kv("secret", "sealed/dev/none").await.is_none());
}
