//! HTTP on an admitted connection: HTTP/2 when the client chose it (by ALPN,
//! or by the prior-knowledge preface on plain TCP), HTTP/1.1 otherwise.
//!
//! An HTTP/1.1 connection that stays idle is parked: hyper's connection
//! state, with its read and write buffers (8 KiB each), is dropped, and only
//! the socket waits for the next request. When bytes arrive, a new hyper
//! connection takes over where the last one stopped. nginx frees the buffers
//! of an idle keep-alive connection in the same way; BENCHMARKS.md has the
//! memory this saves.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::activity::Activity;
use super::connection::ClientIo;
use super::flushed::FlushWatch;
use super::stream_watch::{ClockSlot, StreamExecutor};
use crate::config::Limits;
use crate::http::Body;
use crate::http::send_clock::SendClock;
use crate::net::framing::FramingWatch;
use crate::policy::admission::Gate;
use crate::proxy::{self, ConnectionInfo};
use crate::runtime::state::State;
use crate::telemetry::access::show_addr;
use crate::telemetry::metrics;

/// How long an HTTP/1.1 connection waits with no request in flight before
/// it is parked. A busy keep-alive client sends its next request sooner, so
/// it keeps its hyper state. Each resume costs one new hyper connection.
const PARK_AFTER: Duration = Duration::from_millis(50);

/// How long an HTTP/2 connection that was sent a GOAWAY, and has no stream
/// open, waits for the client to acknowledge the GOAWAY's PING before it is
/// closed anyway. h2 sends its final GOAWAY and closes only on that
/// acknowledgement, so a client that never sends one would otherwise keep
/// the connection until hyper's keep-alive timeout (30 s interval plus 20 s
/// timeout). The wait covers the requests that a client sent before the
/// GOAWAY reached it, which arrive within a one-way trip.
const GOAWAY_ACK_WAIT: Duration = Duration::from_secs(1);

/// How often a connection that waits to close looks again at a client that
/// has not yet read all that was sent to it.
const FLUSH_CHECK: Duration = Duration::from_millis(100);

/// A client stream that may be parked: plain TCP, whose socket can wait for
/// bytes without a buffer. A TLS session keeps its own buffers, so it is
/// never parked.
pub(super) trait Park {
    /// Returns the socket to wait on, or `None` when the stream cannot
    /// park.
    fn socket(&self) -> Option<&TcpStream>;
}

impl Park for ClientIo {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self.get_ref().get_ref())
    }
}

impl<S> Park for tokio_rustls::server::TlsStream<S> {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

type Service = Box<
    dyn Fn(
            Request<Incoming>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>
        + Send
        + Sync,
>;

/// Serves HTTP/2 on `io` until the connection ends or the gateway shuts
/// down.
pub(super) async fn serve_h2<I>(
    state: Arc<State>,
    info: Arc<ConnectionInfo>,
    io: I,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (gate, peer) = (info.gate, info.peer);
    let send_timed_out = info.send_timed_out.clone();
    let activity = Arc::new(Activity::new());
    let executor = StreamExecutor {
        slot: ClockSlot::default(),
        limit: limits.send_timeout,
        gate: info.gate,
    };
    let service = service(state, info, activity.clone(), Some(executor.slot.clone()));
    let io = FlushWatch::new(io);
    let flushed = io.flushed();
    let mut builder = http2::Builder::new(executor);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(Some(250))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let connection =
        builder.serve_connection(TokioIo::new(io), hyper::service::service_fn(service));
    tokio::pin!(connection);

    let mut watch = Watch::new(activity.clone(), limits.client_idle_timeout, shutdown);
    let mut goaway_sent = None;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = watch.next(None) => {
                // A GOAWAY and a PING: no new streams, and the open ones
                // may finish.
                connection.as_mut().graceful_shutdown();
                goaway_sent = Some(Instant::now());
            }
            _ = goaway_unacknowledged(&activity, goaway_sent, &flushed) => {
                tracing::debug!(gate = %gate, peer = %show_addr(peer), "Closing an HTTP/2 connection whose client did not acknowledge the GOAWAY's PING");
                return;
            }
        }
    };
    if let Err(error) = result {
        log_connection_error(gate, peer, &error, &send_timed_out);
    }
}

/// Resolves once a connection that was sent a GOAWAY at `sent` may be
/// closed without the client's PING acknowledgement. By then no stream has
/// been open for [`GOAWAY_ACK_WAIT`], at least that long has passed since
/// the GOAWAY, and every byte has been flushed. Never resolves before a
/// GOAWAY.
async fn goaway_unacknowledged(activity: &Activity, sent: Option<Instant>, flushed: &AtomicBool) {
    let Some(sent) = sent else {
        return std::future::pending().await;
    };
    let mut check_at = sent + GOAWAY_ACK_WAIT;
    loop {
        tokio::time::sleep_until(check_at).await;
        if activity.idle_for() >= GOAWAY_ACK_WAIT && flushed.load(Ordering::Relaxed) {
            return;
        }
        // A stream is open or ended only just now, or the client has not
        // yet read all that was sent to it.
        check_at = activity
            .idle_deadline(GOAWAY_ACK_WAIT)
            .max(Instant::now() + FLUSH_CHECK);
    }
}

/// Serves HTTP/1.1 on `io`, parking the connection while it is idle, until
/// it ends, the client upgrades it, or the gateway shuts down.
pub(super) async fn serve_h1<I>(
    state: Arc<State>,
    info: Arc<ConnectionInfo>,
    mut io: Box<FramingWatch<I>>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    let (gate, peer) = (info.gate, info.peer);
    let activity = Arc::new(Activity::new());
    let service = Arc::new(service(state, info.clone(), activity.clone(), None));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper responds with 431 when the request head outgrows this buffer.
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true)
        // One buffer, one write(2): most responses are a head and a small
        // body, for which hyper's queue of buffers and writev(2) cost more
        // than copying the body (2 to 3% of the instructions per request in
        // bench/run.sh, measured with callgrind).
        .writev(false);
    let mut watch = Watch::new(activity.clone(), limits.client_idle_timeout, shutdown);
    // Parking needs a socket to wait on, and the client between requests,
    // because hyper responds to a half-read request with `Connection: close`.
    let boundary = io.boundary();
    let can_park = io.get_ref().socket().is_some();

    loop {
        let requests_before = activity.requests_started();
        let service = service.clone();
        let service = hyper::service::service_fn(move |request| service(request));
        // Boxed, so that the memory of hyper's state goes when the
        // connection parks.
        let mut connection = Box::pin(builder.serve_connection(TokioIo::new(io), service));
        let mut parking = false;
        let result = loop {
            tokio::select! {
                result = std::future::poll_fn(|cx| connection.as_mut().poll_without_shutdown(cx)) => break result,
                ending = watch.next(can_park.then_some(&*boundary)) => {
                    // On a drain, a connection that has passed no request
                    // to the service since this hyper connection started
                    // owes no response, even with half a head read: close
                    // it now rather than wait for the rest of the head.
                    if ending == Ending::Drain && activity.requests_started() == requests_before {
                        return;
                    }
                    parking = ending == Ending::Park;
                    connection.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(error) = result {
            log_connection_error(gate, peer, &error, &info.send_timed_out);
            return;
        }
        let http1::Parts {
            io: hyper_io,
            read_buf,
            ..
        } = Pin::into_inner(connection).into_parts();
        io = hyper_io.into_inner();
        // An empty `read_buf` still owns hyper's 8 KiB read buffer: free it
        // now, not at the end of this iteration after the park below.
        if read_buf.is_empty() {
            drop(read_buf);
        } else {
            io.unread(read_buf);
        }
        if info.upgrade.is_expected() {
            let _ = info.upgrade.fill(io);
            return;
        }
        if !parking {
            return;
        }
        if !io.has_unread() && !watch.park(io.get_ref()).await {
            return;
        }
    }
}

/// Builds the request handler of one connection. On HTTP/2, each request
/// gets a send clock, left in `clocks` for the stream's executor.
fn service(
    state: Arc<State>,
    info: Arc<ConnectionInfo>,
    activity: Arc<Activity>,
    clocks: Option<ClockSlot>,
) -> Service {
    Box::new(move |mut request| {
        if let Some(slot) = &clocks {
            let clock = Arc::new(SendClock::default());
            request.extensions_mut().insert(clock.clone());
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(clock);
        }
        let in_flight = InFlight::start(activity.clone());
        let done = move || drop(in_flight);
        Box::pin(proxy::handle(state.clone(), info.clone(), request, done))
    })
}

/// A request in flight on its connection. It ends when dropped: also when
/// hyper drops the handler unfinished, as it does for a reset stream, so
/// that such a request does not hold its connection open for ever.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.request_started();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The reason a connection's hyper state ends while the connection is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Park it and keep the socket.
    Park,
    /// Close it: idle too long.
    Close,
    /// Close it: the gateway is shutting down.
    Drain,
}

/// The idle and shutdown timers of one connection.
struct Watch {
    activity: Arc<Activity>,
    idle_limit: Duration,
    shutdown: watch::Receiver<bool>,
    closing: bool,
}

impl Watch {
    fn new(activity: Arc<Activity>, idle_limit: Duration, shutdown: watch::Receiver<bool>) -> Self {
        Watch {
            activity,
            idle_limit,
            shutdown,
            closing: false,
        }
    }

    /// Resolves when the connection should stop taking requests: parked
    /// after [`PARK_AFTER`] idle when it has a `boundary` flag that is set,
    /// closed after the idle limit, or drained when the gateway shuts down.
    /// Resolves once for a close or drain, then never again.
    async fn next(&mut self, boundary: Option<&AtomicBool>) -> Ending {
        let parkable = || boundary.is_some_and(|b| b.load(Ordering::Relaxed));
        if self.closing {
            return std::future::pending().await;
        }
        if *self.shutdown.borrow() {
            self.closing = true;
            return Ending::Drain;
        }
        loop {
            // Idle long enough but mid-request: look again a little later.
            let park_at = boundary.is_some().then(|| {
                let at = self.activity.idle_deadline(PARK_AFTER);
                at.max(Instant::now() + PARK_AFTER * u32::from(!parkable()))
            });
            let close_at = self.activity.idle_deadline(self.idle_limit);
            let wake = park_at.map_or(close_at, |park| park.min(close_at));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.shutdown.changed() => {
                    self.closing = true;
                    return Ending::Drain;
                }
            }
            let idle = self.activity.idle_for();
            if idle >= self.idle_limit {
                self.closing = true;
                return Ending::Close;
            }
            if parkable() && idle >= PARK_AFTER {
                return Ending::Park;
            }
        }
    }

    /// Waits on a parked connection's socket for the next request. Returns
    /// false when the connection should close instead: idle too long, or the
    /// gateway is shutting down.
    async fn park(&mut self, socket: &impl Park) -> bool {
        let Some(socket) = socket.socket() else {
            return true;
        };
        let close_at = self.activity.idle_deadline(self.idle_limit);
        tokio::select! {
            ready = socket.readable() => ready.is_ok(),
            _ = tokio::time::sleep_until(close_at) => false,
            _ = self.shutdown.changed() => false,
        }
    }
}

/// Logs why hyper closed a client connection. A request that hyper itself
/// rejects (malformed, or a head too large: 400 or 431) never reaches the
/// request pipeline, so this is its log line. So is a send timeout that
/// fired after the last response body ended, with only buffered bytes left.
fn log_connection_error(
    gate: Gate,
    peer: SocketAddr,
    error: &hyper::Error,
    send_timed_out: &AtomicBool,
) {
    if send_timed_out.load(Ordering::Relaxed) {
        metrics::record_client_error(gate, "client_send_timeout");
        tracing::info!(gate = %gate, peer = %show_addr(peer), reason = "client_send_timeout", %error, "Client connection closed: it accepted no bytes for the send timeout");
        return;
    }
    let kind = if error.is_parse_too_large() {
        "request_head_too_large"
    } else if error.is_parse() {
        "malformed_request"
    } else if error.is_timeout() {
        "request_head_timeout"
    } else {
        tracing::debug!(gate = %gate, peer = %show_addr(peer), %error, "Client connection ended with an error");
        return;
    };
    metrics::record_client_error(gate, kind);
    tracing::info!(gate = %gate, peer = %show_addr(peer), reason = kind, %error, "Request rejected before routing");
}
