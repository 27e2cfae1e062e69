//! Prometheus metrics. Every label value comes from a fixed set or from the
//! config (gate, app, reason), never from request data, so the number of
//! series stays bounded.

use std::sync::OnceLock;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::access::AccessRecord;
use crate::policy::admission::{AdmissionKind, Gate, Refusal};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds, from 1 ms to 10 minutes (LLM streams are long).
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
    600.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global recorder once and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once");
        start_upkeep(handle.clone());
        handle
    })
}

/// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`].
/// The recorder keeps every sample until then, so without upkeep, and
/// without scrapes of `/metrics`, it grows with every request.
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("postern-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "The metrics upkeep thread could not start; histograms grow until /metrics is read");
    }
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Per-request metric handles of one app on one gate, registered once when
/// the config loads so that a request updates them without a registry
/// lookup.
pub struct RequestMetrics {
    /// Requests by status class, `1xx` to `5xx`.
    requests: [Counter; 5],
    duration: Histogram,
    upstream: Histogram,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl RequestMetrics {
    /// Registers the handles for `app` (`-` for requests that matched no
    /// app). Call it after [`install`], or the handles record nothing.
    pub fn new(gate: Gate, app: &str) -> Self {
        let gate = gate.as_str();
        let requests = STATUS_CLASSES.map(|class| {
            counter!("postern_requests_total", "gate" => gate, "app" => app.to_owned(), "status_class" => class)
        });
        RequestMetrics {
            requests,
            duration: histogram!("postern_request_duration_seconds", "gate" => gate, "app" => app.to_owned()),
            upstream: histogram!("postern_upstream_response_header_seconds", "gate" => gate, "app" => app.to_owned()),
        }
    }

    /// Returns the handles for requests on `gate` that matched no app.
    pub fn unrouted(gate: Gate) -> &'static RequestMetrics {
        static UNROUTED: OnceLock<[RequestMetrics; 2]> = OnceLock::new();
        let both = UNROUTED.get_or_init(|| {
            [
                RequestMetrics::new(Gate::Public, "-"),
                RequestMetrics::new(Gate::Private, "-"),
            ]
        });
        match gate {
            Gate::Public => &both[0],
            Gate::Private => &both[1],
        }
    }
}

pub fn record_request(record: &AccessRecord) {
    let metrics = match &record.metrics {
        Some(metrics) => metrics.as_ref(),
        None => RequestMetrics::unrouted(record.gate),
    };
    let class = (record.status / 100).clamp(1, 5) as usize - 1;
    metrics.requests[class].increment(1);
    metrics.duration.record(record.duration_ms / 1000.0);
    if let Some(upstream_ms) = record.upstream_ms {
        metrics.upstream.record(upstream_ms / 1000.0);
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

pub fn worker_connection_opened(gate: Gate, worker: usize) {
    gauge!("postern_worker_connections", "gate" => gate.as_str(), "worker" => worker.to_string())
        .increment(1.0);
}

pub fn worker_connection_closed(gate: Gate, worker: usize) {
    gauge!("postern_worker_connections", "gate" => gate.as_str(), "worker" => worker.to_string())
        .decrement(1.0);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    const OBSERVABILITY: &str = include_str!("../../../../docs/observability.md");

    /// Adds the metric names written as `"postern_..."` literals in the
    /// Rust files under `dir`. postern writes every metric name as such a
    /// literal at its macro call. A name built another way would escape
    /// this test.
    fn metric_names(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                metric_names(&path, names);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (_, rest) in text
                .match_indices("\"postern_")
                .map(|(i, _)| text.split_at(i + 1))
            {
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len());
                if rest[end..].starts_with('"') && end > "postern_".len() {
                    names.insert(rest[..end].to_owned());
                }
            }
        }
    }

    #[test]
    fn docs_list_every_metric() {
        let mut names = BTreeSet::new();
        metric_names(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut names,
        );
        assert!(names.contains("postern_requests_total"), "{names:?}");

        for name in &names {
            let rows = OBSERVABILITY
                .lines()
                .filter(|l| l.starts_with(&format!("| `{name}` |")))
                .count();
            assert_eq!(rows, 1, "rows for {name} in docs/observability.md");
        }
        let documented = OBSERVABILITY
            .lines()
            .filter_map(|l| l.strip_prefix("| `postern_"))
            .filter_map(|rest| rest.split_once('`'))
            .map(|(name, _)| format!("postern_{name}"));
        for name in documented {
            assert!(
                names.contains(&name),
                "{name} is documented but not in the code"
            );
        }
    }
}
