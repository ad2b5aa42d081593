//! `onex-vault-adapter health`: the operator's view of a fleet of nodes, one
//! row per instance like `kubectl top`, built from the health events the
//! nodes publish on the health topic.
//!
//! The pure part, unit-tested without Kafka: [`decode`] turns a record into a
//! [`Seen`], [`update`] keeps the last two events per instance in a
//! [`Fleet`], and [`render`] draws the table (rates come from the operation
//! counts of an instance's last two events). Around it, a thin Kafka loop:
//! [`snapshot`] reads the topic from its beginning to its current end and
//! renders once; [`follow`] keeps reading and redraws every second.
//! [`run`] is the subcommand behind both.

use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// The health topic of the wire contract.
pub const DEFAULT_TOPIC: &str = onex_vault_client::Topics::DEFAULT_HEALTH;

/// How long Kafka may stay silent (at start, or while catching up) before the
/// view gives up.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--follow` redraws.
const REDRAW_EVERY: Duration = Duration::from_secs(1);
/// Longest instance id shown; longer ones are cut with `…`.
const MAX_INSTANCE_CHARS: usize = 48;
/// Spaces between columns.
const GAP: &str = "   ";
/// ANSI: cursor home, clear screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// Arguments of the `health` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Keep reading and redraw the table every second, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Kafka bootstrap servers, e.g. `127.0.0.1:9092`.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// The health topic.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Instances whose last event is older than this are shown as `stale`.
    #[arg(long, default_value_t = 60)]
    pub stale_seconds: u64,
}
mod fleet;
mod kafka;
mod render;
#[cfg(test)]
mod tests;

pub use fleet::{decode, ingest, update, Fleet, Seen};
pub use kafka::{follow, snapshot, KafkaUnreachable};
pub use render::render;

/// The `health` subcommand: exit 0 after printing (or after Ctrl-C with
/// `--follow`), 2 when Kafka is unreachable, 1 on any other failure.
pub fn run(args: HealthArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        if args.follow {
            let stop = crate::on_ctrl_c();
            let terminal = std::io::stdout().is_terminal();
            follow(
                &args.bootstrap_servers,
                &args.topic,
                args.stale_seconds,
                Box::new(std::io::stdout()),
                terminal,
                stop,
            )
            .await
        } else {
            let table = snapshot(&args.bootstrap_servers, &args.topic, args.stale_seconds).await?;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(table.as_bytes()).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write the table"),
                _ => Ok(()),
            }
        }
    });
    // Do not wait for a blocked Kafka poll to notice the end.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<KafkaUnreachable>() => {
            eprintln!("health: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("health: {error:#}");
            ExitCode::FAILURE
        }
    }
}
