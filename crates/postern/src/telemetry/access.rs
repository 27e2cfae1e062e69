//! The access log: one JSON line per request, the same schema on both gates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::batch::{self, FlushGuard};
use super::json_line::JsonLine;
use super::metrics::RequestMetrics;
use crate::policy::admission::{Gate, canonical};

/// One request as the access log records it. It never contains a credential.
#[derive(Clone)]
pub struct AccessRecord {
    pub time: SystemTime,
    pub gate: Gate,
    /// The app, or `null` when no app matched.
    pub app: Option<Arc<str>>,
    pub method: http::Method,
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
    pub client_addr: Arc<str>,
    pub peer_addr: Arc<str>,
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
    /// ones. Not logged.
    pub metrics: Option<Arc<RequestMetrics>>,
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
        debug_assert!(
            super::reasons::REASONS.contains(&self.reason),
            "access-log reason {:?} is missing from telemetry::reasons::REASONS",
            self.reason
        );
        super::metrics::record_request(self);

        batch::append(|buf| {
            self.write_json(JsonLine::new(buf));
            buf.push(b'\n');
        });
    }

    fn write_json(&self, mut line: JsonLine<'_>) {
        line.time("time", self.time);
        line.str("gate", self.gate.as_str());
        line.opt_str("app", self.app.as_deref());
        line.str("method", self.method.as_str());
        line.opt_str("host", self.host.as_deref());
        line.str("path", &self.path);
        line.str("protocol", self.protocol);
        line.u64("status", self.status.into());
        line.u64("bytes_in", self.bytes_in);
        line.u64("bytes_out", self.bytes_out);
        line.f64("duration_ms", self.duration_ms);
        line.opt_f64("upstream_ms", self.upstream_ms);
        line.str("client_addr", &self.client_addr);
        line.str("peer_addr", &self.peer_addr);
        line.opt_str("endpoint_id", self.endpoint_id.as_deref());
        line.opt_str("endpoint_owner", self.endpoint_owner.as_deref());
        line.opt_str("identity", self.identity.as_deref());
        line.opt_str("auth_method", self.auth_method.as_deref());
        line.str("request_id", &self.request_id);
        line.str("decision", self.decision);
        line.str("reason", self.reason);
        line.end();
    }
}
