//! A real redis-server for the server-side session tests, on a free
//! loopback port, with persistence off. Dropping it kills the process.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

// === impl RedisServer ===

impl RedisServer {
    /// Starts redis-server on a free port of 127.0.0.1, requiring
    /// `password`, and waits until it accepts connections.
    pub fn start(password: &str) -> RedisServer {
        RedisServer::start_on(free_port(), password)
    }

    /// Starts redis-server on `port` of 127.0.0.1, requiring `password`.
    pub fn start_on(port: u16, password: &str) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}); run tests/redis/setup.sh, which \
                     scripts/test.sh runs first"
                )
            });
        let server = RedisServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(server.addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen on {} within 10s",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Stops the server, as an outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a port of 127.0.0.1 that was free a moment ago. redis-server
/// cannot report a port the kernel picked, so the test takes a free one and
/// hands it over. Another process could take it in between, and then the
/// wait in [`RedisServer::start_on`] fails with the address.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
