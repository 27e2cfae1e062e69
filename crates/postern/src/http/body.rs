//! Body wrappers: byte counting, idle and total deadlines, and a hook that
//! runs once when a body ends or is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::BoxError;
use super::send_clock::SendClock;

/// A request body that adds its size to a shared counter as it streams,
/// and fails with [`BodyTimeout::Idle`] when the client stalls.
pub struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
    idle: Duration,
    /// The idle timer, made at the first poll that finds no frame, so that a
    /// body that never waits (an empty one, say) allocates no timer.
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// Set while the timer runs: from the first poll that found no frame.
    /// Time while the upstream applies backpressure (and does not poll) is
    /// not the client's silence.
    waiting: bool,
}

/// Deadline that cut a response body short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    #[error("the upstream sent nothing for longer than the body idle timeout")]
    Idle,
    #[error("the exchange ran longer than the app's total timeout")]
    Total,
    #[error("the client sent no request body bytes for longer than the header read timeout")]
    RequestIdle,
}

/// The way a response body ended, passed to the completion hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    Complete,
    Timeout(BodyTimeout),
    /// The upstream failed mid-body.
    UpstreamError,
    /// The client went away before the end.
    Dropped,
}

/// A response body with deadlines, a byte count and a completion hook.
pub struct ResponseBody<B, F: FnOnce(u64, BodyEnd)> {
    inner: B,
    idle: Option<Duration>,
    /// Made at the first poll that finds no frame, as in [`CountingBody`].
    idle_timer: Option<Pin<Box<Sleep>>>,
    total_timer: Option<Pin<Box<Sleep>>>,
    /// Set while the idle timer runs, from the first poll that found no
    /// frame.
    waiting: bool,
    bytes: u64,
    /// Set for a body with no frames, which hyper never polls.
    empty: bool,
    /// Set to report the end only when hyper polls past the last frame (see
    /// [`ResponseBody::new`]).
    hold_end: bool,
    /// The HTTP/2 stream's send clock, which learns when the body waits
    /// for its client.
    clock: Option<Arc<SendClock>>,
    /// The remainder of an app's data frame that was split into pieces.
    rest: Option<Bytes>,
    on_end: Option<F>,
}

/// Largest data frame handed to hyper for a stream with a send clock. The
/// clock restarts only when hyper polls for the next frame, which it does
/// once h2 has sent the last, so a client must take one frame within each
/// `send_timeout`. Frames of an app can be hundreds of KB.
const PIECE: usize = 16 * 1024;

/// Starts the idle clock at the first poll of a wait (when `waiting` turns
/// true), making the timer on first use, and returns the timer.
fn restart_on_wait<'t>(
    timer: &'t mut Option<Pin<Box<Sleep>>>,
    waiting: &mut bool,
    idle: Duration,
) -> &'t mut Pin<Box<Sleep>> {
    if !*waiting || timer.is_none() {
        *waiting = true;
        let deadline = crate::deadline::after(Instant::now(), idle);
        match timer {
            Some(timer) => timer.as_mut().reset(deadline),
            None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }
    timer.as_mut().expect("the timer is made above")
}

// === impl CountingBody ===

impl<B> CountingBody<B> {
    /// Wraps `inner`; `idle` bounds each silence between the client's body
    /// frames.
    pub fn new(inner: B, count: Arc<AtomicU64>, idle: Duration) -> Self {
        CountingBody {
            inner,
            count,
            idle,
            idle_timer: None,
            waiting: false,
        }
    }
}

impl<B> HttpBody for CountingBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                let timer = restart_on_wait(&mut this.idle_timer, &mut this.waiting, this.idle);
                ready!(timer.as_mut().poll(cx));
                return Poll::Ready(Some(Err(Box::new(BodyTimeout::RequestIdle))));
            }
        };
        this.waiting = false;
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl ResponseBody ===

impl<B: HttpBody, F: FnOnce(u64, BodyEnd)> ResponseBody<B, F> {
    /// Wraps `inner`. `idle` bounds each silence between frames; `deadline`
    /// bounds the whole body.
    ///
    /// With `hold_end`, the body reports its end, and runs `on_end`, only
    /// when polled past its last frame. This is for HTTP/2: hyper polls a
    /// stream's body for more only when the client's flow-control window
    /// has room. The end then waits until the data that h2 buffers has gone
    /// out, so a response that a slow reader has yet to receive still
    /// counts as in flight. For the same reason, `clock` learns when the
    /// body waits for the client.
    pub fn new(
        inner: B,
        idle: Option<Duration>,
        deadline: Option<Instant>,
        hold_end: bool,
        clock: Option<Arc<SendClock>>,
        on_end: F,
    ) -> Self {
        let empty = inner.is_end_stream();
        ResponseBody {
            empty,
            // An empty body stays empty: hyper ends the stream with the
            // head, which a HEAD, 204 or 304 response needs.
            hold_end: hold_end && !empty,
            inner,
            idle,
            idle_timer: None,
            total_timer: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            waiting: false,
            bytes: 0,
            clock,
            rest: None,
            on_end: Some(on_end),
        }
    }
}

impl<B, F: FnOnce(u64, BodyEnd)> ResponseBody<B, F> {
    fn finish(&mut self, end: BodyEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.bytes, end);
        }
    }

    /// Takes the first [`PIECE`] bytes of `data`, and keeps the rest for the
    /// next polls.
    fn piece_of(&mut self, mut data: Bytes) -> Bytes {
        if data.len() <= PIECE {
            return data;
        }
        let piece = data.split_to(PIECE);
        self.rest = Some(data);
        piece
    }
}

impl<B, F> HttpBody for ResponseBody<B, F>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    F: FnOnce(u64, BodyEnd) + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(clock) = &this.clock {
            clock.polled();
        }
        let polled = match this.rest.take() {
            Some(rest) => Poll::Ready(Some(Ok(Frame::data(rest)))),
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) if this.clock.is_some() => Frame::data(this.piece_of(data)),
                    Ok(data) => Frame::data(data),
                    Err(frame) => frame,
                };
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                this.waiting = false;
                // hyper may drop a body without polling past its last frame
                // once `is_end_stream` is true, and always after trailers,
                // which come last.
                let last = this.rest.is_none() && this.inner.is_end_stream();
                if frame.is_trailers() || (last && !this.hold_end) {
                    this.finish(BodyEnd::Complete);
                } else if let Some(clock) = &this.clock {
                    clock.frame_sent();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(BodyEnd::UpstreamError);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finish(BodyEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                // The idle clock starts at the first poll that finds nothing,
                // so time the client spent not reading is not counted.
                if let Some(idle) = this.idle {
                    restart_on_wait(&mut this.idle_timer, &mut this.waiting, idle);
                }
                let timeout = if this
                    .total_timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready())
                {
                    Some(BodyTimeout::Total)
                } else if this
                    .idle_timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready())
                {
                    Some(BodyTimeout::Idle)
                } else {
                    None
                };
                match timeout {
                    Some(t) => {
                        this.finish(BodyEnd::Timeout(t));
                        Poll::Ready(Some(Err(Box::new(t))))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.hold_end {
            return self.on_end.is_none();
        }
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F: FnOnce(u64, BodyEnd)> Drop for ResponseBody<B, F> {
    fn drop(&mut self) {
        let end = if self.empty {
            BodyEnd::Complete
        } else {
            BodyEnd::Dropped
        };
        self.finish(end);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    /// Polls a held-end body of one data frame and `last` to its end and
    /// returns how `on_end` saw it end, right after the last frame.
    async fn end_after(last: Frame<Bytes>) -> Option<(u64, BodyEnd)> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Ok(last)];
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let body = ResponseBody::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            None,
            None,
            true,
            None,
            move |bytes, end| *seen.lock().unwrap() = Some((bytes, end)),
        );
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if frame.is_trailers() {
                // hyper stops here: the end must already be recorded.
                return *ended.lock().unwrap();
            }
        }
        *ended.lock().unwrap()
    }

    #[tokio::test]
    async fn held_end_reported_after_trailers() {
        let trailers = Frame::trailers(http::HeaderMap::new());

        assert_eq!(end_after(trailers).await, Some((3, BodyEnd::Complete)));
    }

    #[tokio::test]
    async fn clocked_body_split_into_pieces() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            vec![Ok(Frame::data(Bytes::from(vec![7u8; 40_000])))];
        let ended = Arc::new(Mutex::new(None));
        let seen = ended.clone();
        let clock = Arc::new(SendClock::default());
        let body = ResponseBody::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            None,
            None,
            true,
            Some(clock.clone()),
            move |bytes, end| *seen.lock().unwrap() = Some((bytes, end)),
        );
        let mut body = std::pin::pin!(body);

        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            assert!(clock.waiting_since().is_some(), "a piece went out");
        }

        assert_eq!(sizes, [PIECE, PIECE, 40_000 - 2 * PIECE]);
        assert_eq!(*ended.lock().unwrap(), Some((40_000, BodyEnd::Complete)));
    }

    #[tokio::test]
    async fn held_end_reported_when_polled_past_last_frame() {
        let last = Frame::data(Bytes::from_static(b"de"));

        assert_eq!(end_after(last).await, Some((5, BodyEnd::Complete)));
    }
}
