//! Logging set-up: `tracing` to stderr, filtered by `OPSHUB_LOG`, as text or JSON lines
//! (`OPSHUB_LOG_FORMAT`). Nothing secret is ever passed to a log macro: tokens, keys and
//! secret values stay out of spans and fields by construction (see `http::request_span`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
