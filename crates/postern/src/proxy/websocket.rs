//! WebSocket tunnels, opened only after the upstream responded with 101.

use http::Response;
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::http::Body;
use crate::http::headers;
use crate::http::responses::{empty, json_error};
use crate::routing::Route;
use crate::telemetry::access::AccessRecord;

use super::ConnectionInfo;
use super::pool::PooledBody;

/// Sends the client the upstream's 101 and joins the two upgraded
/// connections in a background task.
pub(super) fn tunnel(
    conn: &ConnectionInfo,
    route: &Route,
    requested: bool,
    mut upstream: Response<PooledBody>,
    record: &AccessRecord,
) -> Response<Body> {
    if !requested {
        // The upstream switched protocols on a request that did not ask to.
        return json_error(
            http::StatusCode::BAD_GATEWAY,
            "upstream_protocol_error",
            "the app switched protocols unexpectedly",
        );
    }
    // The client connection arrives once hyper has sent it the 101.
    let client = conn.upgrade.expect();
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let request_id = record.request_id.clone();
    let gate = conn.gate;
    let idle = route.timeouts.body_idle;
    // The tunnel keeps the client connection's slot until it ends.
    let guard = conn.guard.clone();

    conn.tunnels.spawn(async move {
        let joined = tokio::join!(client, upstream_upgrade);
        let (client, upstream) = match joined {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(_), _) => {
                tracing::info!(%request_id, "WebSocket upgrade did not complete: the client connection ended first");
                return;
            }
            (_, Err(error)) => {
                tracing::info!(%request_id, %error, "WebSocket upgrade did not complete");
                return;
            }
        };
        let activity = Activity::new();
        let mut client = ActivityIo::new(client, activity.clone());
        let mut upstream = ActivityIo::new(TokioIo::new(upstream), activity.clone());
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        loop {
            tokio::select! {
                result = &mut copy => {
                    match result {
                        Ok((sent, received)) => tracing::debug!(%request_id, sent, received, "WebSocket tunnel closed"),
                        Err(error) if is_send_timeout(&error) => {
                            crate::telemetry::metrics::record_client_error(gate, "client_send_timeout");
                            tracing::info!(%request_id, reason = "client_send_timeout", "WebSocket tunnel closed: the client accepted no bytes for the send timeout");
                        }
                        Err(error) => tracing::debug!(%request_id, %error, "WebSocket tunnel ended"),
                    }
                    break;
                }
                _ = tokio::time::sleep_until(crate::deadline::after(activity.last(), idle)) => {
                    if activity.last().elapsed() >= idle {
                        tracing::info!(%request_id, ?idle, "WebSocket tunnel closed after the app's body idle timeout");
                        break;
                    }
                }
            }
        }
        drop(guard);
    });

    let (mut parts, _) = upstream.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(UPGRADE, HeaderValue::from_static("websocket"));
    Response::from_parts(parts, empty())
}

/// Checks whether a tunnel's copy failed because the client stopped
/// reading (see [`crate::net::send_timeout`]).
fn is_send_timeout(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<crate::net::send_timeout::SendTimedOut>())
}

/// A client stream that carries a tunnel.
pub trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientStream for T {}

/// The hand-over of an HTTP/1.1 client connection to its WebSocket tunnel:
/// the tunnel waits on it, and the connection's server loop fills it once
/// hyper has sent the 101 and let go of the socket.
#[derive(Default)]
pub struct UpgradeSlot(std::sync::Mutex<Option<oneshot::Sender<Box<dyn ClientStream>>>>);

impl UpgradeSlot {
    /// Registers a tunnel waiting for the client connection.
    fn expect(&self) -> oneshot::Receiver<Box<dyn ClientStream>> {
        let (sender, receiver) = oneshot::channel();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
        receiver
    }

    /// Hands the client connection to the waiting tunnel, if there is one,
    /// and returns it otherwise.
    pub fn fill(&self, client: Box<dyn ClientStream>) -> Option<Box<dyn ClientStream>> {
        let waiting = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match waiting {
            Some(sender) => sender.send(client).err(),
            None => Some(client),
        }
    }

    /// Checks whether a tunnel waits for the client connection.
    pub fn is_expected(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// The time of the last byte either way through a tunnel.
#[derive(Clone)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last byte.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records in an [`Activity`] each read that returned bytes.
struct ActivityIo<S> {
    inner: S,
    activity: Activity,
}

impl<S> ActivityIo<S> {
    fn new(inner: S, activity: Activity) -> Self {
        ActivityIo { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

crate::net::delegate_async_write!(ActivityIo);
