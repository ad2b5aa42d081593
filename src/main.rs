//! `onex-vault-adapter`: run the node, check its contract, print its schemas,
//! send requests, generate requester keys, watch health.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use onex_vault_adapter::contract::{Contract, SecurityProfile};
use onex_vault_adapter::leases::LeaseKeeper;
use onex_vault_adapter::operations::Dispatcher;
use onex_vault_adapter::resilience::{BreakerConfig, CircuitBreaker};
use onex_vault_adapter::runtime::{self, Node};
use onex_vault_adapter::security::{self, Gate, ReplayLedger};
use onex_vault_adapter::telemetry::Telemetry;
use onex_vault_adapter::vault::{connect_at_start, keep_token_alive};
use onex_vault_adapter::{http, logging, shutdown};
use onex_vault_tools::{bus::BusArgs, health_view, identity, request, resolve};

#[derive(Parser)]
#[command(name = "onex-vault-adapter", version, about = "ONEX effect node bridging Kafka and Vault")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the node: consume requests, answer them, until SIGTERM/SIGINT.
    Run {
        /// The contract file.
        #[arg(long, env = "ONEX_CONTRACT", default_value = "contract.yaml")]
        contract: PathBuf,
    },
    /// Validate a contract and print it resolved, secrets redacted (exit 1 if invalid).
    CheckContract {
        #[arg(env = "ONEX_CONTRACT", default_value = "contract.yaml")]
        path: PathBuf,
    },
    /// Send a request envelope (a file, or `-` for stdin) and print the reply.
    /// Exit 0 on a success reply, 1 on an error reply, 2 when no reply came.
    Send {
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Kafka, topics, timeout, identity (signs the request, opens a sealed reply).
        #[command(flatten)]
        bus: BusArgs,
    },
    /// One typed request through the client library: `request get app/db`,
    /// `set`, `delete`, `list`, `renew-lease`, `lookup-lease`, `revoke-lease`,
    /// `renew-token`. Exit 0 success, 1 error reply, 2 usage or no answer.
    Request(request::RequestArgs),
    /// Fetch the secrets ONEX contracts reference (`${vault:MOUNT/PATH#FIELD}`)
    /// through the node into an env file (0600) or a command's environment.
    Resolve(resolve::ResolveArgs),
    /// Print the node's AsyncAPI 3 document (YAML), generated from the contract and the models.
    Asyncapi {
        #[arg(default_value = "contract.yaml")]
        contract: PathBuf,
    },
    /// Generate a runtime's keys (a requester's, or the node's own):
    /// writes `<NAME>.identity.json` (private keys, mode 0600) into --dir and
    /// prints its public key and access-policy entry.
    Keygen {
        /// The runtime's `runtime_id`, e.g. node_billing.
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Show one row per node instance from the health topic, like `kubectl top`.
    ///
    /// Exit 0 after printing, 2 when Kafka is unreachable, 1 on other failures.
    Health(health_view::HealthArgs),
    /// Print the JSON Schemas of the node's messages (all, or the one named).
    Schema {
        /// e.g. vault-request, vault-reply, vault-dead-letter, vault-health, circuit-breaker
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { contract } => run(contract),
        Command::CheckContract { path } => match Contract::load(&path) {
            Ok(contract) => {
                print!("{}", contract.to_redacted_yaml());
                eprintln!("{}: valid", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Command::Schema { name } => print_schemas(name.as_deref()),
        Command::Health(args) => health_view::run(args),
        Command::Send { file, bus } => onex_vault_tools::send::run(&file, &bus),
        Command::Keygen { name, dir } => identity::keygen(&name, &dir),
        Command::Request(args) => request::run(args),
        Command::Resolve(args) => resolve::run(args),
        Command::Asyncapi { contract } => match onex_vault_adapter::asyncapi::document_of_file(&contract) {
            Ok(document) => {
                print!("{}", serde_yaml::to_string(&document).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn print_schemas(name: Option<&str>) -> ExitCode {
    let schemas = onex_vault_models::schemas();
    let chosen: Vec<_> = schemas.iter().filter(|s| name.is_none_or(|n| n == s.name)).collect();
    if chosen.is_empty() {
        let names: Vec<_> = schemas.iter().map(|s| s.name).collect();
        eprintln!("no schema named {:?}; known: {}", name.unwrap_or_default(), names.join(", "));
        return ExitCode::FAILURE;
    }
    let json = if chosen.len() == 1 {
        serde_json::to_string_pretty(&chosen[0].schema)
    } else {
        let all: serde_json::Map<_, _> = chosen.iter().map(|s| (s.name.to_owned(), s.schema.clone())).collect();
        serde_json::to_string_pretty(&all)
    };
    match json {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot print schemas: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(contract_path: PathBuf) -> ExitCode {
    logging::init();
    let contract = match Contract::load(&contract_path) {
        Ok(contract) => contract,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(contract)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "node failed");
            ExitCode::FAILURE
        }
    }
}

/// Builds the node from its contract and runs it until SIGTERM/SIGINT:
/// HTTP endpoint, Vault login, breaker, Kafka, then the health reporter and
/// breaker-event publisher beside the main loop.
async fn start(contract: Contract) -> anyhow::Result<()> {
    let stop = shutdown::on_signal();
    let instance_id = instance_id();
    tracing::info!(
        node = onex_vault_models::NODE_NAME,
        version = env!("CARGO_PKG_VERSION"),
        instance = %instance_id,
        vault = %contract.vault.address,
        auth = ?contract.vault.auth.method,
        "starting"
    );
    let slot: http::NodeSlot = Arc::default();
    let health = &contract.health_check;
    if health.enabled {
        http::serve(health.http_port, &health.endpoint, slot.clone(), stop.clone()).await?;
    }
    let telemetry = Arc::new(Telemetry::new());
    let vault = match connect_at_start(&contract.vault, &telemetry, &stop).await {
        Ok(Some(vault)) => vault,
        Ok(None) => return Ok(()),
        Err(error) => anyhow::bail!("Vault: {error}"),
    };

    let policy = &contract.error_handling.circuit_breaker;
    let (transitions_tx, transitions) = tokio::sync::mpsc::unbounded_channel();
    let breaker = CircuitBreaker::new(BreakerConfig {
        // A disabled breaker is one that never opens.
        failure_threshold: if policy.enabled { policy.failure_threshold } else { u32::MAX },
        open_duration: std::time::Duration::from_millis(policy.reset_timeout_ms),
        half_open_max_probes: policy.half_open_max_probes,
        success_threshold: policy.success_threshold,
    })
    .report_transitions(transitions_tx);

    let policy = security::load_policy(&contract, &vault)
        .await
        .map_err(|e| anyhow::anyhow!("access_policy.vault_keys: cannot read the requester keys from Vault: {e}"))?;
    let publisher = runtime::publisher(&contract)?;
    let ledger = match contract.security.profile {
        SecurityProfile::Strict => {
            slot.waiting_on("reading the replay ledger from Kafka");
            Some(ReplayLedger::open(&contract, publisher.clone(), &instance_id, stop.clone()).await?)
        }
        SecurityProfile::Dev => None,
    };
    let gate = Gate::new(&contract, policy, ledger)?;
    for warning in gate.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(profile = gate.profile().as_str(), requesters = gate.requesters(), "security checks ready");

    let vault = Arc::new(vault);
    let (lease_events_tx, lease_events) = tokio::sync::mpsc::unbounded_channel();
    slot.waiting_on("reading the lease registry from Kafka");
    let leases = LeaseKeeper::open(
        &contract,
        vault.clone(),
        publisher.clone(),
        &instance_id,
        lease_events_tx,
        telemetry.clone(),
        stop.clone(),
    )
    .await?;
    let dispatcher = Dispatcher::new(&contract, vault, Arc::new(breaker), leases.clone(), telemetry.clone());
    let node = Arc::new(Node { contract, dispatcher, publisher, gate, telemetry, instance_id });
    slot.built(node.clone());

    tokio::spawn(runtime::publish_breaker_transitions(node.clone(), transitions, stop.clone()));
    tokio::spawn(runtime::publish_lease_events(node.clone(), lease_events, stop.clone()));
    tokio::spawn(security::refresh_policy(node.clone(), stop.clone()));
    let renewal = &node.contract.vault.token_renewal;
    if renewal.enabled {
        let vault = node.dispatcher.vault_handle();
        tokio::spawn(keep_token_alive(vault, node.telemetry.clone(), renewal.renew_at_fraction, stop.clone()));
    }
    let reporter = node
        .contract
        .health_check
        .enabled
        .then(|| tokio::spawn(onex_vault_adapter::health::report(node.clone(), stop.clone())));
    let result = runtime::run(node, stop).await;
    // Leave the lease registry's group, so the leases renewed here go to
    // the other instances at once (bounded).
    leases.close(std::time::Duration::from_secs(5)).await;
    if let Some(reporter) = reporter {
        // The reporter publishes its `stopping` event (bounded) and ends.
        let _ = reporter.await;
    }
    result
}

/// This process's name: `ONEX_INSTANCE_ID`, else `<hostname>-<random>`.
fn instance_id() -> String {
    if let Ok(id) = std::env::var("ONEX_INSTANCE_ID") {
        if !id.trim().is_empty() {
            return id.trim().to_owned();
        }
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
