//! A pool of keep-alive HTTP/1.1 connections to one upstream, for one
//! worker.
//!
//! hyper-util's pooled client shares its connections between threads: each
//! request locks a pool shared by every upstream, hashes the upstream's key,
//! and spawns a task that waits for the connection to be free again. Each
//! worker here has a pool of its own per app (see [`crate::runtime::workers`]),
//! so a pool is a plain stack instead: a connection goes back when its
//! response body has ended, and the next request takes the one used last.
//! The exchange itself is hyper's (`hyper::client::conn::http1`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::Body;

/// How long an idle connection is kept. Shorter than the 5-second
/// keep-alive timeout of uvicorn and Node.js servers, so the gateway seldom
/// picks a connection that the upstream is about to close.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// Failure to get a response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connecting to the upstream failed: {0}")]
    Connect(#[source] io::Error),
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    #[error("the upstream exchange failed: {0}")]
    Exchange(#[source] hyper::Error),
}

/// Connections to one upstream, opened and used by one worker.
pub struct Pool {
    /// The upstream's `host:port`.
    authority: http::uri::Authority,
    connect_timeout: Duration,
    idle: Arc<Mutex<Vec<Idle>>>,
}

/// A connection waiting for its next request.
struct Idle {
    sender: SendRequest<Body>,
    clock: Arc<IdleClock>,
}

/// When a connection last became idle, for the task that closes it after
/// [`IDLE_TIMEOUT`]; 0 while it carries an exchange.
struct IdleClock {
    idle_since_ms: AtomicU64,
    epoch: Instant,
}

impl Pool {
    pub fn new(authority: http::uri::Authority, connect_timeout: Duration) -> Self {
        Pool {
            authority,
            connect_timeout,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Sends `request` on an idle connection, or on a new one when none is
    /// left. A request that an idle connection closed before sending is sent
    /// again on the next one: the upstream never saw it. So is a bodiless
    /// GET, HEAD or OPTIONS that a reused connection lost because the
    /// upstream closed it just as it was picked (see [`Replay`]).
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        // At most one replay, so that a request that makes the upstream
        // drop its connection cannot take down every pooled one.
        let mut replayed = false;
        loop {
            let (mut sender, clock, reused) = match self.take_idle() {
                Some(idle) => (idle.sender, idle.clock, true),
                None => {
                    let (sender, clock) = self.connect().await?;
                    (sender, clock, false)
                }
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Exchange(error));
            }
            let replay = (reused && !replayed)
                .then(|| Replay::of(&request))
                .flatten();
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.pooled(response, sender, clock)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => {
                        let error = failed.into_error();
                        match replay {
                            Some(replay) if closed_by_upstream(&error) => {
                                replayed = true;
                                request = replay.into_request();
                            }
                            _ => return Err(SendError::Exchange(error)),
                        }
                    }
                },
            }
        }
    }

    /// Takes the idle connection used last that is ready for a request.
    /// Closed connections are dropped. A connection whose response has ended
    /// while hyper still sends its request body (an app may respond before
    /// it reads the body) stays in the pool, so that no request waits behind
    /// another client's upload.
    fn take_idle(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|candidate| !candidate.sender.is_closed());
        let ready = idle
            .iter()
            .rposition(|candidate| candidate.sender.is_ready())?;
        let taken = idle.remove(ready);
        taken.clock.set_busy();
        Some(taken)
    }

    async fn connect(&self) -> Result<(SendRequest<Body>, Arc<IdleClock>), SendError> {
        let connecting = TcpStream::connect(self.authority.as_str());
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout)?
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        // One buffer per write, as on client connections (see
        // server::protocol::serve_h1).
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Exchange)?;
        let clock = Arc::new(IdleClock::new());
        tokio::spawn(drive(connection, clock.clone()));
        Ok((sender, clock))
    }

    /// Wraps the response body so that the connection returns to the pool
    /// when the body ends. An upgraded connection never returns.
    fn pooled(
        &self,
        response: Response<Incoming>,
        sender: SendRequest<Body>,
        clock: Arc<IdleClock>,
    ) -> Response<PooledBody> {
        let returns = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (Idle { sender, clock }, Arc::downgrade(&self.idle)));
        let mut response = response.map(|body| PooledBody { body, returns });
        // hyper may skip polling a body that reports its end from the start,
        // so such a connection returns here.
        if response.body().body.is_end_stream() {
            response.body_mut().give_back();
        }
        response
    }
}

/// A copy of a request that may be sent again after a reused connection
/// failed under it: an upstream may close an idle connection at the moment
/// the gateway picks it, and the request then meets a closed socket. Only
/// safe methods without a body are copied: they can be repeated (RFC 9110
/// section 9.2.2), and there is no body to keep. Go's HTTP client and
/// nginx's `proxy_next_upstream` retry the same requests.
struct Replay(http::request::Parts);

impl Replay {
    fn of(request: &Request<Body>) -> Option<Replay> {
        let safe = matches!(
            *request.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !safe || !request.body().is_end_stream() {
            return None;
        }
        let mut parts = Request::new(()).into_parts().0;
        parts.method = request.method().clone();
        parts.uri = request.uri().clone();
        parts.version = request.version();
        parts.headers = request.headers().clone();
        Some(Replay(parts))
    }

    fn into_request(self) -> Request<Body> {
        Request::from_parts(self.0, crate::http::responses::empty())
    }
}

/// Checks whether an exchange failed because the upstream closed or reset
/// the connection, rather than because of the request or a timeout.
fn closed_by_upstream(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    std::error::Error::source(error)
        .and_then(|e| e.downcast_ref::<io::Error>())
        .is_some_and(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )
        })
}

/// Runs a connection until it closes, or until it has been idle for
/// [`IDLE_TIMEOUT`]: dropping it closes the socket, and its sender then
/// reports closed.
async fn drive(connection: http1::Connection<TokioIo<TcpStream>, Body>, clock: Arc<IdleClock>) {
    let connection = connection.with_upgrades();
    tokio::pin!(connection);
    loop {
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            _ = tokio::time::sleep(IDLE_TIMEOUT) => {
                if clock.idle_for().is_some_and(|idle| idle >= IDLE_TIMEOUT) {
                    return;
                }
            }
        }
    }
}

// === impl IdleClock ===

impl IdleClock {
    fn new() -> Self {
        IdleClock {
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn set_busy(&self) {
        self.idle_since_ms.store(0, Ordering::Relaxed);
    }

    fn set_idle(&self) {
        // 1 ms after the epoch at least, since 0 means busy.
        let now = self.epoch.elapsed().as_millis().max(1) as u64;
        self.idle_since_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        match self.idle_since_ms.load(Ordering::Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since)),
            ),
        }
    }
}

/// An upstream response body that returns its connection to the pool when
/// it ends. Dropped early, it drops the connection instead, since the rest
/// of the response would still be on the wire.
pub struct PooledBody {
    body: Incoming,
    returns: Option<(Idle, Weak<Mutex<Vec<Idle>>>)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        let Some((idle, pool)) = self.returns.take() else {
            return;
        };
        if let Some(pool) = pool.upgrade() {
            idle.clock.set_idle();
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(idle);
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            // After an error the connection is not reused.
            Poll::Ready(Some(Err(_))) => self.returns = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
