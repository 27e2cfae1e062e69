//! The executor of an HTTP/2 connection's streams, which resets a stream
//! whose client has taken none of its response for `limits.send_timeout`.
//!
//! hyper runs each HTTP/2 stream as a future it hands to the connection's
//! executor, and h2 resets a stream with CANCEL when that future is
//! dropped before the stream ends. hyper calls the service for a stream
//! and hands the stream to the executor right after, in the same poll
//! (`proto::h2::server` in hyper 1.13), so the service leaves the stream's
//! [`SendClock`] in a slot that the executor takes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use crate::http::send_clock::SendClock;
use crate::policy::admission::Gate;
use crate::telemetry::metrics;

/// The clock of the stream whose service was called last, until the
/// executor takes it.
pub(super) type ClockSlot = Arc<Mutex<Option<Arc<SendClock>>>>;

/// Spawns each stream on the runtime, watched by its send clock.
#[derive(Clone)]
pub(super) struct StreamExecutor {
    pub slot: ClockSlot,
    pub limit: Duration,
    pub gate: Gate,
}

/// A stream future that ends early, dropping the stream, once its clock
/// has waited for the client for longer than `limit`.
struct Watched<F> {
    stream: Pin<Box<F>>,
    clock: Option<Arc<SendClock>>,
    limit: Duration,
    gate: Gate,
    /// Made when the stream first waits for its client.
    timer: Option<Pin<Box<Sleep>>>,
}

// === impl StreamExecutor ===

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let clock = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        tokio::spawn(Watched {
            stream: Box::pin(stream),
            clock,
            limit: self.limit,
            gate: self.gate,
            timer: None,
        });
    }
}

// === impl Watched ===

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.stream.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }

        // The body hands over its frames inside the poll above, so the
        // clock is up to date here.
        let Some(clock) = &this.clock else {
            return Poll::Pending;
        };
        let Some(since) = clock.waiting_since() else {
            return Poll::Pending;
        };

        let deadline = crate::deadline::after(since, this.limit);
        let timer = match &mut this.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => this
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }

        clock.mark_timed_out();
        metrics::record_client_error(this.gate, "client_send_timeout");
        // Returning drops the stream, which h2 resets with CANCEL.
        Poll::Ready(())
    }
}
