//! Accept loops for the two gates, with the connection cap and drain.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::task::TaskTracker;

use super::balance::{Balance, Handoff, Seat};
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
    _seat: Seat,
}

impl ConnectionGuard {
    fn new(gate: Gate, permit: OwnedSemaphorePermit, seat: Seat) -> Self {
        metrics::connection_opened(gate);
        ConnectionGuard {
            gate,
            _permit: permit,
            _seat: seat,
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

    /// Splits the listener into one acceptor per worker, in worker order.
    pub fn into_acceptors(self) -> Vec<Acceptor> {
        let (gate, permits) = (self.gate, self.permits);
        let (balance, inboxes) = Balance::new(gate, self.sockets.len());
        self.sockets
            .into_iter()
            .zip(inboxes)
            .enumerate()
            .map(|(worker, (socket, inbox))| Acceptor {
                gate,
                worker,
                socket,
                permits: permits.clone(),
                balance: balance.clone(),
                inbox,
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
    worker: usize,
    socket: std::net::TcpListener,
    permits: Arc<Semaphore>,
    balance: Arc<Balance>,
    /// Connections that other workers accepted and handed to this one.
    inbox: mpsc::UnboundedReceiver<Handoff>,
}

impl Acceptor {
    /// Accepts connections until `shutdown` turns true, and serves those
    /// this worker accepts or is handed. Each connection runs in a task on
    /// `tracker`, so the caller can wait for them to drain. Must run inside
    /// the worker's runtime.
    pub async fn run(
        self,
        state: Arc<State>,
        tracker: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Acceptor {
            gate,
            worker,
            socket,
            permits,
            balance,
            mut inbox,
        } = self;
        let listener = match TcpListener::from_std(socket) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(gate = %gate, %error, "A worker cannot use its listening socket");
                return;
            }
        };
        let serving = Serving {
            gate,
            state,
            tracker,
            shutdown: shutdown.clone(),
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(handoff) = inbox.recv() => {
                    serving.take_over(handoff);
                    continue;
                }
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
            let seat = balance.seat(worker);
            if seat.worker() == worker {
                serving.start(stream, peer, permit, seat);
            } else {
                hand_over(&balance, gate, stream, peer, permit, seat);
            }
        }
        tracing::debug!(gate = %gate, "Stopped accepting connections");
    }
}

/// Sends a connection to the worker its seat is on. The stream leaves
/// this worker's event loop first, since each runtime polls its own.
fn hand_over(
    balance: &Balance,
    gate: Gate,
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    seat: Seat,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(gate = %gate, %error, "A connection could not move to another worker");
            return;
        }
    };
    let handoff = Handoff {
        stream,
        peer,
        permit,
        seat,
    };
    // Refused only when the other worker has stopped, at shutdown: the
    // connection then closes unread, like one still in the backlog.
    let _ = balance.hand_over(handoff);
}

/// The state a worker needs to start serving a connection on one gate.
struct Serving {
    gate: Gate,
    state: Arc<State>,
    tracker: TaskTracker,
    shutdown: watch::Receiver<bool>,
}

impl Serving {
    /// Serves a connection that another worker accepted.
    fn take_over(&self, handoff: Handoff) {
        match TcpStream::from_std(handoff.stream) {
            Ok(stream) => self.start(stream, handoff.peer, handoff.permit, handoff.seat),
            Err(error) => {
                tracing::warn!(gate = %self.gate, %error, "A connection from another worker could not be served")
            }
        }
    }

    /// Serves a connection on this worker, in a task on the tracker.
    fn start(&self, stream: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit, seat: Seat) {
        let _ = stream.set_nodelay(true);
        let (gate, state, shutdown) = (self.gate, self.state.clone(), self.shutdown.clone());
        let guard = Arc::new(ConnectionGuard::new(gate, permit, seat));
        let tunnels = self.tracker.clone();
        self.tracker.spawn(async move {
            connection::serve(gate, state, stream, peer, shutdown, guard, tunnels).await;
        });
    }
}
