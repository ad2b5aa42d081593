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

/// A contracts directory `contracts` in `dir` with `files` (relative path, text).
fn contracts_with(dir: &Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    let contracts = dir.join("contracts");
    for (name, text) in files {
        let path = contracts.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, text).expect("write contract");
    }
    contracts
}

/// Finding 1 of issue 12: a contract's key may not become `PATH`,
/// `LD_PRELOAD`, …: the whole run is refused (exit 1), naming the file and
/// key path, and nothing is written or run, although every secret exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_cannot_set_variables_that_change_how_programs_run() {
    vault::write_kv("secret", "resolve/deny/x", &json!({"path": "/tmp/evil-bin", "lib": "/tmp/evil.so", "pw": "pw"}))
        .await;
    let node = Node::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let contracts = contracts_with(
        dir.path(),
        &[(
            "svc/contract.yaml",
            "path: ${vault:secret/resolve/deny/x#path}\nld:\n  preload: ${vault:secret/resolve/deny/x#lib}\ndb:\n  pw: ${vault:secret/resolve/deny/x#pw}\n",
        )],
    );
    let env_file = dir.path().join("service.env");
    let refused = resolve(
        &node,
        &contracts,
        &["--env-file", env_file.to_str().expect("UTF-8"), "--", "/bin/sh", "-c", "echo ran"],
        &[],
    );
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("svc/contract.yaml: ld.preload would set \"LD_PRELOAD\""), "{stderr}");
    assert!(stderr.contains("svc/contract.yaml: path would set \"PATH\""), "{stderr}");
    assert!(!stderr.contains("DB_PW"), "only the denied names are named: {stderr}");
    assert!(!env_file.exists(), "nothing written");
    assert!(!text(&refused.stdout).contains("ran"), "nothing run");
    // A dry run reports them too.
    let dry = resolve(&node, &contracts, &["--dry-run"], &[]);
    assert_eq!(dry.status.code(), Some(1), "{}", text(&dry.stderr));
}

/// Finding 2 of issue 12: the env file gives back, when sourced by POSIX
/// sh, exactly the bytes of every value; a value no environment can carry
/// (a NUL byte) is refused, not silently mangled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_file_values_survive_sourcing_and_unusable_ones_are_refused() {
    let values = [
        ("newline", "line one\nline two"),
        ("single", "it's 'quoted'"),
        ("double", "say \"hi\""),
        ("backslash", "back\\slash\\n\\"),
        ("command", "$(echo pwned)"),
        ("backtick", "`echo pwned`"),
        ("trailing", "trailing newline\n"),
        ("pem", "-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n"),
        ("mixed", "'\"\\$HOME`x`'\\''\n"),
    ];
    let data: serde_json::Map<String, serde_json::Value> =
        values.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    vault::write_kv("secret", "resolve/quoting/all", &serde_json::Value::Object(data)).await;
    vault::write_kv("secret", "resolve/quoting/nul", &json!({"value": "before\u{0}after"})).await;
    let node = Node::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let contract: String =
        values.iter().map(|(k, _)| format!("  {k}: ${{vault:secret/resolve/quoting/all#{k}}}\n")).collect();
    let contracts = contracts_with(dir.path(), &[("q.yaml", &format!("q:\n{contract}"))]);
    let env_file = dir.path().join("service.env");
    let written = resolve(&node, &contracts, &["--env-file", env_file.to_str().expect("UTF-8")], &[]);
    assert!(written.status.success(), "{}", text(&written.stderr));
    for (key, value) in values {
        let name = format!("Q_{}", key.to_uppercase());
        let sourced = Command::new("sh")
            .arg("-c")
            .arg(format!(". \"$1\"; printf %s \"${name}\""))
            .arg("sh")
            .arg(&env_file)
            .output()
            .expect("sh");
        assert!(sourced.status.success(), "{}", text(&sourced.stderr));
        assert_eq!(sourced.stdout, value.as_bytes(), "{name}");
    }
    // The command's environment carries them as they are, too.
    let exec = resolve(&node, &contracts, &["--", "sh", "-c", "printf %s \"$Q_MIXED\""], &[]);
    assert!(exec.status.success(), "{}", text(&exec.stderr));
    assert_eq!(exec.stdout, values[8].1.as_bytes());

    // A NUL byte: refused, nothing written or run.
    let nul_dir = tempfile::tempdir().expect("temp dir");
    let nul_contracts =
        contracts_with(nul_dir.path(), &[("n.yaml", "nul: ${vault:secret/resolve/quoting/nul#value}\n")]);
    let nul_file = nul_dir.path().join("service.env");
    let refused = resolve(
        &node,
        &nul_contracts,
        &["--env-file", nul_file.to_str().expect("UTF-8"), "--", "sh", "-c", "echo ran"],
        &[],
    );
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NUL: REFUSED (secret/resolve/quoting/nul#value: the value holds a NUL byte"), "{stderr}");
    assert!(!nul_file.exists(), "nothing written");
    assert!(!text(&refused.stdout).contains("ran"), "nothing run");
}

/// Finding 3 of issue 12: the command `resolve` runs does not get the
/// resolver's own credentials for the bus (or Vault's), but does get the
/// rest of the environment and the resolved variables; `--fallback-env`
/// never hands the resolver's own value on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_does_not_inherit_the_resolvers_credentials() {
    vault::write_kv("secret", "resolve/scrub/db", &json!({"password": "db-pw"})).await;
    let node = Node::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let contracts =
        contracts_with(dir.path(), &[("c.yaml", "db:\n  password: ${vault:secret/resolve/scrub/db#password}\n")]);
    let bootstrap = servers().bootstrap_servers();
    // Plaintext Kafka: the SASL settings are read but not used, so they
    // can be canaries here.
    let resolver_env = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("KAFKA_SASL_USERNAME", "canary-user"),
        ("KAFKA_SASL_PASSWORD", "canary-password"),
        ("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/canary-password-file"),
        ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ("ONEX_REALM", "canary-realm"),
        ("ONEX_NODE_PUBLIC_KEY", "canary-node-key"),
        ("VAULT_TOKEN", "canary-vault-token"),
        ("VAULT_SECRET_ID", "canary-secret-id"),
        ("RESOLVE_TEST_KEPT", "kept"),
    ];
    let exec = resolve(&node, &contracts, &["--", "env"], &resolver_env);
    assert!(exec.status.success(), "{}", text(&exec.stderr));
    let child_env = text(&exec.stdout);
    let lines: Vec<&str> = child_env.lines().collect();
    assert!(lines.contains(&"DB_PASSWORD=db-pw"), "{child_env}");
    assert!(lines.contains(&"RESOLVE_TEST_KEPT=kept"), "the rest of the environment is passed on: {child_env}");
    assert!(!child_env.contains("canary"), "{child_env}");
    for (name, _) in &resolver_env[..9] {
        assert!(!lines.iter().any(|l| l.starts_with(&format!("{name}="))), "{name} passed on: {child_env}");
    }

    // A contract cannot fish the resolver's password out with --fallback-env.
    std::fs::write(contracts.join("k.yaml"), "kafka:\n  sasl_password: ${vault:secret/resolve/scrub/nowhere#x}\n")
        .expect("write");
    let fished = resolve(&node, &contracts, &["--fallback-env", "--", "env"], &resolver_env);
    assert_eq!(fished.status.code(), Some(1), "{}", text(&fished.stderr));
    assert!(text(&fished.stderr).contains("KAFKA_SASL_PASSWORD: UNRESOLVED"), "{}", text(&fished.stderr));
    assert!(!text(&fished.stdout).contains("canary"), "{}", text(&fished.stdout));
}

/// Finding 4 of issue 12: a symbolic-link cycle under --contracts ends the
/// walk; the contract files (also those behind a linked directory) are
/// still found, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_cycle_in_the_contracts_ends_the_walk() {
    vault::write_kv("secret", "resolve/walk/a", &json!({"p": "pa", "t": "tb", "l": "lc"})).await;
    let node = Node::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let contracts = contracts_with(
        dir.path(),
        &[
            ("a/contract.yaml", "db:\n  password: ${vault:secret/resolve/walk/a#p}\n"),
            ("a/b/api.yml", "api:\n  token: ${vault:secret/resolve/walk/a#t}\n"),
        ],
    );
    // Two ways back up at two levels: 2^40 paths without cycle detection.
    std::os::unix::fs::symlink("..", contracts.join("a/up")).expect("link");
    std::os::unix::fs::symlink("../..", contracts.join("a/b/up")).expect("link");
    std::os::unix::fs::symlink(&contracts, contracts.join("a/b/root")).expect("link");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("dirs");
    std::fs::write(outside.join("linked.yaml"), "linked: ${vault:secret/resolve/walk/a#l}\n").expect("write");
    std::os::unix::fs::symlink(&outside, contracts.join("shared")).expect("link");

    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .arg("resolve")
        .arg("--contracts")
        .arg(&contracts)
        .arg("--dry-run")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run resolve");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the walk did not end within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dry = child.wait_with_output().expect("output");
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let names: Vec<String> =
        text(&dry.stdout).lines().map(|l| l.split('\t').next().unwrap_or_default().to_owned()).collect();
    assert_eq!(names, ["API_TOKEN", "DB_PASSWORD", "LINKED"]);

    // And the real run resolves them.
    let exec = resolve(
        &node,
        &contracts,
        &["--", "sh", "-c", "printf '%s|%s|%s' \"$API_TOKEN\" \"$DB_PASSWORD\" \"$LINKED\""],
        &[],
    );
    assert!(exec.status.success(), "{}", text(&exec.stderr));
    assert_eq!(text(&exec.stdout), "tb|pa|lc");
}
