//! Requests in flight on one client connection, and when the last one
//! ended, so that an idle connection can be parked or closed without
//! cutting a long response.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection, and when the last one ended, so an
/// idle connection can be closed without cutting a long response.
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: std::sync::Mutex<Instant>,
}

// === impl Activity ===

impl Activity {
    pub fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(Instant::now()),
        }
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }

    /// Returns how long the connection has had no request in flight.
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.idle_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    pub fn idle_deadline(&self, limit: Duration) -> Instant {
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
