//! TLS to Vault against a real `bao server -dev -dev-tls`: with its CA
//! (`VAULT_CACERT`) the node serves requests over HTTPS; with a CA that does
//! not sign Vault's certificate it refuses to start and says why; a missing
//! CA file is a contract error naming the setting.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::node::{Node, NodeOptions};
use support::{servers, tool_path};

/// A dev-mode OpenBao serving HTTPS with a CA it generated.
struct TlsVault {
    child: Child,
    addr: String,
    ca_cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsVault {
    async fn start() -> TlsVault {
        let bao = tool_path("ONEX_BAO_BIN").expect("ONEX_BAO_BIN: run scripts/install-test-servers.sh");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let log = std::fs::File::create(dir.path().join("bao.log")).expect("log file");
        let child = Command::new(bao)
            .args(["server", "-dev", "-dev-tls", "-dev-root-token-id=tls-root"])
            .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bao -dev-tls");
        let vault = TlsVault {
            child,
            addr: format!("https://127.0.0.1:{port}"),
            ca_cert: dir.path().join("vault-ca.pem"),
            _dir: dir,
        };
        vault.wait_until_unsealed().await;
        vault
    }

    /// Polls `sys/health` over HTTPS, trusting the generated CA once it exists.
    async fn wait_until_unsealed(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(pem) = std::fs::read(&self.ca_cert) {
                let client = reqwest::Client::builder()
                    .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).expect("the CA is PEM"))
                    .no_proxy()
                    .build()
                    .expect("client");
                if let Ok(response) = client.get(format!("{}/v1/sys/health", self.addr)).send().await {
                    if response.status().is_success() {
                        return;
                    }
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "bao -dev-tls did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TlsVault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `run` with the shipped contract and `env`; for nodes expected to stop at start.
fn run_node(vault_addr: &str, extra: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"));
    command
        .arg("run")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KAFKA_BOOTSTRAP_SERVERS", servers().bootstrap_servers())
        .env("VAULT_ADDR", vault_addr)
        .env("VAULT_TOKEN", "tls-root")
        .env("ONEX_HTTP_PORT", "0");
    for (key, value) in extra {
        command.env(key, value);
    }
    command.output().expect("run the node")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_talks_https_to_vault_with_the_contracts_ca_and_refuses_an_untrusted_one() {
    let vault = TlsVault::start().await;

    let node = Node::start_with(
        NodeOptions::default()
            .vault_addr(&vault.addr)
            .env("VAULT_TOKEN", "tls-root")
            .env("VAULT_CACERT", path(&vault.ca_cert)),
    )
    .await;
    let requester = node.requester();
    let set = requester
        .call(json!({"operation": "set_secret", "path": "tls/app/db", "data": {"password": "over-tls"}}))
        .await;
    assert_eq!(set["status"], "success", "{set}");
    let got = requester.call(json!({"operation": "get_secret", "path": "tls/app/db"})).await;
    assert_eq!(got["result"]["data"]["password"], "over-tls", "{got}");

    // A CA bundle that does not sign Vault's certificate (the system's).
    let system_roots = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a system CA bundle");
    let refused = run_node(&vault.addr, &[("VAULT_CACERT", system_roots)]);
    assert_eq!(refused.status.code(), Some(1));
    let log = String::from_utf8_lossy(&refused.stdout).to_string() + &String::from_utf8_lossy(&refused.stderr);
    assert!(log.contains("certificate is not trusted by vault.tls.ca_cert (VAULT_CACERT)"), "{log}");

    // No CA at all: the system roots do not know the dev CA either.
    let refused = run_node(&vault.addr, &[]);
    assert_eq!(refused.status.code(), Some(1));

    // A CA file that is not there is a contract error naming the setting.
    let missing = run_node(&vault.addr, &[("VAULT_CACERT", "/nonexistent/ca.pem")]);
    assert_eq!(missing.status.code(), Some(1));
    let log = String::from_utf8_lossy(&missing.stderr).to_string() + &String::from_utf8_lossy(&missing.stdout);
    assert!(log.contains("vault.tls.ca_cert: cannot read /nonexistent/ca.pem (set VAULT_CACERT"), "{log}");
}
