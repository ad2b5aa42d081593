//! The real servers the integration tests talk to, started once per test binary.
//!
//! [`servers()`] starts, on first use, one of two stacks and hands out addresses:
//!
//! - **local processes** (`local_stack.rs`): OpenBao, Tansu and a private PostgreSQL,
//!   installed by `scripts/install-test-servers.sh`. Works without Docker.
//! - **containers** (`container_stack.rs`): HashiCorp Vault, Apache Kafka and
//!   PostgreSQL through `testcontainers`.
//!
//! `ONEX_TEST_STACK=local` or `ONEX_TEST_STACK=containers` forces one; when it is
//! unset, containers are used if a Docker engine answers, local processes otherwise.
//! Which one ran is printed once on stderr (not captured by the test harness).
//!
//! This file also holds what both stacks share: readiness probes, free-port picking
//! and small helpers. Stopping, restarting and sealing Vault on purpose is in
//! `faults.rs`.

use std::{
    collections::HashSet,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    panic,
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

use super::{container_stack, faults::VaultProcess, local_stack};

/// Environment variable that forces a stack: `local` or `containers`.
pub const STACK_ENV: &str = "ONEX_TEST_STACK";

/// Addresses and credentials of the running servers. Lives for the whole test binary.
#[derive(Debug)]
pub struct Servers {
    pub(super) stack: Stack,
    /// `http://127.0.0.1:<port>` of the Vault API.
    pub(super) vault_addr: String,
    pub(super) root_token: String,
    /// The dev server's unseal key, when it could be read from its output. A dev
    /// server makes a new one each time it starts, so a restart replaces it.
    pub(super) unseal_key: Mutex<Option<String>>,
    /// The Vault server process or container, for stopping and restarting it.
    pub(super) vault_process: VaultProcess,
    /// Bumped each time Vault is restarted (its dev-mode state is then gone); the
    /// admin helpers' one-time setup is keyed on it.
    pub(super) vault_generation: AtomicU64,
    /// `127.0.0.1:<port>` of the Kafka listener.
    pub(super) bootstrap_servers: String,
    pub(super) postgres: PostgresEndpoint,
    /// Directory holding the servers' log files (local processes only).
    pub(super) log_dir: Option<PathBuf>,
}

/// Where PostgreSQL listens, for the tests and for the Vault server.
#[derive(Debug)]
pub(super) struct PostgresEndpoint {
    /// Port on 127.0.0.1 of this machine.
    pub port: u16,
    /// Password of the `postgres` superuser.
    pub password: String,
    /// `host:port` under which the *Vault server* reaches PostgreSQL
    /// (differs from 127.0.0.1:<port> when Vault runs in a container).
    pub addr_for_vault: String,
}

/// Which way the servers were provided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    LocalProcesses,
    Containers,
}

impl Stack {
    pub fn name(self) -> &'static str {
        match self {
            Stack::LocalProcesses => "local processes",
            Stack::Containers => "containers",
        }
    }
}

impl Servers {
    /// Base address of the Vault HTTP API, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn vault_addr(&self) -> String {
        self.vault_addr.clone()
    }

    /// `127.0.0.1:<port>` of the Vault API, e.g. to put a `proxy::Proxy` in front of it.
    pub fn vault_socket_addr(&self) -> SocketAddr {
        self.vault_addr
            .strip_prefix("http://")
            .and_then(|host_port| host_port.parse().ok())
            .unwrap_or_else(|| panic!("Vault address {} is not http://ip:port", self.vault_addr))
    }

    /// Root token of the dev-mode Vault server (random per run).
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Unseal key printed by the running dev server, for tests that seal and unseal
    /// on purpose (see also `vault_seal` / `vault_unseal` in `faults.rs`).
    pub fn unseal_key(&self) -> Option<String> {
        self.unseal_key.lock().expect("unseal key lock poisoned").clone()
    }

    /// Kafka `bootstrap.servers` value, e.g. `127.0.0.1:41236`.
    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap_servers.clone()
    }

    /// Port of PostgreSQL on 127.0.0.1 (superuser `postgres`, see [`Self::postgres_password`]).
    pub fn postgres_port(&self) -> u16 {
        self.postgres.port
    }

    /// Password of the PostgreSQL superuser `postgres` (random per run).
    pub fn postgres_password(&self) -> &str {
        &self.postgres.password
    }

    /// `host:port` under which the Vault server itself reaches PostgreSQL; use it in
    /// the database engine's `connection_url`.
    pub fn postgres_addr_for_vault(&self) -> &str {
        &self.postgres.addr_for_vault
    }

    /// `"local processes"` or `"containers"`.
    pub fn stack_name(&self) -> &'static str {
        self.stack.name()
    }

    pub fn stack(&self) -> Stack {
        self.stack
    }

    /// Directory with one log file per server (local processes only).
    pub fn log_dir(&self) -> Option<&Path> {
        self.log_dir.as_deref()
    }
}

/// The servers of this test binary, started on first call.
///
/// Safe to call from many tests in parallel: the first caller starts the stack,
/// the others wait for it. If starting fails, that first caller panics with the
/// details and every later caller panics at once with the same message, instead
/// of each test retrying a slow, doomed start.
pub fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Result<Servers, String>> = OnceLock::new();
    let started =
        SERVERS.get_or_init(|| panic::catch_unwind(start_chosen_stack).map_err(|payload| panic_message(&*payload)));
    match started {
        Ok(servers) => servers,
        Err(message) => {
            panic!("the test servers failed to start earlier in this test binary:\n{message}")
        }
    }
}

fn start_chosen_stack() -> Servers {
    let stack = choose_stack();
    let servers = match stack {
        Stack::LocalProcesses => local_stack::start(),
        Stack::Containers => container_stack::start(),
    };
    announce(&format!(
        "[onex test harness] servers: {} (vault {}, kafka {}, postgres 127.0.0.1:{}){}",
        servers.stack_name(),
        servers.vault_addr,
        servers.bootstrap_servers,
        servers.postgres.port,
        servers.log_dir.as_ref().map(|dir| format!(", logs in {}", dir.display())).unwrap_or_default(),
    ));
    servers
}

fn choose_stack() -> Stack {
    match std::env::var(STACK_ENV).as_deref() {
        Ok("local") => Stack::LocalProcesses,
        Ok("containers") => Stack::Containers,
        Ok(other) => panic!("{STACK_ENV}={other:?}: expected \"local\" or \"containers\""),
        Err(_) if docker_engine_answers() => Stack::Containers,
        Err(_) => Stack::LocalProcesses,
    }
}

/// Writes a line straight to stderr. Unlike `eprintln!`, this is not captured by
/// the test harness, so it shows in every run's output.
pub(super) fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---------------------------------------------------------------------------
// Docker detection
// ---------------------------------------------------------------------------

/// True when a Docker engine answers `GET /_ping` on `DOCKER_HOST` or the usual sockets.
fn docker_engine_answers() -> bool {
    let ping = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let answered_ok = |mut stream: Box<dyn ReadWrite>| -> bool {
        if stream.write_all(ping).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
    };
    let timeout = Duration::from_secs(1);

    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if let Some(path) = host.strip_prefix("unix://") {
            return unix_stream(Path::new(path), timeout).is_some_and(answered_ok);
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            return tcp_stream(addr, timeout).is_some_and(answered_ok);
        }
        return false;
    }
    let mut sockets = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(home) = std::env::var_os("HOME") {
        sockets.push(Path::new(&home).join(".docker/run/docker.sock"));
        sockets.push(Path::new(&home).join(".docker/desktop/docker.sock"));
    }
    sockets.iter().filter(|socket| socket.exists()).any(|socket| unix_stream(socket, timeout).is_some_and(answered_ok))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn unix_stream(path: &Path, timeout: Duration) -> Option<Box<dyn ReadWrite>> {
    let stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    Some(Box::new(stream))
}

fn tcp_stream(addr: &str, timeout: Duration) -> Option<Box<dyn ReadWrite>> {
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr).ok()?.next()?;
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    Some(Box::new(stream))
}

// ---------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------

/// How often readiness probes run.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Runs `probe` every [`POLL_INTERVAL`] until it succeeds. Gives up with an error
/// when `timeout` passes, or at once when `still_running` says the server is gone.
/// The error names `what` and carries the last probe failure.
pub(super) fn poll_until_ready(
    what: &str,
    timeout: Duration,
    mut still_running: impl FnMut() -> Result<(), String>,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        still_running().map_err(|gone| format!("{what} stopped before it was ready: {gone}"))?;
        let last_failure = match probe() {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        if started.elapsed() >= timeout {
            return Err(format!("{what} was not ready after {timeout:?}; last probe: {last_failure}"));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Probe: `GET /v1/sys/health` on `host:port` answers 200 (initialized, unsealed, active).
pub(super) fn probe_vault_health(host_port: &str) -> Result<(), String> {
    match vault_health_status_line(host_port) {
        Ok(Some(status_line)) if status_line.split_whitespace().nth(1) == Some("200") => Ok(()),
        Ok(Some(status_line)) => Err(format!("sys/health answered {status_line:?}")),
        Ok(None) => Err(format!("nothing serves {host_port}")),
        Err(failure) => Err(failure),
    }
}

/// Probe: nothing serves `host:port` any more: connections are refused, or closed
/// without an answer (a container runtime's port forwarder may still accept them).
pub(super) fn probe_vault_down(host_port: &str) -> Result<(), String> {
    match vault_health_status_line(host_port) {
        Ok(None) => Ok(()),
        Ok(Some(status_line)) => Err(format!("still answering: {status_line:?}")),
        Err(failure) => Err(failure),
    }
}

/// The status line of `GET /v1/sys/health` on `host:port` (HTTP/1.0, blocking), or
/// `None` when nothing serves there: the connection is refused, reset, or closed
/// without an answer.
fn vault_health_status_line(host_port: &str) -> Result<Option<String>, String> {
    use std::io::ErrorKind::{BrokenPipe, ConnectionRefused, ConnectionReset};
    let addr: SocketAddr = host_port.parse().map_err(|e| format!("bad address {host_port}: {e}"))?;
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(stream) => stream,
        Err(e) if e.kind() == ConnectionRefused => return Ok(None),
        Err(e) => return Err(format!("connect {host_port}: {e}")),
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let request = format!("GET /v1/sys/health HTTP/1.0\r\nHost: {host_port}\r\n\r\n");
    let mut answer = Vec::new();
    let exchanged = stream.write_all(request.as_bytes()).and_then(|()| stream.read_to_end(&mut answer));
    match exchanged {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ConnectionReset | BrokenPipe) && answer.is_empty() => return Ok(None),
        Err(e) => return Err(format!("GET sys/health from {host_port}: {e}")),
    }
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.lines().next().map(str::to_owned))
}

/// Probe factory: a Kafka client whose metadata request must list a broker.
/// The client is built once and reused across polls.
pub(super) fn kafka_metadata_probe(bootstrap: &str) -> impl FnMut() -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "1000")
        .create()
        .expect("creating the Kafka readiness-probe client (bad bootstrap.servers?)");
    move || {
        let metadata =
            consumer.fetch_metadata(None, Duration::from_millis(1000)).map_err(|e| format!("metadata request: {e}"))?;
        if metadata.brokers().is_empty() {
            Err("metadata lists no broker".to_owned())
        } else {
            Ok(())
        }
    }
}

/// Probe: a TCP connection to `host:port` is accepted.
pub(super) fn probe_tcp(host_port: &str) -> Result<(), String> {
    let addr: SocketAddr = host_port.parse().map_err(|e| format!("bad address {host_port}: {e}"))?;
    TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map(drop)
        .map_err(|e| format!("connect {host_port}: {e}"))
}

// ---------------------------------------------------------------------------
// Ports and secrets
// ---------------------------------------------------------------------------

/// Ports already handed out by this process, so two servers never get the same one
/// (the OS may offer a just-released port again).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A loopback port that is free right now.
pub(super) fn free_port() -> u16 {
    free_ports(1)
}

/// A port `p` such that `p` and `p + 1` are both free (OpenBao's dev server takes
/// the next port up for its cluster listener). Returns `p`.
pub(super) fn free_port_pair() -> u16 {
    free_ports(2)
}

fn free_ports(consecutive: u16) -> u16 {
    let mut taken = handed_out().lock().expect("port registry poisoned");
    for _ in 0..100 {
        let first = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .expect("binding 127.0.0.1:0 to find a free port")
            .port();
        let Some(last) = first.checked_add(consecutive - 1) else {
            continue;
        };
        let ports = first..=last;
        if ports.clone().all(|port| !taken.contains(&port) && bindable(port)) {
            taken.extend(ports);
            return first;
        }
    }
    panic!("found no {consecutive} consecutive free loopback port(s) in 100 tries");
}

/// A random alphanumeric secret (root token, passwords).
pub(super) fn random_secret(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(panic without a message)".to_owned()
    }
}

/// Every `Unseal Key: <key>` in a dev server's output, oldest first (a restarted
/// container's output holds one per start).
pub(super) fn parse_unseal_keys(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Unseal Key: ").map(|key| key.trim().to_owned()))
        .collect()
}

/// The latest `Unseal Key: <key>` in a dev server's output.
pub(super) fn parse_unseal_key(output: &str) -> Option<String> {
    parse_unseal_keys(output).pop()
}
