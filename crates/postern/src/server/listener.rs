//! Accept loops for the two gates, with the connection cap and drain.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::task::TaskTracker;

use super::connection::{self, refuse};
use crate::policy::admission::{Gate, Refusal};
use crate::runtime::state::State;
use crate::telemetry::metrics;

/// One client connection's hold on the connection limit and the open
/// connections gauge. A WebSocket tunnel outlives its HTTP connection, so it
/// keeps a clone, and the slot frees only when the last holder is gone.
pub struct ConnectionGuard {
    gate: Gate,
    _permit: OwnedSemaphorePermit,
}

impl ConnectionGuard {
    fn new(gate: Gate, permit: OwnedSemaphorePermit) -> Self {
        metrics::connection_opened(gate);
        ConnectionGuard {
            gate,
            _permit: permit,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics::connection_closed(self.gate);
    }
}

/// A bound gate listener.
pub struct GateListener {
    pub gate: Gate,
    pub listener: TcpListener,
}

impl GateListener {
    pub async fn bind(gate: Gate, addr: SocketAddr) -> std::io::Result<Self> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(4096)?;
        Ok(GateListener { gate, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` turns true. Each connection runs
    /// in a task on `tracker`, so the caller can wait for them to drain.
    pub async fn run(
        self,
        state: Arc<State>,
        max_connections: usize,
        tracker: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let gate = self.gate;
        let permits = Arc::new(Semaphore::new(max_connections));
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors or a transient error: back off
                    // briefly instead of spinning.
                    tracing::warn!(gate = %gate, %error, "Accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                refuse(
                    gate,
                    peer,
                    Refusal::ConnectionLimit,
                    "max_connections reached",
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let shutdown = shutdown.clone();
            let guard = Arc::new(ConnectionGuard::new(gate, permit));
            let tunnels = tracker.clone();
            tracker.spawn(async move {
                connection::serve(gate, state, stream, peer, shutdown, guard, tunnels).await;
            });
        }
        tracing::info!(gate = %gate, "Stopped accepting connections");
    }
}
