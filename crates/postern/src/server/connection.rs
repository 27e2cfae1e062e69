//! One client connection: admission first, then TLS, then HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::{GateConfig, Limits};
use tokio_util::task::TaskTracker;

use super::listener::ConnectionGuard;
use super::protocol;
use crate::net::framing::FramingWatch;
use crate::net::prefixed::PrefixedIo;
use crate::net::proxy_header::{self, Sniffed};
use crate::net::send_timeout::SendTimeout;
use crate::policy::admission::{
    Admission, AdmissionKind, EndpointIdentity, Gate, PeerVerdict, Refusal, Rules, canonical,
};
use crate::proxy::ConnectionInfo;
use crate::runtime::state::State;
use crate::telemetry::access::show_addr;
use crate::telemetry::metrics;
use tokio::io::AsyncReadExt;

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
    // Each phase is boxed and ends before the next one starts, so the task of
    // a long-lived connection keeps only the memory of its current phase. An
    // idle keep-alive connection keeps no admission or handshake state.
    let admitted = Box::pin(admit_connection(
        gate,
        &state,
        &mut stream,
        peer,
        &shutdown,
        guard,
        tunnels,
    ))
    .await;
    let Some(admitted) = admitted else {
        return;
    };
    // Likewise, a connection still in its TLS handshake, or still sending
    // the bytes that tell HTTP/2 from HTTP/1.1, is closed by the drain.
    // Boxed as a whole, so that the drain watch of this phase does not
    // take room in the connection's task for its whole life.
    let mut stop = shutdown.clone();
    let started = Box::pin(async move {
        tokio::select! {
            started = start_protocol(stream, admitted) => started,
            _ = stop.wait_for(|&stopping| stopping) => None,
        }
    })
    .await;
    let Some(started) = started else {
        return;
    };
    let Started {
        info,
        limits,
        protocol,
    } = *started;
    let max_head = limits.max_header_bytes;
    let ambiguous = info.ambiguous_framing.clone();
    match protocol {
        Protocol::Plain { io, h2: true } => {
            Box::pin(protocol::serve_h2(state, info, io, limits, shutdown)).await
        }
        Protocol::Plain { io, h2: false } => {
            let io = Box::new(FramingWatch::new(io, max_head, ambiguous));
            Box::pin(protocol::serve_h1(state, info, io, limits, shutdown)).await
        }
        Protocol::Tls { io, h2: true } => {
            Box::pin(protocol::serve_h2(state, info, io, limits, shutdown)).await
        }
        Protocol::Tls { io, h2: false } => {
            let io = Box::new(FramingWatch::new(*io, max_head, ambiguous));
            Box::pin(protocol::serve_h1(state, info, io, limits, shutdown)).await
        }
    }
}

/// A connection past admission and TLS, with its HTTP version chosen.
struct Started {
    info: Arc<ConnectionInfo>,
    limits: Limits,
    protocol: Protocol,
}

/// The client socket after admission: the bytes admission read, then the
/// socket, whose writes time out when the client stops reading.
pub(super) type ClientIo = PrefixedIo<SendTimeout<TcpStream>>;

/// The client stream and whether it speaks HTTP/2.
enum Protocol {
    Plain {
        io: ClientIo,
        h2: bool,
    },
    Tls {
        io: Box<tokio_rustls::server::TlsStream<ClientIo>>,
        h2: bool,
    },
}

/// An admitted connection, ready for TLS and HTTP.
struct Admitted {
    info: ConnectionInfo,
    /// Bytes read during admission, which HTTP or TLS must see.
    buf: BytesMut,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
}

/// Decides admission, and describes the admitted connection.
async fn admit_connection(
    gate: Gate,
    state: &State,
    stream: &mut TcpStream,
    peer: SocketAddr,
    shutdown: &watch::Receiver<bool>,
    guard: Arc<ConnectionGuard>,
    tunnels: TaskTracker,
) -> Option<Box<Admitted>> {
    let snapshot = state.snapshot();
    let limits = snapshot.config.limits;
    let (Some(rules), Some(gate_config)) = (snapshot.rules(gate), snapshot.gate_config(gate))
    else {
        // The gate was disabled by a reload; its listener stays bound until
        // restart but admits no one.
        refuse(gate, peer, Refusal::GateDisabled, "the gate is disabled");
        return None;
    };

    // Admission, before any HTTP is read. A connection still in admission
    // when the drain starts is closed: it has no request in flight.
    let mut buf = BytesMut::new();
    let mut stop = shutdown.clone();
    let admitted = tokio::select! {
        admitted = admit(gate, state, rules, gate_config, limits, stream, peer, &mut buf) => admitted,
        _ = stop.changed() => None,
    };
    let (admission, endpoint) = admitted?;
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
    let info = ConnectionInfo {
        gate,
        admission,
        peer,
        endpoint,
        tls: tls.is_some(),
        forwarded_trusted,
        ambiguous_framing: Arc::new(AtomicU64::new(0)),
        requests: Arc::new(AtomicU64::new(0)),
        request_body_idle: limits.header_read_timeout,
        client_text: show_addr(admission.client).into(),
        peer_text: show_addr(peer).into(),
        forwarded_for: crate::http::headers::forwarded_for(admission.client),
        guard,
        tunnels,
        upgrade: Default::default(),
        send_timed_out: Arc::new(AtomicBool::new(false)),
    };
    Some(Box::new(Admitted {
        info,
        buf,
        tls,
        limits,
    }))
}

/// Completes the TLS handshake when the gate has TLS, and detects HTTP/2:
/// by ALPN with TLS, by the prior-knowledge preface without.
async fn start_protocol(mut stream: TcpStream, admitted: Box<Admitted>) -> Option<Box<Started>> {
    let Admitted {
        info,
        mut buf,
        tls,
        limits,
    } = *admitted;
    let (gate, peer) = (info.gate, info.peer);
    let send_timed_out = info.send_timed_out.clone();
    let client_io = move |buf, stream| {
        PrefixedIo::new(
            buf,
            SendTimeout::new(stream, limits.send_timeout, send_timed_out),
        )
    };
    let protocol = match tls {
        None => {
            let h2 = tokio::time::timeout(
                limits.header_read_timeout,
                starts_with_h2_preface(&mut stream, &mut buf),
            )
            .await;
            // Silent or failed before the first request line: close.
            let h2 = h2.ok()?.ok()?;
            Protocol::Plain {
                io: client_io(buf, stream),
                h2,
            }
        }
        Some(acceptor) => {
            let io = client_io(buf, stream);
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, Box::pin(acceptor.accept(io)))
                    .await;
            match handshake {
                Ok(Ok(tls_stream)) => Protocol::Tls {
                    h2: tls_stream.get_ref().1.alpn_protocol() == Some(b"h2"),
                    io: Box::new(tls_stream),
                },
                Ok(Err(error)) => {
                    tracing::info!(gate = %gate, peer = %show_addr(peer), %error, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::info!(gate = %gate, peer = %show_addr(peer), "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    Some(Box::new(Started {
        info: Arc::new(info),
        limits,
        protocol,
    }))
}

/// Reads until the first bytes show whether the client speaks HTTP/2 with
/// prior knowledge (RFC 9113 section 3.4), keeping them in `buf`. A request
/// line differs from the preface by its first or second byte, so this seldom
/// reads at all.
async fn starts_with_h2_preface(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    loop {
        let seen = buf.len().min(PREFACE.len());
        if buf[..seen] != PREFACE[..seen] {
            return Ok(false);
        }
        if seen == PREFACE.len() {
            return Ok(true);
        }
        if stream.read_buf(buf).await? == 0 {
            // Closed early: the HTTP/1.1 server reads the end and closes.
            return Ok(false);
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
            refuse(gate, peer, refusal, peer_refusal_detail(refusal));
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

/// Says which keys decide a refusal by peer address alone. Nothing is read
/// from such a peer, so whether it sent a PROXY header is not known.
fn peer_refusal_detail(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::NotInVpc => {
            "the peer is in neither cluster.vpc_cidrs nor \
             gateways.private.proxy_protocol.trusted_sources; a load balancer, or \
             `postern relay --from`, must connect from a trusted source"
        }
        _ => "",
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
