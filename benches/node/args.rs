//! The command line of the benchmark and the settings it becomes.

use super::*;

#[derive(Parser, Debug)]
#[command(about = "The node against direct Vault and a Kafka echo, closed loop, at several concurrency levels")]
pub(crate) struct Args {
    /// Requests in flight, one run per level [default: 1,16,64,256; 1,8 with --smoke]
    #[arg(long, value_delimiter = ',')]
    pub(crate) concurrency: Option<Vec<usize>>,
    /// Measured seconds per level and load, after a warm-up of a fifth of it
    /// (0.5 to 2 s) [default: 10; 2 with --smoke]
    #[arg(long)]
    pub(crate) duration_seconds: Option<f64>,
    /// Request mix, kind=weight; kinds: get, set, list, batch (a
    /// get_secrets_batch of 8 paths; direct Vault: 8 concurrent reads)
    #[arg(long, default_value = "get=90,set=5,list=5")]
    pub(crate) mix: String,
    /// Run the node with its read cache on (judged against the Kafka echo
    /// alone: cached reads do not touch Vault); use with --mix get=100
    #[arg(long)]
    pub(crate) read_cache: bool,
    /// A contract setting by its environment variable, NAME=VALUE, for the
    /// node and the bench's own Kafka clients alike (repeatable), e.g.
    /// KAFKA_FETCH_WAIT_MAX_MS=5 or KAFKA_AUDIT_LINGER_MS=20 [default: the
    /// shipped contract's values]
    #[arg(long = "contract-env", value_name = "NAME=VALUE")]
    pub(crate) contract_env: Vec<String>,
    /// The Python platform's pattern to run as a fourth load (needs hvac and
    /// confluent-kafka in ONEX_PYTHON) [default: ../shared/bench/python_peer.py
    /// beside the repository, when it is there]
    #[arg(long)]
    pub(crate) python_peer: Option<PathBuf>,
    /// Do not run the Python peer
    #[arg(long, conflicts_with = "python_peer")]
    pub(crate) no_python_peer: bool,
    /// Secrets written before the runs [default: 1000; 100 with --smoke]
    #[arg(long)]
    pub(crate) secrets: Option<usize>,
    /// Also write the report as JSON to this file
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Also write the report as Markdown (tables, breakdown, targets) to this file
    #[arg(long)]
    pub(crate) markdown: Option<PathBuf>,
    /// A tiny run for CI: levels 1,8 and 2 s each unless given
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,
}

/// The arguments with their defaults applied.
pub(crate) struct Settings {
    pub(crate) levels: Vec<usize>,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) mix: Mix,
    pub(crate) secrets: usize,
    pub(crate) json: Option<PathBuf>,
    pub(crate) markdown: Option<PathBuf>,
    pub(crate) read_cache: bool,
    /// Contract settings given by environment variable (`--contract-env`).
    pub(crate) contract_env: Vec<(String, String)>,
    /// The Python peer's script, if it is to run.
    pub(crate) python_peer: Option<PathBuf>,
}

impl Settings {
    pub(crate) fn from_args(args: Args) -> Result<Settings, String> {
        let levels = args.concurrency.unwrap_or_else(|| if args.smoke { vec![1, 8] } else { vec![1, 16, 64, 256] });
        if levels.is_empty() || levels.contains(&0) {
            return Err("--concurrency: give levels of at least 1, e.g. 1,16,64".into());
        }
        let seconds = args.duration_seconds.unwrap_or(if args.smoke { 2.0 } else { 10.0 });
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err("--duration-seconds: must be above 0".into());
        }
        let duration = Duration::from_secs_f64(seconds);
        let warmup = (duration / 5).clamp(Duration::from_millis(500), Duration::from_secs(2));
        let secrets = args.secrets.unwrap_or(if args.smoke { 100 } else { 1000 });
        if secrets == 0 {
            return Err("--secrets: must be at least 1".into());
        }
        let mix = Mix::parse(&args.mix)?;
        let contract_env = args
            .contract_env
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
                _ => Err(format!("--contract-env {pair:?}: give NAME=VALUE")),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Settings {
            levels,
            duration,
            warmup,
            mix,
            secrets,
            json: args.json,
            markdown: args.markdown,
            read_cache: args.read_cache,
            contract_env,
            python_peer: if args.no_python_peer {
                None
            } else {
                Some(args.python_peer.unwrap_or_else(|| PathBuf::from(peer::DEFAULT_SCRIPT)))
            },
        })
    }
}
