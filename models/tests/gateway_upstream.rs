//! Signed gateway envelopes against the real upstream packages: omnibase-core's
//! `hash_canonical_json` and `ModelMessageEnvelope`, omnibase-infra's
//! `ServiceEnvelopeSigner` and `ServiceEnvelopeValidator`, driven through
//! `tests/gateway/upstream.py` with the Python in `ONEX_UPSTREAM_PYTHON`
//! (written to `.venv/servers.env` by `scripts/install-test-servers.sh`).

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use onex_vault_models::{
    canonical_json, canonical_json_text, payload_hash, payload_hash_text, EmitterIdentity, GatewayRefusal, RuntimeKey,
    RuntimeSigner, SignedEnvelope,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// RFC 8032, section 7.1, test 1.
const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RUNTIME: &str = "runtime-dev-001";

/// The upstream venv's Python: `ONEX_UPSTREAM_PYTHON`, else the line of
/// `servers.env` that `scripts/install-test-servers.sh` writes (in
/// `$ONEX_TOOLS_DIR`, else the workspace's `.venv`), as the node's test
/// harness reads it.
fn upstream_python() -> Option<String> {
    std::env::var("ONEX_UPSTREAM_PYTHON").ok().filter(|v| !v.is_empty()).or_else(|| {
        let tools = std::env::var("ONEX_TOOLS_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv").to_owned());
        let text = std::fs::read_to_string(format!("{tools}/servers.env")).ok()?;
        text.lines()
            .filter_map(|line| line.trim().strip_prefix("export ONEX_UPSTREAM_PYTHON="))
            .map(|value| value.trim().trim_matches('\'').to_owned())
            .next()
    })
}

fn upstream(request: Value) -> Value {
    let python = upstream_python().unwrap_or_else(|| {
        panic!(
            "ONEX_UPSTREAM_PYTHON is not set and .venv/servers.env does not name it: run \
             scripts/install-test-servers.sh (it installs omnibase-core and omnibase-infra in .venv-onex)"
        )
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway/upstream.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write request");
    let output = child.wait_with_output().expect("upstream.py");
    assert!(output.status.success(), "upstream.py failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("upstream.py answers JSON")
}

fn seed() -> Vec<u8> {
    (0..64).step_by(2).map(|i| u8::from_str_radix(&RFC8032_SEED[i..i + 2], 16).expect("hex")).collect()
}

fn rfc_signer(runtime_id: &str) -> RuntimeSigner {
    RuntimeSigner::from_seed_base64("dev", runtime_id, &STANDARD.encode(seed())).expect("key")
}

/// JSON texts, and whether serde_json reads each exactly as Python does (so
/// that `canonical_json` of the `Value` must match too).
const CORPUS: &[(&str, bool)] = &[
    (r#"{"name":"é中😀","sep":"\u2028","raw":"caf\u00e9 \ud83d\ude00"}"#, true),
    (r#"{"ctl":"\u0000\u0001\u001f\u007f\b\f\n\r\t","q":"\"quoted\" \\ back\/slash"}"#, true),
    (r#"{"b":1,"a":2,"B":3,"A":4,"é":5,"e":6,"z":{"y":{"x":[3,2,1]},"w":null},"中":7,"😀":8,"\uffff":9}"#, true),
    (r#"{"f":[0.1,1e-05,1e16,1e15,123456789.123,-0.0,5e-324,1.7976931348623157e308,30.0,1E2]}"#, true),
    (r#"{"f":[0.0001,0.00001,1.5e300,2.5,100.0,1e22,1e23,0.30000000000000004,9999999999999998.0]}"#, true),
    (r#"{"i":[0,-1,9007199254740992,9223372036854775807,-9223372036854775808,18446744073709551615]}"#, true),
    (r#"{"t":true,"f":false,"n":null,"o":{},"l":[],"s":""}"#, true),
    (r#"{"nested":{"l":[{"b":[],"a":{}},[[[]]],"x"]}}"#, true),
    (r#"{"dup":1,"dup":2}"#, true),
    (
        r#"  {  "ws" : [ 1 ,	2 ]
     }  "#,
        true,
    ),
    (r#"[1,"top-level list",{"k":"v"}]"#, true),
    // serde_json reads these differently from Python: `-0` as a float,
    // integers beyond 64 bits as floats, and (without its float_roundtrip
    // feature) some floats one ulp off: not only 16-17 digit ones, also
    // short ones with a large exponent (`-1.5e-300`).
    (r#"{"negzero":-0}"#, false),
    (r#"{"big":18446744073709551616,"neg":-9223372036854775809,"huge":123456789012345678901234567890}"#, false),
    (r#"{"f":[0.9999999999999999,1234.5678901234567,98.17329659644331,1.2345678901234567e-7,-1.5e-300]}"#, false),
];

#[test]
fn canonical_json_and_hash_match_upstream() {
    let answer = upstream(json!({"hash": CORPUS.iter().map(|(text, _)| *text).collect::<Vec<_>>()}));
    let hashes = answer["hash"].as_array().expect("hashes");
    assert_eq!(hashes.len(), CORPUS.len());
    for ((text, exact_in_value), upstream) in CORPUS.iter().zip(hashes) {
        let expected = upstream["canonical"].as_str().expect("canonical");
        let expected_hash = upstream["hash"].as_str().expect("hash");
        assert_eq!(canonical_json_text(text).as_deref(), Ok(expected), "canonical text of {text}");
        assert_eq!(payload_hash_text(text).as_deref(), Ok(expected_hash), "hash of text {text}");
        let value: Value = serde_json::from_str(text).expect("serde_json reads the corpus");
        if *exact_in_value {
            assert_eq!(canonical_json(&value), expected, "canonical value of {text}");
            assert_eq!(payload_hash(&value), expected_hash, "hash of value {text}");
        } else {
            eprintln!(
                "from a serde_json::Value, {text} canonicalizes to {} (upstream: {expected})",
                canonical_json(&value)
            );
        }
    }
}

#[test]
fn upstream_signed_envelopes_verify_in_rust() {
    let payloads = [
        json!({"envelope_id": Uuid::new_v4(), "payload": {"operation": "get_secret", "path": "app/db"}, "n": 2.5}),
        json!({"name": "é中😀\u{2028}", "nested": {"b": [1, 2.0, null, true], "a": {}}}),
    ];
    // Numbers serde_json does not read as Python does: only the text path verifies.
    let lossy = r#"{"ratio":0.9999999999999999,"big":18446744073709551616,"zero":-0}"#;
    let mut texts: Vec<String> = payloads.iter().map(Value::to_string).collect();
    texts.push(lossy.to_owned());
    let trace = Uuid::new_v4();
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            json!({"seed_hex": RFC8032_SEED, "realm": "dev", "runtime_id": RUNTIME, "bus_id": "kafka-cluster-a",
                   "trace_id": trace, "payload_text": text})
        })
        .collect();
    let answer = upstream(json!({"sign": requests}));
    let signed = answer["sign"].as_array().expect("signed");
    let signer = rfc_signer(RUNTIME);
    let keys = |id: &str| if id == RUNTIME { vec![signer.public_key()] } else { vec![] };

    for (i, record) in signed.iter().enumerate() {
        let record = record.as_str().expect("record text");
        let envelope: SignedEnvelope = serde_json::from_str(record).unwrap_or_else(|e| panic!("{e}: {record}"));
        assert!(SignedEnvelope::looks_signed(&serde_json::from_str(record).expect("json")), "{record}");
        assert_eq!(envelope.trace_id, trace);
        assert_eq!(envelope.verify_received(record, "dev", keys), Ok(()), "{record}");
        assert_eq!(envelope.verify_received(record, "prod", keys), Err(GatewayRefusal::RealmMismatch));
        assert_eq!(envelope.verify_received(record, "dev", |_| vec![]), Err(GatewayRefusal::UnknownSigner));
        if i < payloads.len() {
            assert_eq!(envelope.payload, payloads[i]);
            assert_eq!(envelope.verify("dev", keys), Ok(()), "{record}");
            // Ed25519 is deterministic: the same signature as Rust's.
            let ours = signer.sign(payloads[i].clone(), "kafka-cluster-a", trace, None);
            assert_eq!(ours.signature, envelope.signature);

            let mut tampered: Value = serde_json::from_str(record).expect("json");
            tampered["payload"]["tampered"] = json!(true);
            let tampered_text = tampered.to_string();
            let read: SignedEnvelope = serde_json::from_str(&tampered_text).expect("read");
            assert_eq!(read.verify_received(&tampered_text, "dev", keys), Err(GatewayRefusal::HashMismatch));
            assert_eq!(read.verify("dev", keys), Err(GatewayRefusal::HashMismatch));
        } else {
            assert_eq!(envelope.verify("dev", keys), Err(GatewayRefusal::HashMismatch), "serde_json became exact?");
            assert_eq!(Some(envelope.signature.payload_hash.clone()), payload_hash_text(lossy).ok());
        }
    }
}

#[test]
fn rust_signed_envelopes_validate_upstream() {
    let signer = rfc_signer(RUNTIME);
    let payload = json!({"envelope_id": Uuid::new_v4(), "payload": {"operation": "get_secret", "path": "app/é/中/😀"},
                         "f": [0.1, 1e-5, 1e16, -0.0, 1.5e300, 30.0], "i": [u64::MAX, i64::MIN]});
    let mut plain = signer.sign(payload.clone(), "kafka-cluster-a", Uuid::new_v4(), None);
    plain.emitted_at = "2026-11-29T15:00:00Z".parse().expect("time");
    let mut full = signer.sign(json!({"k": "v"}), "kafka-cluster-a", Uuid::new_v4(), Some(Uuid::new_v4()));
    full.tenant_id = Some("tenant-a".into());
    full.emitter_identity = Some(EmitterIdentity {
        env: "dev".into(),
        service: "omnibase".into(),
        node_name: "node_infrastructure_vault_adapter_effect".into(),
        version: "v1".into(),
    });
    let mut tampered = plain.clone();
    tampered.payload["payload"]["path"] = json!("app/other");
    let stranger = rfc_signer("runtime-dev-002").sign(payload.clone(), "kafka-cluster-a", Uuid::new_v4(), None);
    let mut forged = plain.clone();
    forged.signature.signature = RuntimeSigner::generate("dev", RUNTIME)
        .expect("key")
        .sign(payload.clone(), "bus", Uuid::nil(), None)
        .signature
        .signature;

    let public = signer.public_key_base64();
    let cases: [(&str, &SignedEnvelope, &str, Option<&str>); 6] = [
        ("plain", &plain, "dev", None),
        ("full", &full, "dev", None),
        ("tampered", &tampered, "dev", Some("HASH_MISMATCH")),
        ("another runtime", &stranger, "dev", Some("UNKNOWN_SIGNER")),
        ("forged", &forged, "dev", Some("INVALID_SIGNATURE")),
        ("other realm", &plain, "prod", Some("REALM_MISMATCH")),
    ];
    let records: Vec<String> = cases.iter().map(|(_, e, _, _)| serde_json::to_string(e).expect("json")).collect();
    let requests: Vec<Value> = cases
        .iter()
        .zip(&records)
        .map(|((_, _, realm, _), record)| {
            json!({"record": record, "expected_realm": realm, "public_keys": {RUNTIME: public}})
        })
        .collect();
    let answer = upstream(json!({"validate": requests}));
    let results = answer["validate"].as_array().expect("results");

    for (((name, envelope, realm, code), record), result) in cases.iter().zip(&records).zip(results) {
        assert_eq!(result["parsed"], json!(true), "{name}: upstream model refused {record}: {result}");
        assert_eq!(result["json_mode_parsed"], json!(true), "{name}: model_validate_json refused {record}: {result}");
        // Upstream reads emitted_at as the same instant.
        let upstream_time: chrono::DateTime<chrono::Utc> =
            result["emitted_at"].as_str().expect("emitted_at").parse().expect("isoformat");
        assert_eq!(upstream_time, envelope.emitted_at, "{name}");
        match code {
            None => assert_eq!(result["is_valid"], json!(true), "{name}: {result}"),
            Some(code) => {
                assert_eq!(result["is_valid"], json!(false), "{name}: {result}");
                assert_eq!(result["error_code"], json!(code), "{name}: {result}");
                // Rust refuses it the same way.
                let key = RuntimeKey::from_base64(&public).expect("key");
                let refusal = envelope.verify(realm, |id| if id == RUNTIME { vec![key.clone()] } else { vec![] });
                assert_eq!(refusal.map_err(|r| r.code()), Err(*code), "{name}");
            }
        }
    }
    assert!(records[0].contains(r#""emitted_at":"2026-11-29T15:00:00Z""#), "{}", records[0]);
}
