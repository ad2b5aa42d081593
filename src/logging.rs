//! Log output: JSON lines (default) or human-readable (`ONEX_LOG_FORMAT=pretty`),
//! filtered by `RUST_LOG` (default `info`).
//!
//! The HTTP layers under `vaultrs` (rustify, reqwest, hyper) are silenced
//! whatever `RUST_LOG` says: they log request URLs, bodies and Vault's raw
//! error text, which can carry paths, values and tokens.

use tracing_subscriber::EnvFilter;

const ALWAYS_QUIET: &[&str] =
    &["rustify=off", "vaultrs=off", "reqwest=off", "hyper=off", "hyper_util=off", "rdkafka=warn"];

pub fn init() {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in ALWAYS_QUIET {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let pretty = std::env::var("ONEX_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("pretty"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if pretty {
        builder.init();
    } else {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
    }
}

/// A rate limit for log lines an attacker can cause (refused and denied
/// records): up to `burst` lines at once, `per_second` after that; the lines
/// held back are counted and said in the next line let through.
pub struct Throttle {
    per_second: f64,
    burst: f64,
    state: std::sync::Mutex<ThrottleState>,
}

struct ThrottleState {
    tokens: f64,
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl Throttle {
    pub const fn new(per_second: u32, burst: u32) -> Throttle {
        Throttle {
            per_second: per_second as f64,
            burst: burst as f64,
            state: std::sync::Mutex::new(ThrottleState { tokens: burst as f64, last: None, held_back: 0 }),
        }
    }

    /// `Some(lines held back since the last one let through)` when this
    /// line may be logged, `None` when it is held back.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let elapsed = state.last.map_or(0.0, |last| now.duration_since(last).as_secs_f64());
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.burst);
        state.last = Some(now);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Some(std::mem::take(&mut state.held_back))
        } else {
            state.held_back += 1;
            None
        }
    }
}

/// Log lines of refused and denied records: 20 a second after a burst of 100.
pub static REFUSALS: Throttle = Throttle::new(20, 100);

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn a_burst_is_let_through_then_lines_are_held_back_and_counted() {
        let throttle = Throttle::new(1, 3);
        assert_eq!((0..3).map(|_| throttle.allow()).collect::<Vec<_>>(), vec![Some(0), Some(0), Some(0)]);
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(throttle.allow(), Some(2), "the next line says how many were held back");
    }
}
