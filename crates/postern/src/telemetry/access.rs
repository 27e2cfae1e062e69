//! The access log: one JSON line per request, the same schema on both gates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::batch::{self, FlushGuard};
use super::metrics::RequestMetrics;
use crate::policy::admission::{Gate, canonical};

/// One request as the access log records it. It never contains a credential.
#[derive(Clone, Serialize)]
pub struct AccessRecord {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub gate: Gate,
    /// The app, or `null` when no app matched.
    pub app: Option<Arc<str>>,
    pub method: String,
    pub host: Option<String>,
    /// The path without the query, whose values may be secret.
    pub path: String,
    pub protocol: &'static str,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    /// Time from sending the request upstream to its response headers.
    pub upstream_ms: Option<f64>,
    pub client_addr: String,
    pub peer_addr: String,
    pub endpoint_id: Option<String>,
    pub endpoint_owner: Option<String>,
    pub identity: Option<Arc<str>>,
    pub auth_method: Option<Arc<str>>,
    pub request_id: String,
    /// `allow`, `deny` or `error`.
    pub decision: &'static str,
    /// Reason for the gateway's decision, as a fixed code.
    pub reason: &'static str,
    /// The metric handles of the matched app; unrouted requests use shared
    /// ones.
    #[serde(skip)]
    pub metrics: Option<Arc<RequestMetrics>>,
}

impl Serialize for Gate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// Shows an address with IPv4-mapped IPv6 written as plain IPv4.
pub fn show_addr(addr: SocketAddr) -> String {
    SocketAddr::new(canonical(addr.ip()), addr.port()).to_string()
}

pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Starts the access log writer on stdout. Keep the guard alive until exit:
/// dropping it writes the lines still buffered.
pub fn init() -> FlushGuard {
    batch::init()
}

// === impl AccessRecord ===

impl AccessRecord {
    /// Writes the record to the access log and updates the request metrics.
    pub fn emit(&self) {
        super::metrics::record_request(self);

        batch::append(|buf| {
            if let Err(e) = serde_json::to_writer(&mut *buf, self) {
                tracing::warn!(error = %e, "Access log record could not be encoded");
                return;
            }
            buf.push(b'\n');
        });
    }
}
