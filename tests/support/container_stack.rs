//! The "containers" stack: HashiCorp Vault (dev mode), Apache Kafka (KRaft, single
//! node) and PostgreSQL, started through `testcontainers` on a Docker engine.
//!
//! Chosen with `ONEX_TEST_STACK=containers`, or when `ONEX_TEST_STACK` is unset and
//! a Docker engine answers. Images can be overridden with `ONEX_VAULT_IMAGE`,
//! `ONEX_KAFKA_IMAGE` and `ONEX_POSTGRES_IMAGE` (`name:tag`).
//!
//! The containers belong to a dedicated thread with its own Tokio runtime, since each
//! `#[tokio::test]` has a runtime that ends with the test. `Servers` is never dropped,
//! so an `atexit` hook asks that thread to remove the containers when the test binary
//! exits. A binary killed by a signal leaves them behind; they carry the label
//! `onex.test-run`, so `docker rm -f $(docker ps -aq --filter label=onex.test-run)`
//! cleans up.
//!
//! Assumes the Docker engine publishes container ports on this machine's loopback
//! (a local engine), like the local-processes stack.
//!
//! Fault tests can stop the Vault container (`docker stop -t 0`, i.e. SIGKILL) and
//! start it again: its host port is fixed up front, so it comes back on the same
//! port, and the image's dev mode starts afresh with the same root token.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Mutex, OnceLock,
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use testcontainers::{
    core::{wait::LogWaitStrategy, IntoContainerPort, WaitFor},
    runners::AsyncRunner,
    ContainerAsync, GenericImage, ImageExt,
};

use super::{
    faults::VaultProcess,
    servers::{
        free_port, kafka_metadata_probe, parse_unseal_key, parse_unseal_keys, poll_until_ready, probe_tcp,
        probe_vault_health, random_secret, PostgresEndpoint, Servers, Stack,
    },
};

const RUN_LABEL: &str = "onex.test-run";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop or restart of the Vault container may take.
const VAULT_CONTROL_TIMEOUT: Duration = Duration::from_secs(90);
/// Position of the Vault container in the list `start_containers` returns.
const VAULT_INDEX: usize = 1;

/// What the container thread reports back once everything is ready.
struct Started {
    vault_port: u16,
    unseal_key: Option<String>,
    kafka_port: u16,
    postgres_port: u16,
    postgres_addr_for_vault: String,
}

/// Settings decided before any container starts.
struct Plan {
    run_id: String,
    root_token: String,
    pg_password: String,
    /// Host port for Kafka, fixed up front: the broker must advertise it at start.
    kafka_port: u16,
    /// Host port for Vault, fixed up front so a restarted container keeps it.
    vault_port: u16,
}

/// A request to the container thread, with where to send the outcome.
enum Request {
    /// Kill the Vault container (`docker stop -t 0`).
    StopVault(mpsc::Sender<Result<(), String>>),
    /// Start the stopped Vault container again and wait until it is ready; the
    /// answer is the new dev server's unseal key.
    StartVault(mpsc::Sender<Result<Option<String>, String>>),
    /// Remove every container (at exit); the reply says it is done.
    RemoveAll(mpsc::Sender<()>),
}

pub(super) fn start() -> Servers {
    let plan = Plan {
        run_id: random_secret("")[..12].to_owned(),
        root_token: random_secret("root-"),
        pg_password: random_secret("pg-"),
        kafka_port: free_port(),
        vault_port: free_port(),
    };
    let (report, reported) = mpsc::channel::<Result<Started, String>>();
    let (requests, incoming) = unbounded_channel::<Request>();
    let thread_plan = Plan {
        run_id: plan.run_id.clone(),
        root_token: plan.root_token.clone(),
        pg_password: plan.pg_password.clone(),
        kafka_port: plan.kafka_port,
        vault_port: plan.vault_port,
    };
    thread::Builder::new()
        .name("test-containers".to_owned())
        .spawn(move || own_containers(thread_plan, report, incoming))
        .expect("starting the test-containers thread");

    let started = match reported.recv() {
        Ok(Ok(started)) => started,
        Ok(Err(failure)) => panic!("starting the test containers failed: {failure}"),
        Err(_) => panic!("the test-containers thread died while starting the containers"),
    };
    remove_containers_at_exit(requests.clone());

    Servers {
        stack: Stack::Containers,
        vault_addr: format!("http://127.0.0.1:{}", started.vault_port),
        root_token: plan.root_token,
        unseal_key: Mutex::new(started.unseal_key),
        vault_process: VaultProcess::Container(ContainerVault { requests, running: AtomicBool::new(true) }),
        vault_generation: AtomicU64::new(0),
        bootstrap_servers: format!("127.0.0.1:{}", started.kafka_port),
        postgres: PostgresEndpoint {
            port: started.postgres_port,
            password: plan.pg_password,
            addr_for_vault: started.postgres_addr_for_vault,
        },
        log_dir: None,
    }
}

/// Body of the container thread: start, report, then hold the containers and serve
/// requests until asked to remove them.
fn own_containers(
    plan: Plan,
    report: mpsc::Sender<Result<Started, String>>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the Tokio runtime of the test-containers thread");
    runtime.block_on(async move {
        // On failure the containers started so far are dropped here, which removes them.
        let (containers, started) = match start_containers(&plan).await {
            Ok(ready) => ready,
            Err(failure) => {
                let _ = report.send(Err(failure));
                return;
            }
        };
        let vault_port = started.vault_port;
        let _ = report.send(Ok(started));

        let vault = &containers[VAULT_INDEX];
        let mut removed = None;
        while let Some(request) = requests.recv().await {
            match request {
                Request::StopVault(reply) => {
                    let stopped = vault
                        .stop_with_timeout(Some(0))
                        .await
                        .map_err(|e| format!("stopping the Vault container: {e}"));
                    let _ = reply.send(stopped);
                }
                Request::StartVault(reply) => {
                    let _ = reply.send(restart_vault(vault, vault_port).await);
                }
                Request::RemoveAll(done) => {
                    removed = Some(done);
                    break;
                }
            }
        }
        for container in containers {
            let _ = container.rm().await;
        }
        if let Some(done) = removed {
            let _ = done.send(());
        }
    });
}

/// Starts the stopped Vault container again, waits until it answers, and returns
/// the unseal key its new dev server printed.
async fn restart_vault(vault: &ContainerAsync<GenericImage>, vault_port: u16) -> Result<Option<String>, String> {
    let keys_before = unseal_keys(vault).await.len();
    vault.start().await.map_err(|e| format!("starting the Vault container again: {e}"))?;
    wait_ready(vault, "restarted Vault container", || probe_vault_health(&format!("127.0.0.1:{vault_port}"))).await?;
    // The container's output keeps the earlier runs' banners; wait for the new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let keys = unseal_keys(vault).await;
        if keys.len() > keys_before || Instant::now() >= deadline {
            return Ok(keys.last().cloned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn unseal_keys(vault: &ContainerAsync<GenericImage>) -> Vec<String> {
    let output = vault.stdout_to_vec().await.unwrap_or_default();
    parse_unseal_keys(&String::from_utf8_lossy(&output))
}

/// The Vault container, as seen from the tests: requests go to the container thread.
#[derive(Debug)]
pub(super) struct ContainerVault {
    requests: UnboundedSender<Request>,
    /// False between `stop` and a successful `restart`.
    running: AtomicBool,
}

impl ContainerVault {
    pub(super) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Kills the Vault container (`docker stop -t 0`). Blocks until Docker has done it.
    pub(super) fn stop(&self) -> Result<(), String> {
        if !self.is_running() {
            return Err("the Vault container is not running (already stopped)".to_owned());
        }
        self.ask(Request::StopVault)?;
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Starts the stopped Vault container again (same host port, same root token) and
    /// waits until it is ready. Returns the new unseal key. Blocks.
    pub(super) fn restart(&self) -> Result<Option<String>, String> {
        if self.is_running() {
            return Err("the Vault container is already running; call vault_stop() first".into());
        }
        let unseal_key = self.ask(Request::StartVault)?;
        self.running.store(true, Ordering::SeqCst);
        Ok(unseal_key)
    }

    fn ask<T>(&self, request: impl FnOnce(mpsc::Sender<Result<T, String>>) -> Request) -> Result<T, String> {
        let (reply, answer) = mpsc::channel();
        self.requests.send(request(reply)).map_err(|_| "the test-containers thread is gone".to_owned())?;
        answer
            .recv_timeout(VAULT_CONTROL_TIMEOUT)
            .map_err(|e| format!("no answer from the test-containers thread: {e}"))?
    }
}

async fn start_containers(plan: &Plan) -> Result<(Vec<ContainerAsync<GenericImage>>, Started), String> {
    // Vault reaches PostgreSQL over a network of their own, by container name.
    let network = format!("onex-test-{}", plan.run_id);
    let postgres_name = format!("onex-test-postgres-{}", plan.run_id);

    let (name, tag) = image_from_env("ONEX_POSTGRES_IMAGE", "postgres:16-alpine");
    let postgres = GenericImage::new(name, tag)
        .with_exposed_port(5432.tcp())
        // The image's entrypoint runs a temporary server for initialisation first,
        // so the message appears twice; the second time it is the real server.
        .with_wait_for(WaitFor::log(
            LogWaitStrategy::stderr("database system is ready to accept connections").with_times(2),
        ))
        .with_network(&network)
        .with_container_name(&postgres_name)
        .with_label(RUN_LABEL, &plan.run_id)
        .with_env_var("POSTGRES_PASSWORD", &plan.pg_password)
        .with_cmd(["postgres", "-c", "fsync=off"])
        .with_startup_timeout(STARTUP_TIMEOUT)
        .start()
        .await
        .map_err(|e| format!("starting the PostgreSQL container: {e}"))?;
    let postgres_port =
        postgres.get_host_port_ipv4(5432.tcp()).await.map_err(|e| format!("PostgreSQL host port: {e}"))?;
    let mut containers = vec![postgres];
    wait_ready(&containers[0], "PostgreSQL container", || probe_tcp(&format!("127.0.0.1:{postgres_port}"))).await?;

    let (name, tag) = image_from_env("ONEX_VAULT_IMAGE", "hashicorp/vault:1.17");
    let vault = GenericImage::new(name, tag)
        .with_wait_for(WaitFor::message_on_stdout("Vault server started!"))
        .with_mapped_port(plan.vault_port, 8200.tcp())
        .with_network(&network)
        .with_label(RUN_LABEL, &plan.run_id)
        .with_env_var("VAULT_DEV_ROOT_TOKEN_ID", &plan.root_token)
        .with_env_var("VAULT_DEV_LISTEN_ADDRESS", "0.0.0.0:8200")
        // Dev mode keeps everything in memory; no need for the IPC_LOCK capability.
        .with_env_var("SKIP_SETCAP", "true")
        .with_startup_timeout(STARTUP_TIMEOUT)
        .start()
        .await
        .map_err(|e| format!("starting the Vault container: {e}"))?;
    let vault_port = plan.vault_port;
    containers.push(vault);
    wait_ready(&containers[VAULT_INDEX], "Vault container", || probe_vault_health(&format!("127.0.0.1:{vault_port}")))
        .await?;
    let unseal_key = containers[VAULT_INDEX]
        .stdout_to_vec()
        .await
        .ok()
        .and_then(|output| parse_unseal_key(&String::from_utf8_lossy(&output)));

    let (name, tag) = image_from_env("ONEX_KAFKA_IMAGE", "apache/kafka:3.8.0");
    // Setting any KAFKA_* variable makes the image ignore its default config, so the
    // whole single-node KRaft configuration is spelled out.
    let kafka = GenericImage::new(name, tag)
        .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
        .with_mapped_port(plan.kafka_port, 9092.tcp())
        .with_label(RUN_LABEL, &plan.run_id)
        // KRaft wants a base64 UUID here (this one is the image's documented default).
        .with_env_var("CLUSTER_ID", "5L6g3nShT-eMCtK--X86sw")
        .with_env_var("KAFKA_NODE_ID", "1")
        .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env_var("KAFKA_LISTENERS", "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093")
        .with_env_var("KAFKA_ADVERTISED_LISTENERS", format!("PLAINTEXT://127.0.0.1:{}", plan.kafka_port))
        .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env_var("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env_var("KAFKA_NUM_PARTITIONS", "1")
        // Like with Tansu, tests create their topics explicitly.
        .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_startup_timeout(STARTUP_TIMEOUT)
        .start()
        .await
        .map_err(|e| format!("starting the Kafka container: {e}"))?;
    containers.push(kafka);
    let mut kafka_probe = kafka_metadata_probe(&format!("127.0.0.1:{}", plan.kafka_port));
    wait_ready(&containers[2], "Kafka container", &mut kafka_probe).await?;

    let started = Started {
        vault_port,
        unseal_key,
        kafka_port: plan.kafka_port,
        postgres_port,
        postgres_addr_for_vault: format!("{postgres_name}:5432"),
    };
    Ok((containers, started))
}

/// Polls `probe` until it passes; on failure, adds the container's last log lines.
async fn wait_ready(
    container: &ContainerAsync<GenericImage>,
    what: &str,
    probe: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let outcome = tokio::task::block_in_place(|| poll_until_ready(what, READY_TIMEOUT, || Ok(()), probe));
    match outcome {
        Ok(()) => Ok(()),
        Err(failure) => {
            let stdout = container.stdout_to_vec().await.unwrap_or_default();
            let stderr = container.stderr_to_vec().await.unwrap_or_default();
            Err(format!(
                "{failure}\n--- container stdout (tail) ---\n{}\n--- container stderr (tail) ---\n{}\n---",
                tail(&stdout, 40),
                tail(&stderr, 40)
            ))
        }
    }
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `(name, tag)` from the variable `var` (`name:tag`), else from `default`.
fn image_from_env(var: &str, default: &str) -> (String, String) {
    let reference = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    // Split at the last ':' after the last '/', so `registry:5000/name` keeps its port.
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            (reference[..colon].to_owned(), reference[colon + 1..].to_owned())
        }
        None => (reference, "latest".to_owned()),
    }
}

/// Where the atexit hook finds the container thread.
static STOP_CONTAINERS: OnceLock<Mutex<Option<UnboundedSender<Request>>>> = OnceLock::new();

fn remove_containers_at_exit(stop: UnboundedSender<Request>) {
    STOP_CONTAINERS.set(Mutex::new(Some(stop))).expect("the containers stack is started only once per process");
    // SAFETY: registers a plain `extern "C"` function with no arguments; it does not
    // unwind (it never panics).
    let registered = unsafe { libc::atexit(stop_containers) };
    if registered != 0 {
        super::servers::announce(
            "warning: could not register the container clean-up; remove leftovers with \
             `docker rm -f $(docker ps -aq --filter label=onex.test-run)`",
        );
    }
}

/// Runs when the test binary exits: asks the container thread to remove the
/// containers and waits (bounded) until it has.
extern "C" fn stop_containers() {
    let stop = STOP_CONTAINERS.get().and_then(|slot| slot.lock().ok().and_then(|mut stop| stop.take()));
    if let Some(stop) = stop {
        let (done, finished) = mpsc::channel();
        if stop.send(Request::RemoveAll(done)).is_ok() {
            let _ = finished.recv_timeout(Duration::from_secs(30));
        }
    }
}
