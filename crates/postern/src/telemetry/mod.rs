//! Diagnostics, the access log and metrics.
//!
//! Diagnostics go to stderr through `tracing`. The access log is one JSON
//! line per request on stdout, written off the request path.

pub mod access;
mod batch;
mod json_line;
pub mod metrics;
pub mod reasons;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Starts diagnostics logging on stderr as JSON lines. `RUST_LOG` sets the
/// filter; the default is `info`.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_events(FmtSpan::NONE)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}
