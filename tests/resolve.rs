//! `resolve --contracts DIR` against the running node: secrets that ONEX
//! contracts reference are fetched over the bus into an env file (0600) or a
//! command's environment; missing ones fail, or fall back to the existing
//! environment when asked, reported per variable; `--dry-run` fetches nothing.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;
use support::node::Node;
use support::{servers, vault};

fn resolve(node: &Node, contracts: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let topics = &node.topics;
    Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .arg("resolve")
        .arg("--contracts")
        .arg(contracts)
        .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--timeout-seconds", "40"])
        .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run resolve")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_secrets_resolve_into_an_env_file_or_a_command() {
    vault::write_kv("secret", "resolve/orders/db", &json!({"password": "o'rders pw", "user": "orders"})).await;
    vault::write_kv("secret", "resolve/shared/api", &json!({"token": "tok-123"})).await;
    let node = Node::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let contracts = dir.path().join("contracts");
    std::fs::create_dir_all(contracts.join("orders")).expect("dirs");
    std::fs::write(
        contracts.join("orders/contract.yaml"),
        "name: node_orders\ndatabase:\n  user: ${vault:secret/resolve/orders/db#user}\n  password: ${vault:secret/resolve/orders/db#password}\n",
    )
    .expect("write contract");
    std::fs::write(contracts.join("api.yml"), "api:\n  token: ${vault:secret/resolve/shared/api#token}\n")
        .expect("write");

    let dry = resolve(&node, &contracts, &["--dry-run"], &[]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let listed = text(&dry.stdout);
    for line in ["API_TOKEN\tsecret/resolve/shared/api#token", "DATABASE_PASSWORD\tsecret/resolve/orders/db#password"] {
        assert!(listed.contains(line), "{listed}");
    }
    assert!(!listed.contains("tok-123"), "a dry run fetches nothing");

    let env_file = dir.path().join("service.env");
    let written = resolve(&node, &contracts, &["--env-file", env_file.to_str().expect("UTF-8")], &[]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    assert_eq!(std::fs::metadata(&env_file).expect("env file").permissions().mode() & 0o777, 0o600);
    let content = std::fs::read_to_string(&env_file).expect("read env file");
    assert!(content.contains("API_TOKEN='tok-123'\n"), "{content}");
    assert!(content.contains("DATABASE_PASSWORD='o'\\''rders pw'\n"), "{content}");
    assert!(
        text(&written.stderr).contains("DATABASE_USER: from secret/resolve/orders/db#user"),
        "{}",
        text(&written.stderr)
    );
    // Sourced by a shell, the file gives the exact values back.
    let sourced = Command::new("sh")
        .arg("-c")
        .arg(format!(". '{}'; printf '%s' \"$DATABASE_PASSWORD\"", env_file.display()))
        .output()
        .expect("sh");
    assert_eq!(text(&sourced.stdout), "o'rders pw");

    let exec = resolve(&node, &contracts, &["--", "sh", "-c", "printf '%s|%s' \"$API_TOKEN\" \"$DATABASE_USER\""], &[]);
    assert!(exec.status.success(), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout), "tok-123|orders");

    // A reference to a missing secret: nothing is written or run...
    std::fs::write(contracts.join("extra.yaml"), "missing:\n  key: ${vault:secret/resolve/nowhere#key}\n")
        .expect("write");
    let failed = resolve(&node, &contracts, &["--", "sh", "-c", "echo ran"], &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(
        text(&failed.stderr)
            .contains("MISSING_KEY: UNRESOLVED (secret/resolve/nowhere#key: ONEX_CORE_085_RESOURCE_NOT_FOUND)"),
        "{}",
        text(&failed.stderr)
    );
    assert!(!text(&failed.stdout).contains("ran"));
    // ...unless the environment may stand in, which is reported.
    let fallback = resolve(
        &node,
        &contracts,
        &["--fallback-env", "--", "sh", "-c", "printf '%s' \"$MISSING_KEY\""],
        &[("MISSING_KEY", "from-env")],
    );
    assert!(fallback.status.success(), "{}", text(&fallback.stderr));
    assert_eq!(text(&fallback.stdout), "from-env");
    assert!(text(&fallback.stderr).contains("MISSING_KEY: from the environment"), "{}", text(&fallback.stderr));
}
