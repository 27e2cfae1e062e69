//! When an HTTP/2 response body last waited for its client to take more,
//! so that a stream whose client keeps its flow-control window closed can
//! be reset after `limits.send_timeout`.
//!
//! hyper polls an HTTP/2 response body only while the client's window has
//! room, so a body that has handed over a frame and is not polled again is
//! waiting for the client. A body that is polled and waits for its app is
//! not: that silence is the app's, bounded by `timeouts.body_idle`.
//!
//! The clock restarts only when the body is polled again, after h2 has sent
//! the whole previous frame, so the body hands hyper frames of at most
//! 16 KiB (see `http::body`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

/// The send clock of one HTTP/2 response.
#[derive(Debug, Default)]
pub struct SendClock {
    /// When the body last handed over a frame without being polled since.
    waiting_since: Mutex<Option<Instant>>,
    timed_out: AtomicBool,
}

// === impl SendClock ===

impl SendClock {
    /// Notes that the body handed over a frame: the wait for the client
    /// starts, unless the body is polled again.
    pub fn frame_sent(&self) {
        *self.lock() = Some(Instant::now());
    }

    /// Notes that the body is polled: the client took what it had.
    pub fn polled(&self) {
        *self.lock() = None;
    }

    /// Returns since when the body has waited for the client, if it does.
    pub fn waiting_since(&self) -> Option<Instant> {
        *self.lock()
    }

    /// Marks the stream as reset because the client took nothing for
    /// `limits.send_timeout`.
    pub fn mark_timed_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
    }

    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.waiting_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}
