//! TLS to Vault against a real `bao server -dev -dev-tls`: with its CA
//! (`VAULT_CACERT`) the node serves requests over HTTPS; with a CA that does
//! not sign Vault's certificate it refuses to start and says why; a missing
//! CA file is a contract error naming the setting. And against a `bao` listener
//! that demands client certificates: the node's `VAULT_CLIENT_CERT` and
//! `VAULT_CLIENT_KEY` get it in; without them, or with a certificate of another
//! CA, start-up stops and says why.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::node::{Node, NodeOptions};
use support::tls::TestCa;
use support::{servers, tool_path};

/// A dev-mode OpenBao serving HTTPS with a CA it generated.
struct TlsVault {
    child: Child,
    addr: String,
    ca_cert: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl TlsVault {
    async fn start() -> TlsVault {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let ca_cert = dir.path().join("vault-ca.pem");
        TlsVault::spawn(
            &[
                "-dev-tls".into(),
                format!("-dev-tls-cert-dir={}", dir.path().display()),
                format!("-dev-listen-address=127.0.0.1:{port}"),
            ],
            format!("https://127.0.0.1:{port}"),
            ca_cert,
            None,
            dir,
        )
        .await
    }

    /// A dev-mode OpenBao (plain HTTP on a port of its own) with a second
    /// listener, from a config file, that serves HTTPS with a certificate of
    /// `ca` and demands a client certificate of `ca`. `addr` is that listener.
    async fn start_demanding_client_certificates(ca: &TestCa) -> TlsVault {
        let dir = tempfile::tempdir().expect("temp dir");
        let (server_cert, server_key) = ca.issue_files("vault-server");
        let (client_cert, client_key) = ca.issue_files("health-probe");
        let port = free_port();
        let config = dir.path().join("listener.hcl");
        std::fs::write(
            &config,
            format!(
                "listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_cert_file = \"{}\"\n  \
                 tls_key_file = \"{}\"\n  tls_client_ca_file = \"{}\"\n  \
                 tls_require_and_verify_client_cert = true\n}}\n",
                server_cert.display(),
                server_key.display(),
                ca.ca_file().display(),
            ),
        )
        .expect("write the listener config");
        TlsVault::spawn(
            &[format!("-dev-listen-address=127.0.0.1:{}", free_port()), format!("-config={}", config.display())],
            format!("https://127.0.0.1:{port}"),
            ca.ca_file().to_path_buf(),
            Some((client_cert, client_key)),
            dir,
        )
        .await
    }

    async fn spawn(
        args: &[String],
        addr: String,
        ca_cert: PathBuf,
        probe_identity: Option<(PathBuf, PathBuf)>,
        dir: tempfile::TempDir,
    ) -> TlsVault {
        let bao = tool_path("ONEX_BAO_BIN").expect("ONEX_BAO_BIN: run scripts/install-test-servers.sh");
        let log = std::fs::File::create(dir.path().join("bao.log")).expect("log file");
        let child = Command::new(bao)
            // -dev-no-store-token: two dev servers starting at once race on
            // renaming ~/.vault-token (one then exits); the harness's does the same.
            .args(["server", "-dev", "-dev-no-store-token", "-dev-root-token-id=tls-root"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bao");
        let mut vault = TlsVault { child, addr, ca_cert, _dir: dir };
        vault.wait_until_unsealed(probe_identity).await;
        vault
    }

    /// Polls `sys/health` over HTTPS, trusting the CA once it exists (and
    /// presenting `identity`, certificate and key files, if given).
    async fn wait_until_unsealed(&mut self, identity: Option<(PathBuf, PathBuf)>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                let log = std::fs::read_to_string(self._dir.path().join("bao.log")).unwrap_or_default();
                panic!("bao exited ({status}):\n{log}");
            }
            if let Ok(pem) = std::fs::read(&self.ca_cert) {
                let mut client = reqwest::Client::builder()
                    .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).expect("the CA is PEM"))
                    .no_proxy();
                if let Some((certificate, key)) = &identity {
                    let mut pem = std::fs::read(certificate).expect("client certificate");
                    pem.extend(std::fs::read(key).expect("client key"));
                    client = client.identity(reqwest::Identity::from_pem(&pem).expect("client identity"));
                }
                let client = client.build().expect("client");
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
        .env("ONEX_HTTP_PORT", "0")
        // These nodes are judged on their TLS to Vault, not on request trust.
        .env("ONEX_SECURITY_PROFILE", "dev");
    for (key, value) in extra {
        command.env(key, value);
    }
    command.output().expect("run the node")
}

/// [`run_node`] for a node that must stop at start: checks exit code 1 and
/// returns what it printed.
fn refused_at_start(vault_addr: &str, extra: &[(&str, &str)]) -> String {
    let output = run_node(vault_addr, extra);
    let printed = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{printed}");
    printed
}

/// Writes a secret through the node and reads it back through the node.
async fn set_then_get(node: &Node, secret_path: &str, password: &str) {
    let requester = node.requester();
    let set =
        requester.call(json!({"operation": "set_secret", "path": secret_path, "data": {"password": password}})).await;
    assert_eq!(set["status"], "success", "{set}");
    let got = requester.call(json!({"operation": "get_secret", "path": secret_path})).await;
    assert_eq!(got["result"]["data"]["password"], password, "{got}");
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
    set_then_get(&node, "tls/app/db", "over-tls").await;

    // A CA bundle that does not sign Vault's certificate (the system's).
    let system_roots = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a system CA bundle");
    let log = refused_at_start(&vault.addr, &[("VAULT_CACERT", system_roots)]);
    assert!(log.contains("certificate is not trusted by vault.tls.ca_cert (VAULT_CACERT)"), "{log}");

    // No CA at all: the system roots do not know the dev CA either.
    refused_at_start(&vault.addr, &[]);

    // A CA file that is not there is a contract error naming the setting.
    let log = refused_at_start(&vault.addr, &[("VAULT_CACERT", "/nonexistent/ca.pem")]);
    assert!(log.contains("vault.tls.ca_cert: cannot read /nonexistent/ca.pem (set VAULT_CACERT"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_presents_its_client_certificate_to_a_vault_that_demands_one() {
    let ca = TestCa::new("ONEX test Vault CA");
    let vault = TlsVault::start_demanding_client_certificates(&ca).await;
    let (cert, key) = ca.issue_files("vault-adapter");

    let node = Node::start_with(
        NodeOptions::default()
            .vault_addr(&vault.addr)
            .env("VAULT_TOKEN", "tls-root")
            .env("VAULT_CACERT", path(ca.ca_file()))
            .env("VAULT_CLIENT_CERT", path(&cert))
            .env("VAULT_CLIENT_KEY", path(&key)),
    )
    .await;
    set_then_get(&node, "mtls/app", "client-cert").await;

    // No client certificate: Vault ends the handshake; start-up stops at once.
    let log = refused_at_start(&vault.addr, &[("VAULT_CACERT", path(ca.ca_file()))]);
    assert!(log.contains("Vault refused the handshake, most often over the node's client certificate"), "{log}");

    // A client certificate of another CA: refused the same way.
    let stranger = TestCa::new("some other CA");
    let (cert, key) = stranger.issue_files("impostor");
    let log = refused_at_start(
        &vault.addr,
        &[("VAULT_CACERT", path(ca.ca_file())), ("VAULT_CLIENT_CERT", path(&cert)), ("VAULT_CLIENT_KEY", path(&key))],
    );
    assert!(log.contains("Vault refused the handshake, most often over the node's client certificate"), "{log}");
}
