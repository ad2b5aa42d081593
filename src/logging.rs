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
