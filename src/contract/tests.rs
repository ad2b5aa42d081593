//! Tests of contract loading against the shipped `contract.yaml`.

use super::*;

const SHIPPED: &str = include_str!("../../contract.yaml");

/// `vars`, and what the strict profile needs unless `vars` says otherwise:
/// a realm and a node identity file.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    vars.push(("ONEX_REALM".into(), "test".into()));
    // The tests' addresses are plain http:// and plaintext Kafka.
    vars.push(("ONEX_ALLOW_INSECURE_TRANSPORT".into(), "true".into()));
    vars.push(("ONEX_NODE_IDENTITY_FILE".into(), node_identity_file()));
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// A node identity file, written once for all tests.
fn node_identity_file() -> String {
    static FILE: std::sync::OnceLock<tempfile::TempPath> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| {
        let identity = onex_vault_models::RuntimeIdentity::generate("node_test", "t1").expect("keys");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), identity.to_json()).expect("write identity");
        file.into_temp_path()
    });
    file.display().to_string()
}

const BASE: &[(&str, &str)] = &[
    ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    ("VAULT_ADDR", "http://127.0.0.1:8200"),
    ("VAULT_TOKEN", "canary-token-4b1d"),
];

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Contract, ContractError> {
    Contract::from_yaml(text, "contract.yaml", &env(vars))
}

fn problems(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    load(text, vars).expect_err("contract should be refused").problems.iter().map(ToString::to_string).collect()
}

#[test]
fn shipped_contract_loads_with_its_defaults() {
    let contract = load(SHIPPED, BASE).expect("shipped contract is valid");
    assert_eq!(contract.event_bus.session_timeout_ms, 10000);
    assert_eq!(contract.event_bus.consumer_group, "node-vault-adapter-effect");
    assert_eq!(contract.vault.auth.method, AuthMethod::Token);
    assert_eq!(contract.enabled_operations().len(), onex_vault_models::Operation::all().count());
    assert_eq!(contract.health_check.http_port, 8085);
    assert_eq!(contract.topics().count(), 10);
    assert_eq!(contract.security.identity.as_ref().map(|i| i.runtime_id.as_str()), Some("node_test"));
}

/// The tools' and the client's default topics are the shipped contract's.
#[test]
fn the_tools_default_topics_are_the_shipped_contracts() {
    use onex_vault_client::Topics;
    let contract = load(SHIPPED, BASE).expect("shipped contract is valid");
    let bus = &contract.event_bus;
    assert_eq!(bus.subscribe_topics.requests, Topics::DEFAULT_REQUESTS);
    assert_eq!(bus.publish_topics.completed, Topics::DEFAULT_COMPLETED);
    assert_eq!(bus.publish_topics.failed, Topics::DEFAULT_FAILED);
    assert_eq!(bus.publish_topics.health, Topics::DEFAULT_HEALTH);
}

#[test]
fn environment_overrides_numbers_and_names() {
    let mut vars = BASE.to_vec();
    vars.extend([("KAFKA_SESSION_TIMEOUT_MS", "6000"), ("ONEX_GROUP_ID", "12345")]);
    let contract = load(SHIPPED, &vars).expect("valid");
    assert_eq!(contract.event_bus.session_timeout_ms, 6000);
    assert_eq!(contract.event_bus.consumer_group, "12345");
}

/// The Kafka pacing the README's performance section justifies, and the
/// librdkafka settings it becomes.
#[test]
fn kafka_pacing_defaults_reach_the_clients() {
    let contract = load(SHIPPED, BASE).expect("shipped contract is valid");
    let bus = &contract.event_bus;
    assert_eq!((bus.fetch_wait_max_ms, bus.linger_ms, bus.audit_linger_ms, bus.max_in_flight), (10, 1, 1, 64));
    let setting = |config: rdkafka::ClientConfig, key: &str| config.get(key).map(str::to_owned);
    assert_eq!(setting(crate::bus::consumer_config(&contract), "fetch.wait.max.ms").as_deref(), Some("10"));
    assert_eq!(setting(crate::bus::ledger_consumer_config(&contract), "fetch.wait.max.ms").as_deref(), Some("10"));
    assert_eq!(setting(crate::bus::registry_reader_config(&contract), "fetch.wait.max.ms").as_deref(), Some("500"));
    assert_eq!(setting(crate::bus::producer_config(&contract), "linger.ms").as_deref(), Some("1"));
    assert_eq!(setting(crate::bus::audit_producer_config(&contract), "linger.ms").as_deref(), Some("1"));

    let mut vars = BASE.to_vec();
    vars.extend([("KAFKA_LINGER_MS", "0"), ("KAFKA_AUDIT_LINGER_MS", "2000")]);
    let problems = problems(SHIPPED, &vars);
    assert_eq!(problems, vec!["event_bus.audit_linger_ms: must be 0 to 1000".to_owned()]);
}

#[test]
fn missing_variables_are_named() {
    let problems = problems(SHIPPED, &[("VAULT_TOKEN", "t")]);
    assert!(
        problems.contains(
            &"event_bus.bootstrap_servers: environment variable KAFKA_BOOTSTRAP_SERVERS is not set".to_owned()
        ),
        "{problems:?}"
    );
    assert!(problems.contains(&"vault.address: environment variable VAULT_ADDR is not set".to_owned()), "{problems:?}");
}

#[test]
fn token_auth_needs_a_token_and_approle_needs_credentials() {
    let problems_token = problems(SHIPPED, &BASE[..2]);
    assert_eq!(problems_token, vec!["vault.auth.token: required when vault.auth.method is token (set VAULT_TOKEN)"]);

    let mut vars = BASE[..2].to_vec();
    vars.push(("VAULT_AUTH_METHOD", "approle"));
    let p = problems(SHIPPED, &vars);
    assert!(p.iter().any(|l| l.starts_with("vault.auth.role_id:")), "{p:?}");
    assert!(p.iter().any(|l| l.starts_with("vault.auth.secret_id:")), "{p:?}");
}

#[test]
fn secret_id_comes_from_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secret-id");
    std::fs::write(&file, "s3cret-id\n").expect("write");
    let file = file.display().to_string();
    let mut vars = BASE[..2].to_vec();
    vars.extend([("VAULT_AUTH_METHOD", "approle"), ("VAULT_ROLE_ID", "role"), ("VAULT_SECRET_ID_FILE", file.as_str())]);
    let contract = load(SHIPPED, &vars).expect("valid");
    let secret_id = contract.vault.auth.secret_id.as_ref().expect("read from file");
    assert_eq!(secret_id.expose_secret(), "s3cret-id");
}

#[test]
fn rule_violations_name_the_field_path() {
    let text = SHIPPED
        .replace("max_attempts: 3", "max_attempts: 0")
        .replace("failure_threshold: 5", "failure_threshold: 0")
        .replace("onex.evt.omnibase-infra.vault-audit.v1", "vault-audit");
    let p = problems(&text, BASE);
    assert!(p.contains(&"error_handling.retry_policy.max_attempts: must be ≥ 1".to_owned()), "{p:?}");
    assert!(p.contains(&"error_handling.circuit_breaker.failure_threshold: must be ≥ 1".to_owned()), "{p:?}");
    assert!(p.iter().any(|l| l.starts_with("event_bus.publish_topics.audit:")), "{p:?}");
}

#[test]
fn a_problem_names_its_field_apart_from_what_is_wrong() {
    let refused = load(&SHIPPED.replace("max_in_flight: 64", "max_in_flight: 0"), BASE).expect_err("refused");
    let problem = refused.problems.iter().find(|p| p.field == "event_bus.max_in_flight").expect("named");
    assert_eq!(problem.problem, "must be ≥ 1");
    let refused = load(&SHIPPED.replace("max_in_flight: 64", "max_in_flight: lots"), BASE).expect_err("refused");
    assert_eq!(refused.problems[0].field, "event_bus.max_in_flight", "serde's path is the field");
}

#[test]
fn type_errors_and_typos_name_the_field_path() {
    let p = problems(&SHIPPED.replace("max_in_flight: 64", "max_in_flight: lots"), BASE);
    assert!(p[0].starts_with("event_bus.max_in_flight:"), "{p:?}");
    let p = problems(&SHIPPED.replace("max_delay_ms:", "max_delay_msec:"), BASE);
    assert!(p[0].contains("unknown field `max_delay_msec`"), "{p:?}");
    let p = problems(&SHIPPED.replace("default_mount: secret", "default_mount: ../sys"), BASE);
    assert!(p[0].starts_with("vault.default_mount:"), "{p:?}");
    let p = problems(&SHIPPED.replace("operation: renew_token", "operation: renew_everything"), BASE);
    assert!(p[0].starts_with("io_operations[8].operation: unknown variant `renew_everything`"), "{p:?}");
}

#[test]
fn printed_contract_redacts_secrets() {
    let contract = load(SHIPPED, BASE).expect("valid");
    let printed = contract.to_redacted_yaml();
    assert!(!printed.contains("canary-token-4b1d"), "{printed}");
    assert!(printed.contains("token: <redacted>"), "{printed}");
    assert!(!format!("{contract:?}").contains("canary-token-4b1d"));
}

#[test]
fn onex_topic_pattern() {
    assert!(is_onex_topic("onex.cmd.omnibase-infra.vault-request.v1"));
    assert!(is_onex_topic("onex.dlq.a.b1.v12"));
    for bad in
        ["onex.cmd.x.y", "onex.foo.x.y.v1", "onex.cmd.X.y.v1", "onex.cmd.x.y.v", "kafka.cmd.x.y.v1", "onex.cmd.1x.y.v1"]
    {
        assert!(!is_onex_topic(bad), "{bad}");
    }
}

#[test]
fn the_shipped_contract_is_strict_unless_told_dev() {
    let contract = load(SHIPPED, BASE).expect("valid");
    assert_eq!(contract.security.profile, SecurityProfile::Strict);
    assert_eq!(contract.security.default_delivery, onex_vault_models::Delivery::Sealed);
    assert!(contract.access_policy.requesters.is_empty(), "default deny: nobody is let in");
    let mut vars = BASE.to_vec();
    vars.push(("ONEX_SECURITY_PROFILE", "dev"));
    assert_eq!(load(SHIPPED, &vars).expect("valid").security.profile, SecurityProfile::Dev);
    vars.pop();
    vars.push(("ONEX_SECURITY_PROFILE", "lax"));
    let problems = problems(SHIPPED, &vars);
    assert!(problems[0].starts_with("security.profile: unknown variant `lax`"), "{problems:?}");
}

#[test]
fn the_strict_profile_refuses_insecure_transport_unless_told() {
    let mut vars = BASE.to_vec();
    vars.push(("ONEX_ALLOW_INSECURE_TRANSPORT", "false"));
    let weakened = SHIPPED.replace(
        "    properties: {}",
        "    properties: { ssl.endpoint.identification.algorithm: none, enable.ssl.certificate.verification: \"false\" }",
    );
    let found = problems(&weakened, &vars);
    for property in ["ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification"] {
        let field = format!("event_bus.security.properties.{property}: switches certificate checks off");
        assert!(found.iter().any(|p| p.starts_with(&field)), "{found:?}");
    }
    for field in ["vault.address: Vault over http://", "event_bus.security.protocol: Kafka without TLS"] {
        assert!(found.iter().any(|p| p.starts_with(field) && p.contains("ONEX_ALLOW_INSECURE_TRANSPORT")), "{found:?}");
    }
    vars.push(("ONEX_SECURITY_PROFILE", "dev"));
    let dev = load(SHIPPED, &vars).expect("dev accepts it");
    assert_eq!(dev.insecure_transport().len(), 2, "{:?}", dev.insecure_transport());
    assert_eq!(load(&weakened, &vars).expect("dev").insecure_transport().len(), 4);
    let allowed = load(SHIPPED, BASE).expect("allowed by the override");
    assert!(allowed.security.allow_insecure_transport);

    let mut tls = BASE.to_vec();
    tls.extend([
        ("ONEX_ALLOW_INSECURE_TRANSPORT", "false"),
        ("VAULT_ADDR", "https://vault:8200"),
        ("KAFKA_SECURITY_PROTOCOL", "ssl"),
    ]);
    let tls: Vec<_> = tls.into_iter().filter(|(k, v)| *k != "VAULT_ADDR" || v.starts_with("https")).collect();
    assert!(load(SHIPPED, &tls).is_ok(), "TLS everywhere is accepted");
}

#[test]
fn the_strict_profile_fails_closed_without_a_realm_or_a_node_identity() {
    let mut vars = BASE.to_vec();
    vars.extend([("ONEX_REALM", ""), ("ONEX_NODE_IDENTITY_FILE", "")]);
    let found = problems(SHIPPED, &vars);
    assert!(found.iter().any(|p| p.starts_with("security.realm: required in the strict profile")), "{found:?}");
    assert!(found.iter().any(|p| p.starts_with("security.identity_file: required")), "{found:?}");
    vars.push(("ONEX_SECURITY_PROFILE", "dev"));
    assert!(load(SHIPPED, &vars).is_ok(), "dev needs neither");

    let missing = [("ONEX_NODE_IDENTITY_FILE", "/nonexistent/node.identity.json")];
    let found = problems(SHIPPED, &[BASE, &missing[..]].concat());
    assert!(found[0].starts_with("security.identity_file: cannot read /nonexistent/node.identity.json"), "{found:?}");
}

#[test]
fn access_policy_problems_name_the_field() {
    let key = onex_vault_models::RuntimeSigner::generate("r", "k1").expect("key").public_key_base64();
    let requesters = format!(
        r#"  requesters:
    - runtime_id: node_a
      signing_keys:
        - {{ id: k1, public_key: "{key}" }}
        - {{ id: k1, public_key: "not-a-key" }}
        - {{ id: "bad id", public_key_file: "" }}
      namespaces: ["", "app", "billing/*", "/abs", "a.b", "sys", "app/"]
      grants:
        - {{ operations: [get_secret], paths: ["a//b"] }}
        - {{ operations: [list_secrets] }}
    - runtime_id: node_a"#
    );
    let problems = problems(&SHIPPED.replace("  requesters: []", &requesters), BASE);
    for expected in [
        "access_policy.requesters[0].signing_keys[1].public_key: not a usable 32-byte Ed25519 key in base64",
        "access_policy.requesters[0].signing_keys[1].id: \"k1\" is listed twice",
        "access_policy.requesters[0].signing_keys[2].id: must be 1 to 64 of A-Z a-z 0-9 . _ -",
        "access_policy.requesters[0].signing_keys[2]: needs public_key or public_key_file",
        "access_policy.requesters[0].grants[0].paths: \"a//b\" has an empty segment",
        "access_policy.requesters[0].grants[1].paths: must list at least one pattern (e.g. \"app/*\")",
        "access_policy.requesters[1].runtime_id: \"node_a\" is listed twice",
        "access_policy.requesters[0].namespaces: \"/abs\" must not start with '/'",
        "access_policy.requesters[0].namespaces: \"a.b\" may hold only A-Z a-z 0-9 _ - * and '/' between segments",
        "access_policy.requesters[0].namespaces: \"sys\" names the reserved namespace \"sys\"",
        "access_policy.requesters[0].namespaces: \"app/\" must not end with '/'",
    ] {
        assert!(problems.iter().any(|p| p == expected), "missing {expected:?} in {problems:#?}");
    }
    assert!(!problems.iter().any(|p| p.contains("\"billing/*\"") || p.contains("\"app\" ")), "{problems:#?}");

    // An operation name is typed: a wrong one stops the load, naming its place.
    let unknown = requesters.replace("[get_secret]", "[get_secret, drop_table]");
    let problems = self::problems(&SHIPPED.replace("  requesters: []", &unknown), BASE);
    assert!(
        problems[0].starts_with("access_policy.requesters[0].grants[0].operations[1]: unknown variant `drop_table`"),
        "{problems:?}"
    );
}

#[test]
fn key_files_are_read_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("billing.pub");
    let key = onex_vault_models::RuntimeSigner::generate("r", "k1").expect("key").public_key_base64();
    std::fs::write(&file, format!("{key}\n")).expect("write key");
    let with_file = |path: &str| {
        SHIPPED.replace(
            "  requesters: []",
            &format!(
                "  requesters:\n    - {{ runtime_id: node_a, signing_keys: [{{ id: k1, public_key_file: \"{path}\" }}], grants: [] }}"
            ),
        )
    };
    let contract = load(&with_file(&file.display().to_string()), BASE).expect("valid");
    assert_eq!(contract.access_policy.requesters[0].signing_keys[0].public_key, key);
    let missing = dir.path().join("missing.pub").display().to_string();
    let problems = problems(&with_file(&missing), BASE);
    assert!(
        problems[0].starts_with("access_policy.requesters[0].signing_keys[0].public_key_file: cannot read"),
        "{problems:?}"
    );
}

#[test]
fn vault_tls_files_must_exist_and_client_cert_needs_its_key() {
    let mut vars = BASE.to_vec();
    vars.extend([("VAULT_CACERT", "/nonexistent/ca.pem"), ("VAULT_CLIENT_CERT", "/etc/hostname")]);
    let problems = problems(SHIPPED, &vars);
    assert!(
        problems.contains(
            &"vault.tls.ca_cert: cannot read /nonexistent/ca.pem (set VAULT_CACERT to a PEM file)".to_owned()
        ),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("vault.tls.client_cert, vault.tls.client_key: set both")),
        "{problems:?}"
    );
}

#[test]
fn kafka_sasl_needs_its_settings_and_maps_to_librdkafka_without_showing_the_password() {
    let mut vars = BASE.to_vec();
    vars.push(("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"));
    let problems = problems(SHIPPED, &vars);
    for field in ["sasl_mechanism", "sasl_username", "sasl_password"] {
        assert!(problems.iter().any(|p| p.starts_with(&format!("event_bus.security.{field}:"))), "{problems:?}");
    }
    vars.extend([
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KAFKA_SASL_USERNAME", "onex"),
        ("KAFKA_SASL_PASSWORD", "canary-kafka-pw"),
    ]);
    let shipped =
        SHIPPED.replace("    properties: {}", "    properties: { ssl.key.password: canary-key-pw, client.rack: r1 }");
    let contract = load(&shipped, &vars).expect("valid");
    let properties = contract.event_bus.security.librdkafka_properties();
    for (key, value) in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "onex"),
        ("sasl.password", "canary-kafka-pw"),
        ("ssl.key.password", "canary-key-pw"),
        ("client.rack", "r1"),
    ] {
        assert!(properties.contains(&(key.to_owned(), value.to_owned())), "{key} missing");
    }
    let printed = contract.to_redacted_yaml();
    assert!(!printed.contains("canary-kafka-pw") && !printed.contains("canary-key-pw"), "{printed}");
    assert!(printed.contains("client.rack: r1"), "{printed}");
    assert!(!format!("{contract:?}").contains("canary-kafka-pw"), "Debug shows the password");
}

#[test]
fn the_clis_kafka_settings_read_the_same_variables_as_the_shipped_contract() {
    let kafka = [
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
        ("KAFKA_SASL_USERNAME", "onex"),
        ("KAFKA_SASL_PASSWORD", "pw"),
        ("KAFKA_SSL_CA_FILE", "/etc/hostname"),
    ];
    let mut vars = BASE.to_vec();
    vars.extend(kafka);
    let from_contract = load(SHIPPED, &vars).expect("valid").event_bus.security.librdkafka_properties();
    // Only this test sets these variables.
    for (name, value) in kafka {
        std::env::set_var(name, value);
    }
    let from_env = KafkaSecurity::from_env().map(|s| s.librdkafka_properties());
    for (name, _) in kafka {
        std::env::remove_var(name);
    }
    assert_eq!(from_env.expect("valid"), from_contract);
}
