//! An even spread of a gate's connections over the workers.
//!
//! Each worker accepts on its own `SO_REUSEPORT` socket, and the kernel
//! picks the socket by a hash of the connection's addresses. Over many
//! short connections that evens out, but over a few dozen long-lived ones
//! it often does not: 64 connections on four workers once split 20, 19, 16
//! and 9. Each worker gets about the same share of CPU, so requests on the
//! busiest worker wait longer in proportion. A worker that accepts a
//! connection while it has more than the least loaded worker therefore
//! hands the connection to that worker, as Envoy's `exact_balance` does. A
//! small slack, growing with the load, keeps hand-overs rare when thousands
//! of connections are open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::policy::admission::Gate;
use crate::telemetry::metrics;

/// A connection accepted by one worker and handed to another.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
    pub seat: Seat,
}

/// The open connections of each worker of one gate, and the inboxes through
/// which the workers hand connections to each other.
pub struct Balance {
    gate: Gate,
    open: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

impl Balance {
    /// Makes the balance of `workers` workers, and the inbox of each.
    pub fn new(
        gate: Gate,
        workers: usize,
    ) -> (Arc<Balance>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let balance = Balance {
            gate,
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders.into_boxed_slice(),
        };
        (Arc::new(balance), receivers)
    }

    /// Gives a seat to a connection that worker `local` accepted: on that
    /// worker, or on the least loaded one when `local` has too many.
    pub fn seat(self: &Arc<Self>, local: usize) -> Seat {
        let open: Vec<usize> = self
            .open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let worker = pick(local, &open);
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        metrics::worker_connection_opened(self.gate, worker);
        Seat {
            balance: self.clone(),
            worker,
        }
    }

    /// Sends a connection to the worker its seat is on. It comes back when
    /// that worker no longer runs, which happens only at shutdown.
    pub fn hand_over(&self, handoff: Handoff) -> Result<(), Handoff> {
        self.inboxes[handoff.seat.worker]
            .send(handoff)
            .map_err(|refused| refused.0)
    }
}

/// One open connection's place on a worker. The worker's count goes down
/// when the seat is dropped.
pub struct Seat {
    balance: Arc<Balance>,
    worker: usize,
}

impl Seat {
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.balance.open[self.worker].fetch_sub(1, Ordering::Relaxed);
        metrics::worker_connection_closed(self.balance.gate, self.worker);
    }
}

/// Picks the worker for a connection that worker `local` accepted, given
/// the open connections of every worker: `local` itself unless it has
/// more than the least loaded worker plus a slack of one connection and
/// 1/32 of that worker's count.
pub fn pick(local: usize, open: &[usize]) -> usize {
    let Some((least, &fewest)) = open.iter().enumerate().min_by_key(|&(_, n)| *n) else {
        return local;
    };
    let slack = 1 + fewest / 32;
    if open.get(local).is_some_and(|&mine| mine > fewest + slack) {
        least
    } else {
        local
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn keeps_local_within_slack() {
        assert_eq!(pick(0, &[0, 0]), 0);
        assert_eq!(pick(0, &[1, 0]), 0);
        assert_eq!(pick(1, &[20, 21]), 1);
        assert_eq!(pick(0, &[1000, 970]), 0);
    }

    #[test]
    fn moves_to_least_loaded() {
        assert_eq!(pick(0, &[2, 0]), 1);
        assert_eq!(pick(1, &[5, 9, 4, 6]), 2);
        assert_eq!(pick(0, &[1000, 960]), 1);
    }

    #[test]
    fn single_worker_keeps_all() {
        assert_eq!(pick(0, &[500]), 0);
    }
}
