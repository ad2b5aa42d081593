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

use std::{
    sync::{mpsc, Mutex, OnceLock},
    thread,
    time::Duration,
};

use testcontainers::{
    core::{wait::LogWaitStrategy, IntoContainerPort, WaitFor},
    runners::AsyncRunner,
    ContainerAsync, GenericImage, ImageExt,
};

use super::servers::{
    free_port, kafka_metadata_probe, parse_unseal_key, poll_until_ready, probe_tcp,
    probe_vault_health, random_secret, PostgresEndpoint, Servers, Stack,
};

const RUN_LABEL: &str = "onex.test-run";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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
}

/// A request to remove the containers; the reply says it is done.
type StopRequest = mpsc::Sender<()>;

pub(super) fn start() -> Servers {
    let plan = Plan {
        run_id: random_secret("")[..12].to_owned(),
        root_token: random_secret("root-"),
        pg_password: random_secret("pg-"),
        kafka_port: free_port(),
    };
    let (report, reported) = mpsc::channel::<Result<Started, String>>();
    let (stop, stop_requested) = mpsc::channel::<StopRequest>();
    let thread_plan = Plan {
        run_id: plan.run_id.clone(),
        root_token: plan.root_token.clone(),
        pg_password: plan.pg_password.clone(),
        kafka_port: plan.kafka_port,
    };
    thread::Builder::new()
        .name("test-containers".to_owned())
        .spawn(move || own_containers(thread_plan, report, stop_requested))
        .expect("starting the test-containers thread");

    let started = match reported.recv() {
        Ok(Ok(started)) => started,
        Ok(Err(failure)) => panic!("starting the test containers failed: {failure}"),
        Err(_) => panic!("the test-containers thread died while starting the containers"),
    };
    remove_containers_at_exit(stop);

    Servers {
        stack: Stack::Containers,
        vault_addr: format!("http://127.0.0.1:{}", started.vault_port),
        root_token: plan.root_token,
        unseal_key: started.unseal_key,
        bootstrap_servers: format!("127.0.0.1:{}", started.kafka_port),
        postgres: PostgresEndpoint {
            port: started.postgres_port,
            password: plan.pg_password,
            addr_for_vault: started.postgres_addr_for_vault,
        },
        log_dir: None,
    }
}

/// Body of the container thread: start, report, then hold the containers until
/// asked to remove them.
fn own_containers(
    plan: Plan,
    report: mpsc::Sender<Result<Started, String>>,
    stop_requested: mpsc::Receiver<StopRequest>,
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
        let _ = report.send(Ok(started));

        let stop = tokio::task::spawn_blocking(move || stop_requested.recv()).await;
        for container in containers {
            let _ = container.rm().await;
        }
        if let Ok(Ok(done)) = stop {
            let _ = done.send(());
        }
    });
}

async fn start_containers(
    plan: &Plan,
) -> Result<(Vec<ContainerAsync<GenericImage>>, Started), String> {
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
    let postgres_port = postgres
        .get_host_port_ipv4(5432.tcp())
        .await
        .map_err(|e| format!("PostgreSQL host port: {e}"))?;
    let mut containers = vec![postgres];
    wait_ready(&containers[0], "PostgreSQL container", || {
        probe_tcp(&format!("127.0.0.1:{postgres_port}"))
    })
    .await?;

    let (name, tag) = image_from_env("ONEX_VAULT_IMAGE", "hashicorp/vault:1.17");
    let vault = GenericImage::new(name, tag)
        .with_exposed_port(8200.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Vault server started!"))
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
    let vault_port = vault
        .get_host_port_ipv4(8200.tcp())
        .await
        .map_err(|e| format!("Vault host port: {e}"))?;
    containers.push(vault);
    wait_ready(&containers[1], "Vault container", || {
        probe_vault_health(&format!("127.0.0.1:{vault_port}"))
    })
    .await?;
    let unseal_key = containers[1]
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
        .with_env_var(
            "KAFKA_LISTENERS",
            "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        )
        .with_env_var(
            "KAFKA_ADVERTISED_LISTENERS",
            format!("PLAINTEXT://127.0.0.1:{}", plan.kafka_port),
        )
        .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env_var(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        )
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
    let outcome =
        tokio::task::block_in_place(|| poll_until_ready(what, READY_TIMEOUT, || Ok(()), probe));
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
            (
                reference[..colon].to_owned(),
                reference[colon + 1..].to_owned(),
            )
        }
        None => (reference, "latest".to_owned()),
    }
}

/// Where the atexit hook finds the container thread.
static STOP_CONTAINERS: OnceLock<Mutex<Option<mpsc::Sender<StopRequest>>>> = OnceLock::new();

fn remove_containers_at_exit(stop: mpsc::Sender<StopRequest>) {
    STOP_CONTAINERS
        .set(Mutex::new(Some(stop)))
        .expect("the containers stack is started only once per process");
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
    let stop = STOP_CONTAINERS
        .get()
        .and_then(|slot| slot.lock().ok().and_then(|mut stop| stop.take()));
    if let Some(stop) = stop {
        let (done, finished) = mpsc::channel();
        if stop.send(done).is_ok() {
            let _ = finished.recv_timeout(Duration::from_secs(30));
        }
    }
}
