//! Self-test of the fault-injection controls in `tests/support`: sealing, killing
//! and restarting the real Vault/OpenBao server (`support::faults`), and the
//! loopback proxy (`support::proxy`) against a tiny echo server and against Vault.
//!
//! A binary of its own because it breaks the Vault server that all tests of a
//! binary share; every test here holds `faults::exclusive_vault()`.

mod support;

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{
    faults,
    proxy::{Mode, Proxy},
    servers, vault,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    time::{timeout, Instant},
};

/// Deadline for anything that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

// ---------------------------------------------------------------------------
// Vault: seal / unseal, stop / start
// ---------------------------------------------------------------------------

#[tokio::test]
async fn seal_then_unseal_keeps_data() {
    let _vault = faults::exclusive_vault().await;
    let servers = servers();
    vault::write_kv("secret", "faults/seal", &json!({ "before": "seal" })).await;

    servers.vault_seal().await;
    assert_eq!(vault::health_status().await, Ok(StatusCode::SERVICE_UNAVAILABLE));
    let while_sealed = vault::request(Method::GET, "secret/data/faults/seal", None).await;
    assert_eq!(while_sealed.status, StatusCode::SERVICE_UNAVAILABLE, "{while_sealed:?}");
    assert!(while_sealed.errors().contains("sealed"), "{while_sealed:?}");

    servers.vault_unseal().await;
    assert_eq!(vault::health_status().await, Ok(StatusCode::OK));
    assert_eq!(
        vault::read_kv("secret", "faults/seal").await,
        Some(json!({ "before": "seal" })),
        "sealing must not lose data"
    );
    let version = vault::write_kv("secret", "faults/seal", &json!({ "after": "unseal" })).await;
    assert_eq!(version, 2);
}

#[tokio::test]
async fn stop_then_start_gives_a_fresh_server_on_the_same_port() {
    let _vault = faults::exclusive_vault().await;
    let servers = servers();
    let vault_addr = servers.vault_socket_addr();
    let generation = servers.vault_generation();
    let unseal_key = servers.unseal_key().expect("unseal key");
    vault::enable_kv2("faults-kv").await;
    vault::write_kv("faults-kv", "app", &json!({ "k": "old" })).await;
    vault::database_lease_role().await;

    servers.vault_stop();
    assert!(!servers.vault_is_running());
    let refused = TcpStream::connect_timeout(&vault_addr, Duration::from_secs(1))
        .expect_err("nothing may listen on Vault's port after vault_stop");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    assert!(vault::health_status().await.is_err());

    servers.vault_start().await;
    assert!(servers.vault_is_running());
    assert_eq!(servers.vault_socket_addr(), vault_addr);
    assert_eq!(servers.vault_generation(), generation + 1);
    assert_eq!(vault::health_status().await, Ok(StatusCode::OK));
    assert_ne!(
        servers.unseal_key().expect("new unseal key"),
        unseal_key,
        "a restarted dev server has a new unseal key"
    );

    // Same root token; KV v2 at secret/ again; everything else is gone.
    let version = vault::write_kv("secret", "faults/restart", &json!({ "k": "v" })).await;
    assert_eq!(version, 1);
    let mounts = vault::request(Method::GET, "sys/mounts", None).await;
    assert!(mounts.is_success(), "{mounts:?}");
    assert!(mounts.body["data"]["faults-kv/"].is_null(), "{mounts:?}");

    // The one-time setup runs again for the new server instead of trusting a cache.
    vault::enable_kv2("faults-kv").await;
    assert_eq!(vault::read_kv("faults-kv", "app").await, None);
    vault::write_kv("faults-kv", "app", &json!({ "k": "new" })).await;
    let creds_path = vault::database_lease_role().await;
    assert_eq!(creds_path, "database/creds/app");
    let (lease_id, duration) = vault::new_database_lease().await;
    assert!(lease_id.starts_with("database/creds/app/"), "{lease_id}");
    assert_eq!(duration, 3600);

    // Sealing works on the restarted server too (its new unseal key is used).
    servers.vault_seal().await;
    servers.vault_unseal().await;
    assert_eq!(vault::read_kv("faults-kv", "app").await, Some(json!({ "k": "new" })));
}

#[tokio::test]
async fn exclusive_vault_repairs_a_vault_left_broken() {
    let guard = faults::exclusive_vault().await;
    servers().vault_seal().await;
    drop(guard); // as if the test had panicked here
    let guard = faults::exclusive_vault().await;
    assert_eq!(vault::health_status().await, Ok(StatusCode::OK));

    servers().vault_stop();
    drop(guard);
    let _guard = faults::exclusive_vault().await;
    assert!(servers().vault_is_running());
    assert_eq!(vault::health_status().await, Ok(StatusCode::OK));
}

// ---------------------------------------------------------------------------
// Proxy against an echo server
// ---------------------------------------------------------------------------

/// A loopback echo server on the test's runtime; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

async fn connect(proxy: &Proxy) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(proxy.addr()).await.expect("connecting to the proxy")
}

/// Reads exactly `expected.len()` bytes within [`PROMPTLY`] and compares.
async fn expect_echo(stream: &mut tokio::net::TcpStream, expected: &[u8]) {
    let mut answer = vec![0; expected.len()];
    timeout(PROMPTLY, stream.read_exact(&mut answer))
        .await
        .expect("echo within the deadline")
        .expect("reading the echo");
    assert_eq!(answer, expected);
}

/// True when the peer reset or closed `stream` within [`PROMPTLY`].
async fn closed_by_peer(stream: &mut tokio::net::TcpStream) -> bool {
    let mut byte = [0; 1];
    match timeout(PROMPTLY, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn proxy_passes_and_counts() {
    let proxy = Proxy::start(echo_server().await);
    assert_eq!(proxy.mode(), Mode::Pass);
    let mut stream = connect(&proxy).await;
    stream.write_all(b"hello").await.unwrap();
    expect_echo(&mut stream, b"hello").await;
    assert_eq!(proxy.connections(), 1);
    // The proxy counts a chunk once its write returned, which may be just
    // after the client already read it: wait for the counters.
    eventually("5 bytes each way", || proxy.bytes_to_upstream() == 5 && proxy.bytes_to_client() == 5).await;

    // Larger than one chunk, both ways at once.
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let (mut reader, mut writer) = stream.split();
    let send = async {
        writer.write_all(&big).await.unwrap();
    };
    let receive = async {
        let mut echoed = vec![0; big.len()];
        timeout(PROMPTLY, reader.read_exact(&mut echoed)).await.expect("big echo within the deadline").unwrap();
        echoed
    };
    let ((), echoed) = tokio::join!(send, receive);
    assert!(echoed == big, "the big echo differs");
    eventually("all bytes upstream", || proxy.bytes_to_upstream() == 5 + 200_000).await;
}

#[tokio::test]
async fn proxy_delays_each_way() {
    let proxy = Proxy::start(echo_server().await);
    let mut stream = connect(&proxy).await;
    let delay = Duration::from_millis(300);
    proxy.delay(delay);
    assert_eq!(proxy.mode(), Mode::Delay(delay));
    let started = Instant::now();
    stream.write_all(b"slow").await.unwrap();
    expect_echo(&mut stream, b"slow").await;
    let took = started.elapsed();
    assert!(took >= 2 * delay, "echo took {took:?}, expected >= {:?}", 2 * delay);

    proxy.pass();
    let started = Instant::now();
    stream.write_all(b"fast").await.unwrap();
    expect_echo(&mut stream, b"fast").await;
    assert!(started.elapsed() < delay, "pass() must end the delay");
}

#[tokio::test]
async fn proxy_stall_holds_data_until_pass() {
    let proxy = Proxy::start(echo_server().await);
    let mut stream = connect(&proxy).await;
    proxy.stall();
    stream.write_all(b"held").await.unwrap();
    let mut byte = [0; 1];
    assert!(timeout(QUIET, stream.read(&mut byte)).await.is_err(), "nothing may come back while stalled");
    assert_eq!(proxy.bytes_to_upstream(), 0);

    // New connections are accepted while stalled, but get nothing either.
    let mut second = connect(&proxy).await;
    second.write_all(b"x").await.unwrap();
    assert!(timeout(QUIET, second.read(&mut byte)).await.is_err());
    assert_eq!(proxy.connections(), 2);

    proxy.pass();
    expect_echo(&mut stream, b"held").await;
    expect_echo(&mut second, b"x").await;
}

#[tokio::test]
async fn proxy_cut_resets_connections_until_pass() {
    let proxy = Proxy::start(echo_server().await);
    let mut existing = connect(&proxy).await;
    existing.write_all(b"up").await.unwrap();
    expect_echo(&mut existing, b"up").await;

    proxy.cut();
    assert!(closed_by_peer(&mut existing).await, "cut() must close the current connection");
    // A new connection may be accepted by the kernel, but is reset at once.
    if let Ok(mut new) = tokio::net::TcpStream::connect(proxy.addr()).await {
        let _ = new.write_all(b"anyone?").await;
        assert!(closed_by_peer(&mut new).await, "cut() must reset new ones");
    }

    proxy.pass();
    let mut after = connect(&proxy).await;
    after.write_all(b"back").await.unwrap();
    expect_echo(&mut after, b"back").await;
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_port_and_connections() {
    let proxy = Proxy::start(echo_server().await);
    let addr = proxy.addr();
    let mut stream = connect(&proxy).await;
    drop(proxy);
    assert!(closed_by_peer(&mut stream).await);
    let refused = tokio::net::TcpStream::connect(addr).await.expect_err("a dropped proxy must not listen");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

// ---------------------------------------------------------------------------
// Proxy in front of Vault
// ---------------------------------------------------------------------------

/// `GET /v1/sys/health` through the proxy, with a client timeout of `within`.
async fn health_via(proxy: &Proxy, within: Duration) -> Result<StatusCode, reqwest::Error> {
    let client =
        reqwest::Client::builder().timeout(within).pool_max_idle_per_host(0).no_proxy().build().expect("HTTP client");
    client.get(format!("http://{}/v1/sys/health", proxy.addr())).send().await.map(|response| response.status())
}

#[tokio::test]
async fn proxy_in_front_of_vault_health() {
    let _vault = faults::exclusive_vault().await;
    let proxy = Proxy::start(servers().vault_socket_addr());

    assert_eq!(health_via(&proxy, PROMPTLY).await.unwrap(), StatusCode::OK);
    eventually("bytes both ways", || proxy.bytes_to_upstream() > 0 && proxy.bytes_to_client() > 0).await;

    let delay = Duration::from_millis(250);
    proxy.delay(delay);
    let started = Instant::now();
    assert_eq!(health_via(&proxy, PROMPTLY).await.unwrap(), StatusCode::OK);
    let took = started.elapsed();
    assert!(took >= 2 * delay, "took {took:?} with a {delay:?} delay");

    proxy.stall();
    let stalled = health_via(&proxy, QUIET).await.expect_err("stalled");
    assert!(stalled.is_timeout(), "{stalled:?}");

    proxy.cut();
    let cut = health_via(&proxy, PROMPTLY).await.expect_err("cut");
    assert!(!cut.is_timeout(), "a cut link fails at once: {cut:?}");

    proxy.pass();
    assert_eq!(health_via(&proxy, PROMPTLY).await.unwrap(), StatusCode::OK);
    assert!(proxy.connections() >= 5, "{}", proxy.connections());
}

/// Polls `check` until it holds, failing after 5 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never reached: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
