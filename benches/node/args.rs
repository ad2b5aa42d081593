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
    /// fetch.wait.max.ms of every consumer (the node's and the bench's), via
    /// KAFKA_FETCH_WAIT_MAX_MS [default: the contract's, 100]
    #[arg(long)]
    pub(crate) fetch_wait_ms: Option<u32>,
    /// Secrets written before the runs [default: 1000; 100 with --smoke]
    #[arg(long)]
    pub(crate) secrets: Option<usize>,
    /// Also write the report as JSON to this file
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
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
    pub(crate) read_cache: bool,
    pub(crate) fetch_wait_ms: Option<u32>,
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
        Ok(Settings {
            levels,
            duration,
            warmup,
            mix,
            secrets,
            json: args.json,
            read_cache: args.read_cache,
            fetch_wait_ms: args.fetch_wait_ms,
        })
    }
}
