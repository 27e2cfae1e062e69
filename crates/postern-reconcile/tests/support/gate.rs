//! A real `postern serve` on the vars and endpoints files that reconcile
//! wrote, an upstream app, and a client that reaches the private gate the
//! way the AWS load balancer relays a PrivateLink connection.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};

use super::postern_binary;

/// The body the upstream app returns.
pub const UPSTREAM_BODY: &str = "hello from litellm";
/// The private gate's trusted PROXY source, playing the load balancer.
const BALANCER: &str = "127.0.0.2";
const START_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts an app that answers every request with 200 and
/// [`UPSTREAM_BODY`], and returns its port.
pub async fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // Read the request head; the test requests have no body.
                while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{UPSTREAM_BODY}",
                    UPSTREAM_BODY.len()
                );
                let _ = reader.get_mut().write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// A running `postern serve`. Dropping it kills the process.
pub struct Gate {
    child: tokio::process::Child,
    pub private: SocketAddr,
}

// === impl Gate ===

impl Gate {
    /// Starts `postern serve --config vars` and waits for its startup line,
    /// which names the addresses the kernel picked.
    pub async fn start(vars: &Path) -> Gate {
        let mut child = tokio::process::Command::new(postern_binary())
            .arg("serve")
            .arg("--config")
            .arg(vars)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting postern serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = Instant::now();
        let mut seen = Vec::new();
        let private = loop {
            let remaining = START_TIMEOUT.saturating_sub(started.elapsed());
            let line = tokio::time::timeout(remaining, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("postern did not start; stderr:\n{}", seen.join("\n")))
                .unwrap()
                .unwrap_or_else(|| panic!("postern exited; stderr:\n{}", seen.join("\n")));
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if parsed["message"] == "postern started" {
                break parsed["private"].as_str().unwrap().parse().unwrap();
            }
            seen.push(line);
        };
        // Keep draining stderr, so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Gate { child, private }
    }

    /// Sends `GET /` for the app `litellm` from the balancer's address with
    /// a PROXY v2 header that names `endpoint_id`, and returns the whole
    /// response, or an empty string when the gate closed the connection.
    pub async fn request_through_endpoint(&self, endpoint_id: &str) -> String {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("{BALANCER}:0").parse().unwrap())
            .unwrap();
        let mut stream = socket.connect(self.private).await.unwrap();

        let client: SocketAddr = "10.99.0.7:40000".parse().unwrap();
        let mut tlv = vec![0x01];
        tlv.extend_from_slice(endpoint_id.as_bytes());
        let header = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (client, self.private),
        )
        .write_tlv(0xEA, &tlv)
        .unwrap()
        .build()
        .unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\nhost: litellm.internal.{}\r\nconnection: close\r\n\r\n",
            super::CLUSTER
        );
        let mut bytes = header;
        bytes.extend_from_slice(request.as_bytes());
        // A refused connection may be closed before the write completes.
        let _ = stream.write_all(&bytes).await;

        let mut response = Vec::new();
        let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read_to_end(&mut response)).await;
        assert!(read.is_ok(), "the private gate neither answered nor closed");
        String::from_utf8_lossy(&response).into_owned()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
