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

/// A bound gate listener: one socket per worker on the same address.
pub struct GateListener {
    pub gate: Gate,
    sockets: Vec<std::net::TcpListener>,
    permits: Arc<Semaphore>,
}

impl GateListener {
    /// Binds `workers` sockets to `addr` with `SO_REUSEPORT`, with the port
    /// chosen first when `addr` names port 0. At most `max_connections`
    /// connections are open at once over all of them.
    pub fn bind(
        gate: Gate,
        addr: SocketAddr,
        workers: usize,
        max_connections: usize,
    ) -> std::io::Result<Self> {
        let addr = claim_port(addr)?;
        let mut sockets = Vec::with_capacity(workers);
        for _ in 0..workers.max(1) {
            sockets.push(bind_socket(addr)?);
        }
        Ok(GateListener {
            gate,
            sockets,
            permits: Arc::new(Semaphore::new(max_connections)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.sockets[0].local_addr()
    }

    /// Splits the listener into one acceptor per worker.
    pub fn into_acceptors(self) -> Vec<Acceptor> {
        let (gate, permits) = (self.gate, self.permits);
        self.sockets
            .into_iter()
            .map(|socket| Acceptor {
                gate,
                socket,
                permits: permits.clone(),
            })
            .collect()
    }
}

/// Checks that no other process listens on `addr`, and picks the port
/// when `addr` names port 0.
///
/// `SO_REUSEPORT` lets any process of the same user join a listening
/// group, so a second gateway started on the same port would silently take
/// a share of the connections. A socket bound without `SO_REUSEPORT` fails
/// with "address in use" while such a group exists. It is closed again
/// before the workers' sockets bind.
// NOTE: another process could still bind in the short gap between this
// check and the workers' sockets.
fn claim_port(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    use socket2::{Domain, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    let bound = probe.local_addr()?.as_socket().unwrap_or(addr);
    Ok(bound)
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// One worker's share of a gate listener.
pub struct Acceptor {
    gate: Gate,
    socket: std::net::TcpListener,
    permits: Arc<Semaphore>,
}

impl Acceptor {
    /// Accepts connections until `shutdown` turns true. Each connection runs
    /// in a task on `tracker`, so the caller can wait for them to drain.
    /// Must run inside the worker's runtime.
    pub async fn run(
        self,
        state: Arc<State>,
        tracker: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let gate = self.gate;
        let listener = match TcpListener::from_std(self.socket) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(gate = %gate, %error, "A worker cannot use its listening socket");
                return;
            }
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
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
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
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
        tracing::debug!(gate = %gate, "Stopped accepting connections");
    }
}
