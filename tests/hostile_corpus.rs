//! A corpus of hostile records sent to a running strict node, signed by a
//! registered requester runtime (a compromised one, say; records that are not
//! JSON cannot be wrapped in a signed envelope and go as they are, and the
//! wrapped payload is the hostile text byte for byte): every record ends in a typed
//! error reply, plus a dead letter when the record itself is unusable; valid
//! requests sent between them keep succeeding; the node's memory stays bounded.

mod support;

use std::collections::BTreeMap;

use onex_vault_models::RuntimeIdentity;
use serde_json::{json, Value};
use support::bus::{Record, ReplyWatcher};
use support::node::{policy_entry, Node, NODE_REALM, REPLY_WAIT};
use support::{servers, vault};
use uuid::Uuid;

/// The node's `max_record_bytes` in this test.
const MAX_RECORD_BYTES: usize = 8192;

/// One hostile record: what it is, its bytes, and whether it must be dead-lettered.
struct Hostile {
    category: &'static str,
    value: Vec<u8>,
    dead_letter: bool,
}

fn envelope(id: Uuid, payload: Value) -> Value {
    json!({
        "envelope_id": Uuid::new_v4(),
        "envelope_timestamp": chrono::Utc::now().to_rfc3339(),
        "correlation_id": id,
        "source_tool": "node_hostile",
        "payload": payload,
    })
}

/// The corpus, each record answering to `id`.
fn corpus() -> Vec<(Uuid, Hostile)> {
    let mut records: Vec<(Uuid, Hostile)> = Vec::new();
    let mut add = |category: &'static str, dead_letter: bool, make: &dyn Fn(Uuid) -> Vec<u8>| {
        let id = Uuid::new_v4();
        records.push((id, Hostile { category, value: make(id), dead_letter }));
    };
    // Not JSON at all.
    for raw in [
        &b""[..],
        b" ",
        b"{",
        b"[",
        b"}",
        b"nul",
        b"tru",
        b"\x00\x01\x02",
        b"\xff\xfe\xfd",
        b"\xef\xbb\xbf{}",
        b"{'a': 1}",
        b"{\"a\":}",
        b"{\"a\" 1}",
        b"{\"a\":1,}",
        b"[1,2",
        b"\"unterminated",
        b"NaN",
        b"Infinity",
        b"1e99999",
        b"{\"a\":\"\\ud800\"}",
    ] {
        add("not JSON", true, &move |_| raw.to_vec());
    }
    // JSON, but not an object.
    for text in ["[]", "[1,2,3]", "42", "-0", "\"text\"", "null", "true", "false", "[{}]", "1.5e10"] {
        add("not an object", true, &move |_| text.as_bytes().to_vec());
    }
    // Envelopes with a field missing or of the wrong type. Only `payload` is
    // required upstream; without an id, timestamp or sender the strict node
    // answers a denial (it cannot check for replays or find the key).
    for field in ["envelope_id", "envelope_timestamp", "source_tool", "payload"] {
        add("envelope field missing", field == "payload", &move |id| {
            let mut e = envelope(id, json!({"operation": "get_secret", "path": "a"}));
            e.as_object_mut().map(|o| o.remove(field));
            e.to_string().into_bytes()
        });
        for wrong in [json!(7), json!([]), json!({"x": 1}), json!(true)] {
            // The envelope takes any JSON as its payload; a payload that is not
            // a request is answered ONEX_CORE_007_INVALID_INPUT without a dead letter.
            add("envelope field of the wrong type", field != "payload", &move |id| {
                let mut e = envelope(id, json!({"operation": "get_secret", "path": "a"}));
                e[field] = wrong.clone();
                e.to_string().into_bytes()
            });
        }
    }
    for bad in ["", "not-a-uuid", "3f0e8a4c-5d1b-4c8e-9a51-1f2d3c4b5a6", "3f0e8a4c5d1b4c8e9a511f2d3c4b5a60zz"] {
        add("invalid envelope_id", true, &move |id| {
            let mut e = envelope(id, json!({"operation": "get_secret", "path": "a"}));
            e["envelope_id"] = bad.into();
            e.to_string().into_bytes()
        });
    }
    for bad in ["", "yesterday", "2026-13-45T99:99:99Z", "1700000000", "2026-11-22"] {
        add("invalid timestamp", true, &move |id| {
            let mut e = envelope(id, json!({"operation": "get_secret", "path": "a"}));
            e["envelope_timestamp"] = bad.into();
            e.to_string().into_bytes()
        });
    }
    // Unknown operations.
    for operation in [
        json!("drop_database"),
        json!(""),
        json!("GET_SECRET"),
        json!("get_secret\u{0}"),
        json!("get_s\u{435}cret"),
        json!("x".repeat(2000)),
        json!(1),
        json!(null),
        json!(["get_secret"]),
        json!({"name": "get_secret"}),
    ] {
        add("unknown operation", false, &move |id| {
            envelope(id, json!({"operation": operation.clone(), "path": "a"})).to_string().into_bytes()
        });
    }
    // Hostile paths, for reads, writes and lists.
    let paths = [
        "../etc/passwd",
        "/absolute",
        "a//b",
        "a/./b",
        "a/../b",
        "..",
        ".",
        "a/%2e%2e/b",
        "a\\b",
        "a?x=1",
        "a#frag",
        "a*",
        "\u{202e}cod.exe",
        "a\u{0}b",
        "a/\u{7}/b",
        "\u{ff0e}\u{ff0e}/x",
        "a/b/",
        " ",
        "\t",
        "a\nb",
        "a/..",
        "../",
        "a/.../b",
        "~/x",
        "a/b\r",
        "\u{2028}",
        "a\u{85}b",
        "a/\u{feff}b",
        "C:\\x",
        "a%00b",
    ];
    for path in paths {
        // Reads and deletes: a path that turns out valid is simply not found.
        for operation in ["get_secret", "delete_secret"] {
            add("hostile path", false, &move |id| {
                envelope(id, json!({"operation": operation, "path": path})).to_string().into_bytes()
            });
        }
    }
    for folder in ["..", "../x", "/x", "a//b", "a?b", "a#b", "a*", "a\u{0}", "%2e%2e/x", "a\\b"] {
        add("hostile folder", false, &move |id| {
            envelope(id, json!({"operation": "list_secrets", "path": folder})).to_string().into_bytes()
        });
    }
    // (A `source_tool` naming another requester proves nothing: the signing
    // runtime is who asks. Envelopes signed by another runtime, or with the
    // runtime swapped, are refused in tests/security.rs and the conformance suite.)
    // Stale and future timestamps (the replay window), and a past deadline.
    for shift in [-3600, 3600, -86_400 * 365] {
        add("timestamp outside the window", false, &move |id| {
            let mut e = envelope(id, json!({"operation": "get_secret", "path": "hostile/ok"}));
            e["envelope_timestamp"] = (chrono::Utc::now() + chrono::TimeDelta::seconds(shift)).to_rfc3339().into();
            e.to_string().into_bytes()
        });
    }
    add("past deadline", false, &|id| {
        let mut e = envelope(id, json!({"operation": "get_secret", "path": "hostile/ok"}));
        e["envelope_timestamp"] = json!((chrono::Utc::now() - chrono::TimeDelta::seconds(30)).to_rfc3339());
        e["timeout_seconds"] = json!(1);
        e.to_string().into_bytes()
    });
    // Envelope extras of the wrong shape.
    for (field, value) in [
        ("metadata", json!("x")),
        ("metadata", json!({"tags": [1, 2]})),
        ("metadata", json!({"headers": {"a": 1}})),
        ("timeout_seconds", json!("ten")),
        ("parent_envelope_id", json!("nope")),
        ("envelope_version", json!(2)),
        ("envelope_version", json!({"major": "2"})),
        ("priority", json!(11)),
        ("timeout_seconds", json!(-1.0)),
    ] {
        add("envelope extras of the wrong shape", true, &move |id| {
            let mut e = envelope(id, json!({"operation": "get_secret", "path": "hostile/ok"}));
            e[field] = value.clone();
            e.to_string().into_bytes()
        });
    }
    add("hostile path", false, &|id| {
        envelope(id, json!({"operation": "get_secret", "path": "a/".repeat(300)})).to_string().into_bytes()
    });
    add("hostile path", false, &|id| {
        envelope(id, json!({"operation": "get_secret", "path": "x".repeat(600)})).to_string().into_bytes()
    });
    // Wrong payload types and values.
    for (field, value) in [
        ("path", json!(7)),
        ("path", json!(["a"])),
        ("path", json!({"a": 1})),
        ("path", json!(null)),
        ("version", json!("3")),
        ("version", json!(-1)),
        ("version", json!(1.5)),
        ("version", json!(0)),
        ("version", json!(u64::MAX)),
        ("mount", json!("../sys")),
        ("mount", json!("")),
        ("mount", json!(5)),
        ("consistency", json!("eventual")),
        ("delivery", json!("email")),
        ("unexpected", json!(true)),
        ("cas", json!("zero")),
    ] {
        add("wrong payload type", false, &move |id| {
            let mut payload = json!({"operation": "get_secret", "path": "a"});
            payload[field] = value.clone();
            envelope(id, payload).to_string().into_bytes()
        });
    }
    for data in [json!("text"), json!([]), json!({}), json!(null), json!(5)] {
        add("bad secret data", false, &move |id| {
            envelope(id, json!({"operation": "set_secret", "path": "a", "data": data.clone()})).to_string().into_bytes()
        });
    }
    for (operation, payload) in [
        ("delete_secret", json!({"path": "a", "versions": []})),
        ("delete_secret", json!({"path": "a", "destroy": true})),
        ("delete_secret", json!({"path": "a", "all_versions": true, "versions": [1]})),
        ("get_secrets_batch", json!({"paths": []})),
        ("get_secrets_batch", json!({"paths": vec!["a"; 300]})),
        ("get_secrets_batch", json!({"paths": ["a", "../b"]})),
        ("get_secrets_batch", json!({"paths": ["a"], "delivery": "wrapped"})),
        ("renew_lease", json!({"lease_id": ""})),
        ("renew_lease", json!({"lease_id": "x".repeat(2000)})),
        ("renew_lease", json!({"lease_id": "a\u{0}b"})),
        ("lookup_lease", json!({})),
        ("renew_token", json!({"increment_seconds": "soon"})),
    ] {
        add("invalid operation arguments", false, &move |id| {
            let mut payload = payload.clone();
            payload["operation"] = operation.into();
            envelope(id, payload).to_string().into_bytes()
        });
    }
    // Oversized records, just over and far over the limit.
    for size in [MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES * 2, MAX_RECORD_BYTES * 16, 200_000, 900_000] {
        add("oversized record", true, &move |id| {
            let mut e = envelope(id, json!({"operation": "get_secret", "path": "a"}));
            e["metadata"] = json!({"tags": {"pad": "p".repeat(size)}});
            e.to_string().into_bytes()
        });
    }
    // Deep nesting, in the payload and as the record.
    for depth in [129, 1_000, 50_000] {
        add("deep nesting", true, &move |id| {
            let deep = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            format!(
                r#"{{"envelope_id":"{}","envelope_timestamp":"{}","correlation_id":"{id}","source_tool":"x","payload":{{"operation":"get_secret","path":"a","version":{deep}}}}}"#,
                Uuid::new_v4(),
                chrono::Utc::now().to_rfc3339()
            )
            .into_bytes()
        });
    }
    // Duplicate keys: a parser differential under a signature.
    for (from, to) in [
        (r#""path":"a""#, r#""path":"a","path":"../b""#),
        (r#""operation":"get_secret""#, r#""operation":"get_secret","operation":"set_secret""#),
        (r#""source_tool":"node_hostile""#, r#""source_tool":"node_hostile","source_tool":"node_admin""#),
    ] {
        for _ in 0..3 {
            add("duplicate keys", true, &move |id| {
                envelope(id, json!({"operation": "get_secret", "path": "a"}))
                    .to_string()
                    .replacen(from, to, 1)
                    .into_bytes()
            });
        }
    }
    // Huge numbers and strange values where numbers go.
    // Out of f64's range is not JSON to serde_json (dead letter); the others
    // parse as floats where an integer belongs (ONEX_CORE_007_INVALID_INPUT).
    for (number, dead_letter) in
        [("1e309", true), ("18446744073709551616", false), ("-9223372036854775809", false), ("0.0000001e-400", false)]
    {
        add("huge numbers", dead_letter, &move |id| {
            envelope(id, json!({"operation": "get_secret", "path": "a", "version": 1}))
                .to_string()
                .replacen(r#""version":1"#, &format!(r#""version":{number}"#), 1)
                .into_bytes()
        });
    }
    records
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_gets_typed_errors_and_the_node_goes_on() {
    vault::write_kv("secret", "hostile/ok", &json!({"v": "fine"})).await;
    let identity = RuntimeIdentity::generate("node_hostile", "t1").expect("keys");
    let signer = identity.signer(NODE_REALM).expect("signer");
    let grants = json!([{"operations": ["get_secret", "set_secret", "list_secrets", "delete_secret", "get_secrets_batch",
        "renew_lease", "lookup_lease", "revoke_lease", "renew_token"], "paths": ["**"]}]);
    let node = Node::start_strict(vec![policy_entry(&identity, grants)], |c| {
        c["event_bus"]["max_record_bytes"] = (MAX_RECORD_BYTES as u64).into();
        c["security"]["default_delivery"] = "clear".into();
        c["access_policy"]["requesters"][0]["clear_delivery"] = true.into();
    })
    .await;
    let pid = node.pid().expect("the node runs");
    let requester = node.requester();
    let topics = node.topics.clone();
    let dlq = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&topics.dlq));
    let audit = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&topics.audit));
    let send = |value: Vec<u8>, correlation: Uuid| {
        let requester = &requester;
        let signed = std::str::from_utf8(&value)
            .ok()
            .and_then(|text| signer.sign_text(text, "default", correlation, None).ok())
            .map(String::into_bytes);
        async move {
            let id = correlation.to_string();
            let is_signed = signed.is_some();
            let record = signed.unwrap_or(value);
            requester.send_raw_with_headers(Some(id.as_bytes()), &record, &[("correlation_id", &id)]).await;
            is_signed
        }
    };
    let valid = |n: usize| {
        let id = Uuid::new_v4();
        (id, envelope(id, json!({"operation": "get_secret", "path": "hostile/ok"})).to_string().into_bytes(), n)
    };

    // Warm up, then measure memory around the corpus.
    let (id, value, _) = valid(0);
    send(value, id).await;
    requester.reply_to(&id.to_string()).await;
    let rss_before = rss_mb(pid);

    let corpus = corpus();
    assert!(corpus.len() >= 200, "only {} hostile records", corpus.len());
    let mut valid_ids = Vec::new();
    let mut unsigned = std::collections::BTreeSet::new();
    for (n, (id, hostile)) in corpus.iter().enumerate() {
        if !send(hostile.value.clone(), *id).await {
            unsigned.insert(*id);
        }
        if n % 20 == 19 {
            let (id, value, _) = valid(n);
            send(value, id).await;
            valid_ids.push(id);
        }
    }

    // Each record is handled: it gets a typed reply, or (when the node could
    // not verify who sent it: not signed, or refused before its signature
    // could be read, e.g. not JSON or a duplicate key) its dead letter or
    // audit record. Wait for the first of them; which it was is judged below,
    // once later requests were answered.
    for (id, hostile) in &corpus {
        let wanted = id.to_string();
        let is_it = move |r: &Record| r.correlation_id() == Some(wanted.as_str());
        let (completed, failed) = (topics.completed.clone(), topics.failed.clone());
        let reply = requester.watcher.wait_for(
            {
                let is_it = is_it.clone();
                move |r| (r.topic == completed || r.topic == failed) && is_it(r)
            },
            REPLY_WAIT,
        );
        let letter = dlq.wait_for(is_it.clone(), REPLY_WAIT);
        let audited = audit.wait_for(is_it, REPLY_WAIT);
        let first = tokio::select! { r = reply => r, r = letter => r, r = audited => r };
        first.unwrap_or_else(|e| panic!("{}: no reply, dead letter or audit record: {e}", hostile.category));
    }
    for id in &valid_ids {
        let reply = requester.reply_to(&id.to_string()).await;
        let json = reply.json.expect("JSON");
        assert_eq!(json["payload"]["result"]["data"]["v"], "fine", "a valid request between hostile ones: {json}");
    }

    // Every valid request after them was answered, so every output of the
    // corpus has arrived. An answered record got a typed error (and its
    // dead letter if unusable); an unanswered one exactly one output, and
    // every unsigned record was unanswered.
    let is_reply = |r: &Record| r.topic == topics.completed || r.topic == topics.failed;
    let (replies, letters, audits) = (requester.watcher.all_records(), dlq.all_records(), audit.all_records());
    let of = |records: &[Record], id: &str| -> Vec<Record> {
        records.iter().filter(|r| r.correlation_id() == Some(id)).cloned().collect()
    };
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unanswered = 0;
    for (id, hostile) in &corpus {
        let wanted = id.to_string();
        let answers: Vec<Record> = of(&replies, &wanted).into_iter().filter(is_reply).collect();
        let (letter, audited) = (of(&letters, &wanted), of(&audits, &wanted));
        *by_category.entry(hostile.category).or_default() += 1;
        let Some(reply) = answers.first() else {
            unanswered += 1;
            assert_eq!(letter.len() + audited.len(), 1, "{}: unanswered, one output", hostile.category);
            assert_eq!(letter.len(), usize::from(hostile.dead_letter), "{}: dead-lettered", hostile.category);
            continue;
        };
        assert!(!unsigned.contains(id), "{}: an unsigned record was answered", hostile.category);
        let json = reply.json.as_ref().unwrap_or_else(|| panic!("{}: the reply is not JSON", hostile.category));
        let payload = &json["payload"];
        assert_eq!(payload["status"], "error", "{}: {json}", hostile.category);
        let code = payload["error"]["code"].as_str().unwrap_or_default();
        assert!(
            [
                "ONEX_CORE_007_INVALID_INPUT",
                "ONEX_CORE_084_UNSUPPORTED_OPERATION",
                "ONEX_CORE_085_RESOURCE_NOT_FOUND",
                "ONEX_CORE_025_PERMISSION_DENIED",
                "ONEX_CORE_092_TIMEOUT_ERROR"
            ]
            .contains(&code),
            "{}: not a typed refusal: {json}",
            hostile.category
        );
        assert_eq!(letter.len(), usize::from(hostile.dead_letter), "{}: dead-lettered: {json}", hostile.category);
    }
    assert!(unanswered < corpus.len() / 2, "most of the corpus is signed, readable and answered: {unanswered}");

    let rss_after = rss_mb(pid);
    println!(
        "hostile corpus: {} records ({unanswered} unanswered) {by_category:?}; node RSS {rss_before:.1} MB -> {rss_after:.1} MB",
        corpus.len()
    );
    assert!(rss_after - rss_before < 40.0, "the node's memory grew from {rss_before:.1} MB to {rss_after:.1} MB");
    assert!(node.pid().is_some(), "the node is still running");
}
