//! The compose file, the Dockerfile and the deploy scripts, without Docker:
//! the topics kafka-init creates are the contract's topics; the node service
//! sets exactly environment variables the node reads, including every one
//! the contract requires; the healthchecks ask for readiness; Vault keeps its
//! data and its audit device across restarts (the compose scripts run here
//! against OpenBao: initialise, unseal, set up, restart, log in again); and
//! the build context `.dockerignore` leaves holds every file the Dockerfile
//! copies (scripts/docker-context-check.sh, in CI, also builds it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"))
}

/// The contract's topic names, from its `event_bus` section.
fn contract_topics() -> BTreeSet<String> {
    let contract = yaml("contract.yaml");
    let bus = &contract["event_bus"];
    ["subscribe_topics", "publish_topics", "dlq_topics"]
        .iter()
        .flat_map(|section| bus[*section].as_mapping().expect("topic map").values())
        .map(|topic| topic.as_str().expect("topic name").to_owned())
        .collect()
}

/// `${env.NAME}` and `${env.NAME:-default}` references in the contract's
/// values: (name, has a default).
fn contract_variables() -> Vec<(String, bool)> {
    fn walk(node: &Value, found: &mut Vec<(String, bool)>) {
        match node {
            Value::String(text) => {
                for rest in text.split("${env.").skip(1) {
                    if let Some((expr, _)) = rest.split_once('}') {
                        found.push(match expr.split_once(":-") {
                            Some((name, _)) => (name.to_owned(), true),
                            None => (expr.to_owned(), false),
                        });
                    }
                }
            }
            Value::Mapping(map) => map.values().for_each(|v| walk(v, found)),
            Value::Sequence(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&yaml("contract.yaml"), &mut found);
    assert!(found.len() > 5, "the contract reads its settings from the environment");
    found
}

/// Variables the node reads itself, outside the contract.
const PROCESS_VARIABLES: &[&str] = &["ONEX_CONTRACT", "RUST_LOG", "ONEX_LOG_FORMAT", "ONEX_INSTANCE_ID"];

#[test]
fn kafka_init_creates_exactly_the_contract_topics() {
    let compose = yaml("docker-compose.infrastructure.yml");
    let init = &compose["services"]["kafka-init"];
    let mounts: Vec<&str> = init["volumes"].as_sequence().expect("volumes").iter().filter_map(Value::as_str).collect();
    assert!(mounts.iter().any(|m| m.starts_with("./contract.yaml:")), "kafka-init must read the contract: {mounts:?}");

    let output = Command::new("sh")
        .arg(root().join("deploy/kafka/contract-topics.sh"))
        .arg(root().join("contract.yaml"))
        .output()
        .expect("run contract-topics.sh");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: BTreeSet<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(listed, contract_topics());
    assert_eq!(listed.len(), 10);
}

#[test]
fn the_node_service_sets_what_the_node_reads() {
    let compose = yaml("docker-compose.infrastructure.yml");
    let node = &compose["services"]["vault-adapter"];
    let environment: BTreeSet<String> = node["environment"]
        .as_mapping()
        .expect("environment as a map")
        .keys()
        .map(|k| k.as_str().expect("name").to_owned())
        .collect();
    let variables = contract_variables();
    let known: BTreeSet<String> =
        variables.iter().map(|(name, _)| name.clone()).chain(PROCESS_VARIABLES.iter().map(|v| v.to_string())).collect();
    let unknown: Vec<&String> = environment.difference(&known).collect();
    assert!(unknown.is_empty(), "compose sets variables the node never reads: {unknown:?}");
    for (name, has_default) in &variables {
        if !has_default {
            assert!(environment.contains(name), "compose must set {name}: the contract requires it");
        }
    }
    assert_eq!(
        node["environment"]["VAULT_AUTH_METHOD"].as_str(),
        Some("approle"),
        "the node never uses the root token"
    );
    assert!(!environment.contains("VAULT_TOKEN"));
}

#[test]
fn every_service_has_a_healthcheck_or_is_a_one_shot() {
    let compose = yaml("docker-compose.infrastructure.yml");
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let name = name.as_str().expect("name");
        let one_shot = service["restart"].as_str() == Some("no");
        assert!(one_shot || !service["healthcheck"].is_null(), "{name} has no healthcheck");
        if let Some(depends) = service["depends_on"].as_mapping() {
            for (dependency, rule) in depends {
                let condition = rule["condition"].as_str().unwrap_or_default();
                assert!(
                    matches!(condition, "service_healthy" | "service_completed_successfully"),
                    "{name} depends on {dependency:?} without a health condition"
                );
            }
        }
    }
}

fn text(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_node_is_healthy_when_ready_not_merely_alive() {
    let compose = yaml("docker-compose.infrastructure.yml");
    let test = strings(&compose["services"]["vault-adapter"]["healthcheck"]["test"]).join(" ");
    assert!(test.contains("/ready"), "the compose healthcheck must ask /ready: {test}");
    assert!(!test.contains("/health"), "{test}");
    let dockerfile = text("Dockerfile");
    let healthcheck: String =
        dockerfile.lines().skip_while(|l| !l.starts_with("HEALTHCHECK")).take(2).collect::<Vec<_>>().join(" ");
    assert!(healthcheck.contains("/ready") && !healthcheck.contains("/health\""), "{healthcheck}");
    // The compose default stays the dev profile; strict is the operator's switch.
    let profile = compose["services"]["vault-adapter"]["environment"]["ONEX_SECURITY_PROFILE"].as_str();
    assert_eq!(profile, Some("${ONEX_SECURITY_PROFILE:-dev}"));
}

#[test]
fn vault_keeps_its_data_and_audits_to_a_volume() {
    let compose = yaml("docker-compose.infrastructure.yml");
    let vault = &compose["services"]["vault"];
    let command = strings(&vault["command"]);
    assert!(!command.iter().any(|c| c == "-dev"), "dev mode forgets everything on a restart: {command:?}");
    assert!(command.iter().any(|c| c == "-config=/onex/vault/server.hcl"), "{command:?}");
    assert!(strings(&vault["entrypoint"]).iter().any(|e| e == "/onex/vault/server.sh"));
    assert_eq!(vault["restart"].as_str(), Some("unless-stopped"));
    let mounts = strings(&vault["volumes"]);
    let hcl = text("deploy/vault/server.hcl");
    assert!(hcl.contains("storage \"file\"") && hcl.contains("path = \"/vault/file\""), "{hcl}");
    assert!(mounts.iter().any(|m| m == "vault-data:/vault/file"), "Vault's storage must be a volume: {mounts:?}");
    assert!(mounts.iter().any(|m| m == "vault-audit:/vault/logs"), "{mounts:?}");
    let init = &compose["services"]["vault-init"]["environment"];
    let audit = init["AUDIT_FILE_PATH"].as_str().expect("vault-init sets AUDIT_FILE_PATH");
    assert!(audit.starts_with("/vault/logs/"), "the audit log must land in the vault-audit volume: {audit}");
    for volume in ["vault-data", "vault-audit", "vault-unseal", "vault-approle"] {
        assert!(compose["volumes"].as_mapping().expect("volumes").contains_key(volume), "{volume}");
    }
    // vault-init reads the root token server.sh kept; nobody else mounts it.
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let unseal = strings(&service["volumes"]).iter().any(|m| m.starts_with("vault-unseal:"));
        assert_eq!(unseal, matches!(name.as_str(), Some("vault" | "vault-init")), "{name:?}");
    }
}

#[test]
fn the_build_context_holds_every_file_the_dockerfile_copies() {
    let python = |args: &[&str]| {
        let output = Command::new("python3")
            .arg(root().join("scripts/docker_context.py"))
            .args(args)
            .current_dir(root())
            .output()
            .expect("run python3 scripts/docker_context.py");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("utf-8")
    };
    python(&["selftest"]);
    let dest = tempfile::tempdir().expect("tempdir");
    let context = dest.path().join("context");
    let files = python(&["materialise", ".", context.to_str().expect("path")]);
    let files: BTreeSet<&str> = files.lines().collect();
    for never in ["target/", ".git/", ".stack/", ".venv/", "tests/", "benches/"] {
        assert!(!files.iter().any(|f| f.starts_with(never)), "{never} is in the build context");
    }
    for member in
        ["Cargo.toml", "Cargo.lock", "models/Cargo.toml", "client/Cargo.toml", "tools/Cargo.toml", "src/main.rs"]
    {
        assert!(files.contains(member), "{member} is not in the build context");
    }
    let stages: serde_json::Value = serde_json::from_str(&python(&["plan", "Dockerfile"])).expect("plan JSON");
    let mut copied = 0;
    for step in stages.as_array().expect("stages").iter().flat_map(|s| s["steps"].as_array().expect("steps")) {
        if step["op"] == "copy" && step["from"].is_null() {
            for source in step["sources"].as_array().expect("sources") {
                let source = source.as_str().expect("source");
                assert!(context.join(source).exists(), "COPY {source}: not in the build context");
                copied += 1;
            }
        }
    }
    assert!(copied >= 8, "the Dockerfile copies the manifests, the sources and the contract: {copied}");
}

// --- The compose Vault scripts against OpenBao ---------------------------------

/// OpenBao's `bao` (a Vault CLI and server): ONEX_BAO_BIN, else the
/// servers.env scripts/install-test-servers.sh writes.
fn bao_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ONEX_BAO_BIN") {
        return PathBuf::from(bin);
    }
    let tools = std::env::var_os("ONEX_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| root().join(".venv"));
    let env = std::fs::read_to_string(tools.join("servers.env"))
        .expect("no ONEX_BAO_BIN and no servers.env: run scripts/install-test-servers.sh");
    let line = env.lines().find_map(|l| l.trim().strip_prefix("export ONEX_BAO_BIN=")).expect("ONEX_BAO_BIN");
    PathBuf::from(line.trim_matches(|c| c == '\'' || c == '"'))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct VaultUnderTest {
    bao: PathBuf,
    dir: PathBuf,
    addr: String,
}

impl VaultUnderTest {
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_ADDR", &self.addr)
            .env("VAULT_CLI", &self.bao)
            .env("UNSEAL_DIR", self.dir.join("unseal"))
            .env("HOME", &self.dir);
        command
    }

    /// deploy/vault/server.sh, as the compose `vault` service runs it.
    fn start(&self) -> Child {
        let mut command = self.command(Path::new("sh"));
        command
            .arg(root().join("deploy/vault/server.sh"))
            .arg(&self.bao)
            .arg("server")
            .arg(format!("-config={}", self.dir.join("server.hcl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(self.dir.join("server.log")).expect("log")))
            .stderr(Stdio::from(std::fs::File::create(self.dir.join("server.err")).expect("log")));
        command.spawn().expect("start server.sh")
    }

    fn status(&self) -> Option<i32> {
        self.command(&self.bao).arg("status").stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?.code()
    }

    fn wait_unsealed(&self, server: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.status() != Some(0)
            || !std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default().contains("unsealed and active")
        {
            if let Some(exit) = server.try_wait().expect("try_wait") {
                panic!("server.sh exited ({exit}): {}", self.logs());
            }
            assert!(Instant::now() < deadline, "Vault not unsealed and active after 60 s: {}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&self, mut server: Child) {
        // docker stop: SIGTERM to server.sh, which stops the server cleanly.
        let _ = Command::new("kill").arg("-TERM").arg(server.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = server.try_wait().expect("try_wait") {
                assert!(exit.success(), "server.sh stopped with {exit}: {}", self.logs());
                break;
            }
            if Instant::now() > deadline {
                let _ = server.kill();
                panic!("server.sh did not stop on SIGTERM: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.status(), Some(1), "the server still answers after server.sh stopped");
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}\n{}", read("server.log"), read("server.err"))
    }

    fn bao(&self, token: Option<&str>, args: &[&str]) -> String {
        let mut command = self.command(&self.bao);
        if let Some(token) = token {
            command.env("VAULT_TOKEN", token).env("BAO_TOKEN", token);
        }
        let output = command.args(args).output().expect("run bao");
        assert!(output.status.success(), "bao {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// The compose Vault's life, with OpenBao standing in for Vault (no Docker
/// here): server.sh initialises and unseals it, init-dev.sh (vault-init)
/// enables the file audit device, the mounts, the policy and the AppRole;
/// after a stop and a new start server.sh unseals it again and the node's
/// AppRole credentials still log in, the demo secret is still there, and the
/// audit log keeps growing. OpenBao has no `file` storage (Vault's compose
/// configuration, server.hcl), so this runs on its raft storage, which
/// persists the same way.
#[test]
fn the_compose_vault_scripts_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, cluster) = (free_port(), free_port());
    let vault =
        VaultUnderTest { bao: bao_binary(), dir: dir.path().to_owned(), addr: format!("http://127.0.0.1:{api}") };
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    std::fs::write(
        dir.path().join("server.hcl"),
        format!(
            "storage \"raft\" {{\n  path = \"{data}\"\n  node_id = \"compose-test\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{api}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{api}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n\
             # Vault enables audit devices through the API (init-dev.sh does); OpenBao only when allowed.\n\
             unsafe_allow_api_audit_creation = true\n",
            data = dir.path().join("data").display()
        ),
    )
    .expect("server.hcl");

    let mut server = vault.start();
    vault.wait_unsealed(&mut server);
    let root_token = std::fs::read_to_string(dir.path().join("unseal/root-token")).expect("root token kept");
    let unseal_key = std::fs::metadata(dir.path().join("unseal/unseal-key")).expect("unseal key kept");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(unseal_key.permissions().mode() & 0o077, 0, "the unseal key is readable by its owner only");

    let audit_log = dir.path().join("audit.log");
    let credentials = dir.path().join("approle");
    let init = || {
        let output = vault
            .command(Path::new("sh"))
            .arg(root().join("deploy/vault/init-dev.sh"))
            .env("VAULT_TOKEN_FILE", dir.path().join("unseal/root-token"))
            .env("CREDENTIALS_DIR", &credentials)
            .env("AUDIT_FILE_PATH", &audit_log)
            .env("NODE_UID", "")
            .output()
            .expect("run init-dev.sh");
        assert!(
            output.status.success(),
            "init-dev.sh: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    init();
    init(); // idempotent: every `docker compose up` runs it again
    assert!(vault.bao(Some(&root_token), &["audit", "list"]).contains("file/"));
    let role_id = std::fs::read_to_string(credentials.join("role-id")).expect("role-id").trim().to_owned();
    let secret_id = std::fs::read_to_string(credentials.join("secret-id")).expect("secret-id").trim().to_owned();

    vault.stop(server);
    let audited = std::fs::metadata(&audit_log).expect("audit log").len();
    assert!(audited > 0, "the file audit device wrote nothing");

    // A restarted container: sealed at start, unsealed by server.sh, set-up kept.
    let mut server = vault.start();
    vault.wait_unsealed(&mut server);
    let login = vault.bao(
        None,
        &[
            "write",
            "-field=token",
            "auth/approle/login",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
    );
    assert!(!login.is_empty(), "the node's AppRole credentials no longer log in after a restart");
    // The node's token reads the demo secret (a plain read: the policy grants
    // secret/data/*, not the mount lookup `kv get` starts with).
    let secret = vault.bao(Some(&login), &["read", "-format=json", "secret/data/app/database"]);
    assert!(secret.contains("\"username\": \"app\""), "{secret}");
    vault.stop(server);
    assert!(
        std::fs::metadata(&audit_log).expect("audit log").len() > audited,
        "the audit device is gone after a restart"
    );
}
