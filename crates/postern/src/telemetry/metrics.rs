//! Prometheus metrics. Every label value comes from a fixed set or from the
//! config (gate, app, reason), never from request data, so the number of
//! series stays bounded.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::access::AccessRecord;
use crate::policy::admission::{AdmissionKind, Gate, Refusal};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from 1 ms to 10 minutes (LLM streams are long).
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
    600.0,
];

/// Installs the global recorder once and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once")
    })
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

pub fn record_request(record: &AccessRecord) {
    let gate = record.gate.as_str();
    let app = record.app.as_deref().unwrap_or("-").to_owned();
    let class = match record.status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!("postern_requests_total", "gate" => gate, "app" => app.clone(), "status_class" => class)
        .increment(1);
    histogram!("postern_request_duration_seconds", "gate" => gate, "app" => app.clone())
        .record(record.duration_ms / 1000.0);
    if let Some(upstream_ms) = record.upstream_ms {
        histogram!("postern_upstream_response_header_seconds", "gate" => gate, "app" => app)
            .record(upstream_ms / 1000.0);
    }
}

pub fn record_admission(gate: Gate, kind: AdmissionKind) {
    counter!("postern_admissions_total", "gate" => gate.as_str(), "kind" => kind.as_str())
        .increment(1);
}

pub fn record_refusal(gate: Gate, reason: Refusal) {
    counter!("postern_refusals_total", "gate" => gate.as_str(), "reason" => reason.as_str())
        .increment(1);
}

/// Counts a request that hyper rejected before the pipeline saw it.
pub fn record_client_error(gate: Gate, kind: &'static str) {
    counter!("postern_client_errors_total", "gate" => gate.as_str(), "kind" => kind).increment(1);
}

pub fn connection_opened(gate: Gate) {
    gauge!("postern_open_connections", "gate" => gate.as_str()).increment(1.0);
}

pub fn connection_closed(gate: Gate) {
    gauge!("postern_open_connections", "gate" => gate.as_str()).decrement(1.0);
}

pub fn record_upstream_error(gate: Gate, app: &str, kind: &'static str) {
    counter!("postern_upstream_errors_total", "gate" => gate.as_str(), "app" => app.to_owned(), "kind" => kind)
        .increment(1);
}

/// `file` is `vars` or `endpoints`; `outcome` is `applied` or `rejected`.
pub fn record_reload(file: &'static str, outcome: &'static str) {
    counter!("postern_config_reloads_total", "file" => file, "outcome" => outcome).increment(1);
}

pub fn set_endpoints_loaded(count: usize) {
    gauge!("postern_privatelink_endpoints").set(count as f64);
}
