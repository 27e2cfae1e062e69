//! Requests in flight on one client connection, and when the last one
//! ended, so that an idle connection can be parked or closed without
//! cutting a long response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection, and when the last one ended, so an
/// idle connection can be closed without cutting a long response.
/// Requests in flight are `started - ended`: two counters, so that the
/// request path still makes one atomic update per event and the connection
/// can also tell whether any request arrived since a given point.
pub struct Activity {
    started: AtomicU64,
    ended: AtomicU64,
    idle_since: std::sync::Mutex<Instant>,
}

// === impl Activity ===

impl Activity {
    pub fn new() -> Self {
        Activity {
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            idle_since: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub fn request_started(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }

    pub fn request_ended(&self) {
        let ended = self.ended.fetch_add(1, Ordering::SeqCst) + 1;
        if ended == self.started.load(Ordering::SeqCst) {
            *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }

    /// Returns how many requests have started on the connection so far.
    pub fn requests_started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Returns how many requests are in flight.
    pub fn in_flight(&self) -> u64 {
        // `ended` first: every end follows its start, so the difference
        // cannot go below zero.
        let ended = self.ended.load(Ordering::SeqCst);
        self.started.load(Ordering::SeqCst) - ended
    }

    /// Returns how long the connection has had no request in flight.
    pub fn idle_for(&self) -> Duration {
        if self.in_flight() > 0 {
            return Duration::ZERO;
        }
        self.idle_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    pub fn idle_deadline(&self, limit: Duration) -> Instant {
        let since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = crate::deadline::after(since, limit);
        // While requests are in flight, look again after one full period.
        if self.in_flight() > 0 {
            crate::deadline::after(Instant::now(), limit)
        } else {
            deadline
        }
    }
}
