//! One client connection: admission first, then TLS, then HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{GateConfig, Limits};
use tokio_util::task::TaskTracker;

use super::listener::ConnectionGuard;
use crate::net::framing::FramingWatch;
use crate::net::prefixed::PrefixedIo;
use crate::net::proxy_header::{self, Sniffed};
use crate::policy::admission::{
    Admission, AdmissionKind, EndpointIdentity, Gate, PeerVerdict, Refusal, Rules, canonical,
};
use crate::proxy::{self, ConnectionInfo};
use crate::runtime::state::State;
use crate::telemetry::access::show_addr;
use crate::telemetry::metrics;

/// Requests in flight on one connection, and when the last one ended, so an
/// idle connection can be closed without cutting a long response.
pub(super) struct Activity {
    in_flight: AtomicUsize,
    idle_since: std::sync::Mutex<Instant>,
}

/// Admits, then serves, one accepted connection until it closes or the
/// gateway shuts down.
pub(super) async fn serve(
    gate: Gate,
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    guard: Arc<ConnectionGuard>,
    tunnels: TaskTracker,
) {
    let snapshot = state.snapshot();
    let limits = snapshot.config.limits;
    let (Some(rules), Some(gate_config)) = (snapshot.rules(gate), snapshot.gate_config(gate))
    else {
        // The gate was disabled by a reload; its listener stays bound until
        // restart but admits no one.
        refuse(gate, peer, Refusal::GateDisabled, "the gate is disabled");
        return;
    };

    // Admission, before any HTTP is read. A connection still in admission
    // when the drain starts is closed: it has no request in flight.
    let mut buf = BytesMut::new();
    let mut stop = shutdown.clone();
    let admitted = tokio::select! {
        admitted = admit(gate, &state, rules, gate_config, limits, &mut stream, peer, &mut buf) => admitted,
        _ = stop.changed() => None,
    };
    let Some((admission, endpoint)) = admitted else {
        return;
    };
    metrics::record_admission(gate, admission.kind);
    tracing::debug!(gate = %gate, peer = %show_addr(peer), client = %show_addr(admission.client), kind = admission.kind.as_str(), "Connection admitted");

    // A PrivateLink client's address comes from another VPC's address plan,
    // which may overlap this one, so it is never a trusted forwarder.
    let forwarded_trusted = admission.kind != AdmissionKind::PrivateLink
        && gate_config
            .forwarded_sources
            .iter()
            .any(|net| net.contains(&canonical(admission.client.ip())));
    let tls = snapshot.tls(gate).cloned();
    let ambiguous_framing = Arc::new(AtomicU64::new(0));
    let info = ConnectionInfo {
        gate,
        admission,
        peer,
        endpoint,
        tls: tls.is_some(),
        forwarded_trusted,
        ambiguous_framing: ambiguous_framing.clone(),
        requests: Arc::new(AtomicU64::new(0)),
        request_body_idle: limits.header_read_timeout,
        client_text: show_addr(admission.client).into(),
        peer_text: show_addr(peer).into(),
        forwarded_for: crate::http::headers::forwarded_for(admission.client),
        guard,
        tunnels,
    };
    let io = PrefixedIo::new(buf, stream);
    let max_head = limits.max_header_bytes;

    match tls {
        None => {
            let io = FramingWatch::new(io, max_head, ambiguous_framing);
            serve_http(state, info, io, limits, shutdown).await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io)).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    let io = FramingWatch::new(tls_stream, max_head, ambiguous_framing);
                    serve_http(state, info, io, limits, shutdown).await
                }
                Ok(Err(error)) => {
                    tracing::info!(gate = %gate, peer = %show_addr(peer), %error, "TLS handshake failed")
                }
                Err(_) => {
                    tracing::info!(gate = %gate, peer = %show_addr(peer), "TLS handshake timed out")
                }
            }
        }
    }
}

/// Decides whether the connection from `peer` may use `gate`, reading the
/// PROXY header or the first bytes into `buf`. Logs and counts a refusal.
#[allow(clippy::too_many_arguments)]
async fn admit(
    gate: Gate,
    state: &State,
    rules: &Rules,
    gate_config: &GateConfig,
    limits: Limits,
    stream: &mut TcpStream,
    peer: SocketAddr,
    buf: &mut BytesMut,
) -> Option<(Admission, Option<EndpointIdentity>)> {
    match rules.classify_peer(peer) {
        PeerVerdict::Refuse(refusal) => {
            refuse(gate, peer, refusal, "");
            None
        }
        PeerVerdict::Admit(admission) => {
            let sniffed =
                tokio::time::timeout(limits.header_read_timeout, proxy_header::sniff(stream, buf))
                    .await;
            match sniffed {
                Ok(Ok(Sniffed::Other)) => Some((admission, None)),
                Ok(Ok(Sniffed::ProxySignature)) => {
                    let detail = "a PROXY header from a peer that is not a trusted source";
                    refuse(gate, peer, Refusal::ProxyHeaderUntrusted, detail);
                    None
                }
                // Closed or silent before sending anything: nothing to log.
                Ok(Ok(Sniffed::Closed)) | Ok(Err(_)) | Err(_) => None,
            }
        }
        PeerVerdict::ExpectProxyHeader => {
            let timeout = gate_config.proxy_header_timeout;
            let header =
                match proxy_header::read(stream, buf, timeout, limits.header_read_timeout).await {
                    Ok(header) => header,
                    Err(fault) => {
                        if let Some(refusal) = fault.refusal() {
                            refuse(gate, peer, refusal, &fault.to_string());
                        }
                        return None;
                    }
                };
            match rules.admit_header(peer, &header, &state.endpoints()) {
                Ok(admitted) => Some(admitted),
                Err(refusal) => {
                    refuse(gate, peer, refusal, &endpoint_detail(&header));
                    None
                }
            }
        }
    }
}

/// Describes the endpoint a refused header named, for the refusal log.
fn endpoint_detail(header: &crate::policy::admission::ProxyHeader) -> String {
    match header {
        crate::policy::admission::ProxyHeader::Proxy {
            source,
            endpoint_id,
        } => {
            let id: String = endpoint_id
                .as_deref()
                .unwrap_or("none")
                .chars()
                .take(64)
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect();
            let source = source.map(show_addr).unwrap_or_else(|| "unknown".into());
            format!("endpoint_id={id} source={source}")
        }
        crate::policy::admission::ProxyHeader::Local => "LOCAL".into(),
    }
}

/// Logs and counts a refused connection. The socket closes on return.
pub(super) fn refuse(gate: Gate, peer: SocketAddr, refusal: Refusal, detail: &str) {
    metrics::record_refusal(gate, refusal);
    tracing::info!(
        gate = %gate,
        peer = %show_addr(peer),
        reason = refusal.as_str(),
        detail,
        "Connection refused"
    );
}

async fn serve_http<I>(
    state: Arc<State>,
    info: ConnectionInfo,
    io: I,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (gate, peer) = (info.gate, info.peer);
    let info = Arc::new(info);
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        service_fn(move |request| {
            let activity = activity.clone();
            activity.request_started();
            let done = move || activity.request_ended();
            proxy::handle(state.clone(), info.clone(), request, done)
        })
    };

    let builder = http_builder(&limits);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);

    let idle_limit = limits.client_idle_timeout;
    let mut draining = *shutdown.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let next_check = activity.idle_deadline(idle_limit);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    log_connection_error(gate, peer, error.as_ref());
                }
                return;
            }
            _ = tokio::time::sleep_until(next_check), if !draining => {
                if activity.idle_for() >= idle_limit {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Logs why hyper closed a client connection. A request that hyper itself
/// rejects (malformed, or a head too large: 400 or 431) never reaches the
/// request pipeline, so this is its log line.
fn log_connection_error(gate: Gate, peer: SocketAddr, error: &(dyn std::error::Error + 'static)) {
    let kind = match error.downcast_ref::<hyper::Error>() {
        Some(e) if e.is_parse_too_large() => "request_head_too_large",
        Some(e) if e.is_parse() => "malformed_request",
        Some(e) if e.is_timeout() => "request_head_timeout",
        _ => {
            tracing::debug!(gate = %gate, peer = %show_addr(peer), %error, "Client connection ended with an error");
            return;
        }
    };
    metrics::record_client_error(gate, kind);
    tracing::info!(gate = %gate, peer = %show_addr(peer), reason = kind, %error, "Request rejected before routing");
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper responds with 431 when the request head outgrows this buffer.
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(Some(250))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

// === impl Activity ===

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }

    /// Returns how long the connection has had no request in flight.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.idle_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn idle_deadline(&self, limit: Duration) -> Instant {
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = since + limit;
        // While requests are in flight, look again after one full period.
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            Instant::now() + limit
        } else {
            deadline
        }
    }
}
