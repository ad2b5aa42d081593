//! The command line as an operator meets it: `check-contract`, `schema`, and
//! start-up failures that say what is wrong and leak nothing.

mod support;

use std::process::{Command, Output};

use support::servers;

fn adapter(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"));
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run onex-vault-adapter")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ENV: &[(&str, &str)] = &[
    ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    ("VAULT_ADDR", "http://127.0.0.1:8200"),
    ("VAULT_TOKEN", "hvs.canary-token-in-env"),
    // The strict profile needs a node identity and a realm; see
    // `the_strict_profile_names_what_it_is_missing`.
    ("ONEX_SECURITY_PROFILE", "dev"),
];

#[test]
fn check_contract_prints_the_resolved_contract_without_secrets() {
    let out = adapter(&["check-contract", "contract.yaml"], ENV);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("bootstrap_servers: 127.0.0.1:9092"), "{printed}");
    assert!(printed.contains("token: <redacted>"), "{printed}");
    assert!(!printed.contains("canary-token") && !text(&out.stderr).contains("canary-token"));
}

#[test]
fn check_contract_fails_closed_naming_the_missing_setting() {
    let out = adapter(&["check-contract"], &[("VAULT_TOKEN", "t")]);
    assert_eq!(out.status.code(), Some(1));
    let errors = text(&out.stderr);
    assert!(errors.contains("vault.address: environment variable VAULT_ADDR is not set"), "{errors}");
    assert!(errors.contains("KAFKA_BOOTSTRAP_SERVERS"), "{errors}");

    let missing_file = adapter(&["check-contract", "no/such/contract.yaml"], ENV);
    assert_eq!(missing_file.status.code(), Some(1));
    assert!(text(&missing_file.stderr).contains("cannot read the file"));
}

#[test]
fn schema_prints_every_message_schema() {
    let out = adapter(&["schema"], &[]);
    assert!(out.status.success());
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for name in ["vault-request", "vault-reply", "vault-dead-letter", "vault-audit", "vault-health", "circuit-breaker"]
    {
        assert!(all[name]["$schema"].is_string(), "{name} missing");
    }
    let one = adapter(&["schema", "vault-request"], &[]);
    let schema: serde_json::Value = serde_json::from_slice(&one.stdout).expect("JSON");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/schemas/vault-request.schema.json"))
            .expect("committed schema"),
    )
    .expect("JSON");
    assert_eq!(schema, committed);
    assert_eq!(adapter(&["schema", "nope"], &[]).status.code(), Some(1));
}

#[test]
fn a_refused_token_stops_start_up_with_a_clear_message() {
    let stack = servers();
    let bootstrap = stack.bootstrap_servers();
    let vault = stack.vault_addr();
    let out = adapter(
        &["run"],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
            ("VAULT_ADDR", &vault),
            ("VAULT_TOKEN", "hvs.canary-wrong-token"),
            ("ONEX_HTTP_PORT", "0"),
            ("ONEX_SECURITY_PROFILE", "dev"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stderr) + &text(&out.stdout);
    assert!(log.contains("login failed (Vault 403)"), "{log}");
    assert!(!log.contains("canary-wrong-token"), "the token leaked: {log}");
}

#[test]
fn the_strict_profile_names_what_it_is_missing() {
    let out = adapter(&["check-contract", "contract.yaml"], &ENV[..3]);
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stderr);
    assert!(log.contains("security.realm: required") && log.contains("ONEX_REALM"), "{log}");
    assert!(log.contains("security.identity_file: required") && log.contains("ONEX_NODE_IDENTITY_FILE"), "{log}");
}

#[test]
fn approle_without_credentials_names_both_settings() {
    let out = adapter(&["run"], &[ENV[0], ENV[1], ("VAULT_AUTH_METHOD", "approle")]);
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stderr);
    assert!(log.contains("VAULT_ROLE_ID") && log.contains("VAULT_SECRET_ID"), "{log}");
}

#[test]
fn a_taken_http_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a port");
    let port = taken.local_addr().expect("address").port().to_string();
    let out = adapter(&["run"], &[ENV[0], ENV[1], ENV[2], ENV[3], ("ONEX_HTTP_PORT", &port)]);
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stderr);
    assert!(log.contains("cannot listen on") && log.contains("ONEX_HTTP_PORT"), "{log}");
}
