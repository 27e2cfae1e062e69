//! `postern serve`: run the gates a vars file describes until SIGTERM or
//! SIGINT, then drain.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::reload;
use super::state::{Snapshot, State, load_endpoints};
use super::workers::Workers;
use crate::config::{Config, Problems};
use crate::policy::admission::Gate;
use crate::server::admin;
use crate::server::listener::GateListener;
use crate::telemetry::metrics;

/// Errors that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(Problems),
    #[error("cannot listen on {addr} for {what}: {source}; {}", bind_fix(source, *addr, key))]
    Bind {
        what: &'static str,
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Setup(String),
}

/// Addresses that a running gateway listens on, which differ from the
/// config's when it names port 0.
#[derive(Debug, Clone)]
pub struct Bound {
    pub public: Option<SocketAddr>,
    pub private: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// Loads the vars file and its endpoints file, or returns every problem in
/// both. When the vars file is invalid, the endpoints file it names is still
/// checked.
pub fn load(vars: &Path) -> Result<(Config, crate::config::Endpoints), Problems> {
    let config = match Config::load(vars) {
        Ok(config) => config,
        Err(mut problems) => {
            if let Some(file) = crate::config::named_endpoints_file(vars)
                && let Err(more) = file.load(vars)
            {
                problems.0.extend(more.0);
            }
            return Err(problems);
        }
    };
    let endpoints = load_endpoints(&config)?;
    Ok((config, endpoints))
}

/// Loads the vars file without reading any file it names, as
/// `check --skip-files` does: no TLS file, secret file or endpoints file.
/// [`Config::unread_files`] lists each of them.
pub fn load_without_files(vars: &Path) -> Result<Config, Problems> {
    let mut config = Config::load_without_files(vars)?;
    if let Some(file) = config
        .private
        .as_ref()
        .and_then(|p| p.endpoints_file.as_ref())
    {
        config.unread_files.push(crate::config::Problem {
            file: config.source.clone(),
            line: file.line,
            column: file.column,
            path: "privatelink.endpoints_file".to_owned(),
            message: file.path.display().to_string(),
        });
        config.unread_files.sort_by_key(|p| (p.line, p.column));
    }
    Ok(config)
}

/// Selection of the gates a process serves. A Kubernetes deployment runs each gate in
/// its own pods from the same vars file, so each can scale and fail alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GateSelection {
    /// Both gates (the private one only when it is enabled).
    #[default]
    All,
    /// The public gate only.
    Public,
    /// The private gate only; it must be enabled.
    Private,
}

impl GateSelection {
    fn serves(self, gate: Gate) -> bool {
        matches!(
            (self, gate),
            (GateSelection::All, _)
                | (GateSelection::Public, Gate::Public)
                | (GateSelection::Private, Gate::Private)
        )
    }
}

/// Runs the selected gates until `stop` resolves, then drains.
pub async fn serve(
    vars: &Path,
    gates: GateSelection,
    stop: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(&Bound),
) -> Result<(), StartError> {
    let (config, endpoints) = load(vars).map_err(StartError::Config)?;
    reload::log_config_warnings(&config);
    metrics::install();
    metrics::set_endpoints_loaded(endpoints.len());

    let limits = config.limits;
    raise_open_file_limit(limits.max_connections);
    let public_addr = Some(config.public.listen).filter(|_| gates.serves(Gate::Public));
    let private_addr = config
        .private
        .as_ref()
        .map(|p| p.gate.listen)
        .filter(|_| gates.serves(Gate::Private));
    if gates == GateSelection::Private && private_addr.is_none() {
        return Err(StartError::Setup(format!(
            "--gate private needs the private gate, but app_config.istio.private_gateway.enabled is not true in {}",
            vars.display()
        )));
    }
    let admin_addr = config.admin;
    let snapshot = Snapshot::new(config).map_err(StartError::Tls)?;
    let state = Arc::new(State::new(snapshot, endpoints));

    // Bind everything before serving anything, so a port conflict stops
    // the start cleanly.
    let workers = super::workers::count();
    let bind = |gate, addr, what, key| {
        GateListener::bind(gate, addr, workers, limits.max_connections)
            .map_err(|source| bind_error(what, key, addr, source))
    };
    let public = public_addr
        .map(|addr| {
            bind(
                Gate::Public,
                addr,
                "the public gate",
                "gateways.public.listen",
            )
        })
        .transpose()?;
    let private = private_addr
        .map(|addr| {
            bind(
                Gate::Private,
                addr,
                "the private gate",
                "gateways.private.listen",
            )
        })
        .transpose()?;
    let admin_listener = TcpListener::bind(admin_addr).await.map_err(|source| {
        bind_error(
            "the admin endpoints",
            "gateways.admin.listen",
            admin_addr,
            source,
        )
    })?;

    let bound = Bound {
        public: public.as_ref().and_then(|p| p.local_addr().ok()),
        private: private.as_ref().and_then(|p| p.local_addr().ok()),
        admin: admin_listener.local_addr().unwrap_or(admin_addr),
    };
    // Watch for reloads before reporting ready, so that no edit or SIGHUP
    // right after the start is missed (or, for SIGHUP, ends the process).
    let reloader = reload::Reloader::start(state.clone(), vars.to_path_buf());
    tracing::info!(
        public = %bound.public.map(|a| a.to_string()).unwrap_or_else(|| "disabled".into()),
        private = %bound.private.map(|a| a.to_string()).unwrap_or_else(|| "disabled".into()),
        admin = %bound.admin,
        version = env!("CARGO_PKG_VERSION"),
        "postern started"
    );
    on_bound(&bound);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let workers = start_workers(&state, [public, private], &tracker, &shutdown_rx)?;
    // The admin listener outlives the drain, so /readyz can report it.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin_task = tokio::spawn(admin::run(admin_listener, state.clone(), admin_stop_rx));
    let reload_task = tokio::spawn(reloader.run());

    stop.await;

    // Drain: report not ready and keep serving for the shutdown delay, so
    // that load balancers move new connections elsewhere first. Then stop
    // accepting, ask every connection to finish its in-flight requests, and
    // wait up to the grace period.
    state.start_draining();
    tracing::info!(
        delay = %humantime::format_duration(limits.shutdown_delay),
        grace_period = %humantime::format_duration(limits.shutdown_grace_period),
        "Shutting down; /readyz now reports 503"
    );
    tokio::time::sleep(limits.shutdown_delay).await;
    tracing::info!("Closing the listeners; draining connections");
    reload_task.abort();
    let _ = shutdown_tx.send(true);
    tracker.close();
    let open = tracker.len();
    if tokio::time::timeout(limits.shutdown_grace_period, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "Grace period over; closing the remaining connections"
        );
    } else {
        tracing::info!(drained = open, "All connections drained");
    }
    workers.stop().await;
    let _ = admin_stop_tx.send(true);
    let _ = admin_task.await;
    tracing::info!("postern stopped");
    Ok(())
}

/// Starts the workers, each accepting on its own socket of every gate.
fn start_workers(
    state: &Arc<State>,
    listeners: [Option<GateListener>; 2],
    tracker: &TaskTracker,
    shutdown: &watch::Receiver<bool>,
) -> Result<Workers, StartError> {
    let acceptors: Vec<_> = listeners
        .into_iter()
        .flatten()
        .map(|listener| {
            let list = listener.into_acceptors().into_iter().map(Some).collect();
            std::sync::Mutex::new(list)
        })
        .collect::<Vec<std::sync::Mutex<Vec<Option<_>>>>>();
    let (state, tracker, shutdown) = (state.clone(), tracker.clone(), shutdown.clone());
    Workers::start(move |index| {
        // Each worker takes its own acceptor of each gate.
        let mine: Vec<_> = acceptors
            .iter()
            .filter_map(|list| {
                let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
                list.get_mut(index).and_then(Option::take)
            })
            .collect();
        let (state, tracker, shutdown) = (state.clone(), tracker.clone(), shutdown.clone());
        async move {
            let runs = mine
                .into_iter()
                .map(|acceptor| acceptor.run(state.clone(), tracker.clone(), shutdown.clone()));
            futures_util::future::join_all(runs).await;
        }
    })
    .map_err(|error| StartError::Setup(format!("cannot start the worker threads: {error}")))
}

/// Raises the soft open-file limit to the hard limit, since each client
/// connection and each pooled upstream connection is a file descriptor.
fn raise_open_file_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if (limit as usize) < max_connections + 64 => tracing::warn!(
            open_file_limit = limit,
            max_connections,
            "The open-file limit is below limits.max_connections; raise it (ulimit -n) or lower limits.max_connections"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "The open-file limit could not be raised"),
    }
}

fn bind_error(
    what: &'static str,
    key: &'static str,
    addr: SocketAddr,
    source: std::io::Error,
) -> StartError {
    StartError::Bind {
        what,
        key,
        addr,
        source,
    }
}

/// Says what to do about a failed bind: an address that this host does not
/// have needs another address, and a port in use needs another port or the
/// other process stopped.
fn bind_fix(source: &std::io::Error, addr: SocketAddr, key: &str) -> String {
    match source.kind() {
        std::io::ErrorKind::AddrNotAvailable => unavailable_fix(addr, key, &host_ips()),
        std::io::ErrorKind::AddrInUse => {
            format!("another process listens on it; stop that process or change {key}")
        }
        _ => format!("change {key}"),
    }
}

/// Returns this host's interface addresses, or none when they cannot be
/// listed.
fn host_ips() -> Vec<std::net::IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.iter().map(|i| i.ip()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Builds the fix for a listen address that is not on this host, naming
/// the host's addresses of the same IP version. The admin listener gets no
/// 0.0.0.0 suggestion, because it would expose /metrics and the other admin
/// endpoints, which need no credential, on every interface.
fn unavailable_fix(addr: SocketAddr, key: &str, host_ips: &[std::net::IpAddr]) -> String {
    let port = addr.port();
    let mut same_version: Vec<_> = host_ips
        .iter()
        .filter(|ip| ip.is_ipv4() == addr.is_ipv4())
        .collect();
    // Loopback first, so the list reads the same on every host.
    same_version.sort_by_key(|ip| !ip.is_loopback());
    let mut ips: Vec<String> = Vec::new();
    for ip in same_version {
        let shown = SocketAddr::new(*ip, port).to_string();
        if !ips.contains(&shown) {
            ips.push(shown);
        }
    }
    let listed = match ips.is_empty() {
        true => String::new(),
        false => format!(" (this host has {})", ips.join(", ")),
    };
    if key == "gateways.admin.listen" {
        let loopback = match addr {
            SocketAddr::V4(_) => "127.0.0.1",
            SocketAddr::V6(_) => "[::1]",
        };
        return format!(
            "{} is not an address of this host; set {key} to {loopback}:{port}, or to the pod \
             IP when a scraper outside the pod reads /metrics{listed}; avoid 0.0.0.0, which \
             exposes the admin endpoints on every interface",
            addr.ip()
        );
    }
    format!(
        "{} is not an address of this host; set {key} to an address of this host{listed}, \
         or 0.0.0.0:{port} for all of them",
        addr.ip()
    )
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "Signal received"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "Signal received"),
    }
}

#[cfg(test)]
mod tests {
    use super::unavailable_fix;

    #[test]
    fn unavailable_fix_names_host_addresses() {
        let host = [
            "127.0.0.1".parse().unwrap(),
            "10.0.0.5".parse().unwrap(),
            "::1".parse().unwrap(),
        ];
        let addr = "192.0.2.1:9901".parse().unwrap();

        assert_eq!(
            unavailable_fix(addr, "gateways.admin.listen", &host),
            "192.0.2.1 is not an address of this host; set gateways.admin.listen to \
             127.0.0.1:9901, or to the pod IP when a scraper outside the pod reads /metrics \
             (this host has 127.0.0.1:9901, 10.0.0.5:9901); avoid 0.0.0.0, which exposes the \
             admin endpoints on every interface"
        );
        assert_eq!(
            unavailable_fix(addr, "gateways.public.listen", &host),
            "192.0.2.1 is not an address of this host; set gateways.public.listen to an \
             address of this host (this host has 127.0.0.1:9901, 10.0.0.5:9901), or \
             0.0.0.0:9901 for all of them"
        );
        assert_eq!(
            unavailable_fix(addr, "gateways.public.listen", &[]),
            "192.0.2.1 is not an address of this host; set gateways.public.listen to an \
             address of this host, or 0.0.0.0:9901 for all of them"
        );
    }
}
