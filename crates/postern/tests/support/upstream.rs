//! Small real upstream servers on 127.0.0.1, each on a port the kernel
//! picks. They run as tasks of the test's runtime and stop with it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::client::{ChannelBody, full_body};

/// Bodies up to this size are echoed back in full; larger ones only by
/// length and SHA-256.
const ECHO_BODY_LIMIT: usize = 64 * 1024;

type ServerBody = BoxBody<Bytes, super::client::BoxError>;

/// One request as the echo server received it.
#[derive(Debug, Clone)]
pub struct EchoRecord {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    /// When the first body chunk arrived, if the body had any.
    pub first_chunk_at: Option<Instant>,
    /// When the body had been read to the end.
    pub finished_at: Instant,
}

/// An HTTP/1.1 server that responds to every request with a JSON description of
/// it: method, path with query, headers in order, and the body. A request
/// to `/set-cookie?c=LINE&c=LINE` gets each `LINE` as a Set-Cookie header.
#[derive(Clone)]
pub struct EchoServer {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<EchoRecord>>>,
}

/// The echo server's JSON description of a request.
#[derive(Debug, Clone)]
pub struct Echo(pub Value);

// === impl EchoServer ===

impl EchoServer {
    pub async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let server = EchoServer { addr, log };
        let shared = server.log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| echo(log.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    /// Returns how many requests reached the server.
    pub fn hits(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<EchoRecord> {
        self.log.lock().unwrap().clone()
    }

    /// The method and path of each request received, for failure messages.
    pub fn request_lines(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

async fn echo(
    log: Arc<Mutex<Vec<EchoRecord>>>,
    request: Request<Incoming>,
) -> Result<Response<ServerBody>, Infallible> {
    let (parts, mut body) = request.into_parts();
    let mut first_chunk_at = None;
    let mut data = Vec::new();
    let mut body_len = 0;
    let mut hasher = Sha256::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Some(chunk) = frame.data_ref() {
            first_chunk_at.get_or_insert_with(Instant::now);
            hasher.update(chunk);
            body_len += chunk.len();
            if body_len <= ECHO_BODY_LIMIT {
                data.extend_from_slice(chunk);
            }
        }
    }

    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let digest = hex::encode(hasher.finalize());
    let description = json!({
        "method": parts.method.as_str(),
        "path": path,
        "version": format!("{:?}", parts.version),
        "headers": headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "body": (body_len <= ECHO_BODY_LIMIT).then(|| String::from_utf8_lossy(&data).into_owned()),
        "body_len": body_len,
        "body_sha256": digest,
    });
    log.lock().unwrap().push(EchoRecord {
        method: parts.method.to_string(),
        path: path.clone(),
        headers,
        body_len,
        first_chunk_at,
        finished_at: Instant::now(),
    });

    let mut response = Response::new(full_body(description.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(query) = path.strip_prefix("/set-cookie?") {
        // Each `c` parameter becomes one Set-Cookie line, as an app sets it.
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "c" {
                let value = http::HeaderValue::from_str(&value).unwrap();
                response.headers_mut().append("set-cookie", value);
            }
        }
    }
    if path.starts_with("/hop-response") {
        // Hop-by-hop headers that the gateway must not pass to the client.
        let h = response.headers_mut();
        h.insert("connection", "x-upstream-hop".parse().unwrap());
        h.insert("x-upstream-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-upstream-end-to-end", "1".parse().unwrap());
    }
    Ok(response)
}

// === impl Echo ===

impl Echo {
    pub fn method(&self) -> &str {
        self.0["method"].as_str().unwrap_or_default()
    }

    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap_or_default()
    }

    pub fn body(&self) -> &str {
        self.0["body"].as_str().unwrap_or_default()
    }

    pub fn body_len(&self) -> u64 {
        self.0["body_len"].as_u64().unwrap_or_default()
    }

    pub fn body_sha256(&self) -> &str {
        self.0["body_sha256"].as_str().unwrap_or_default()
    }

    /// Returns every value of the header `name` (any letter case), in order.
    pub fn headers_named(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pair| {
                pair[0]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .filter_map(|pair| pair[1].as_str().map(str::to_owned))
            .collect()
    }

    /// Returns the only value of the header `name`, and panics if it appears
    /// twice.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.headers_named(name);
        assert!(
            values.len() <= 1,
            "{name} reached the upstream {} times: {values:?}",
            values.len()
        );
        values.into_iter().next()
    }

    pub fn header_names(&self) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pair| pair[0].as_str().map(str::to_owned))
            .collect()
    }
}

/// Starts a server-sent-events upstream. `GET /events?count=N&pause_ms=P&stall_ms=S`
/// sends N events (`data: event I`), P milliseconds apart, then keeps the
/// stream open S more milliseconds before ending it.
pub async fn start_sse() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(sse))
                    .await;
            });
        }
    });
    addr
}

/// Reads a number from a query such as `count=5&pause_ms=200`.
fn query_number(query: &str, key: &str, default: u64) -> u64 {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

async fn sse(request: Request<Incoming>) -> Result<Response<ServerBody>, Infallible> {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let count = query_number(&query, "count", 5);
    let pause = Duration::from_millis(query_number(&query, "pause_ms", 200));
    let stall = Duration::from_millis(query_number(&query, "stall_ms", 0));

    let (sender, body) = ChannelBody::new();
    tokio::spawn(async move {
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            let event = Bytes::from(format!("data: event {i}\n\n"));
            if sender.send(event).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(stall).await;
        drop(sender);
    });

    let mut response = Response::new(body.map_err(|never| match never {}).boxed());
    let headers = response.headers_mut();
    headers.insert("content-type", "text/event-stream".parse().unwrap());
    headers.insert("cache-control", "no-cache".parse().unwrap());
    Ok(response)
}

/// Starts a server that accepts connections, reads what arrives, and never
/// responds.
pub async fn start_silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Starts a server that reads the start of each request, then resets the
/// connection (SO_LINGER 0, then close).
pub async fn start_resetting() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                let _ = stream.read(&mut buf).await;
                let _ = stream.set_zero_linger();
                drop(stream);
            });
        }
    });
    addr
}

/// Starts a server that responds to each request head with "ok" at once,
/// without reading a body, and counts the connections it accepted. A request
/// target that is not in origin form gets 400. With `close_after_one`, it closes each
/// connection right after its first response, without saying so in a
/// `Connection: close` header, as an upstream whose keep-alive timer fired
/// would.
pub async fn start_counting(close_after_one: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    head.extend_from_slice(&buf[..n]);
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        // Only an origin-form target ("GET /path") gets
                        // 200.
                        let origin_form =
                            head.starts_with(b"GET / ") || head.starts_with(b"POST / ");
                        head.drain(..end + 4);
                        let response: &[u8] = if origin_form {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
                        };
                        if stream.write_all(response).await.is_err() || close_after_one {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// Starts an app that responds to the first request on each connection
/// with 200 and keeps the connection, then closes it when the second
/// request arrives, without a response: an app that closed an idle
/// connection just as the gateway reused it. Returns its address and its
/// count of connections.
pub async fn start_losing_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(respond_to_heads(stream, |number| {
                (number == 1).then_some(&b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"[..])
            }));
        }
    });
    (addr, connections)
}

/// Starts an app that writes `response`, unchanged, for every request head.
pub async fn start_answering(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(respond_to_heads(stream, |_| Some(response)));
        }
    });
    addr
}

/// Reads request heads (bodies are not expected) and writes `reply(n)` for
/// the n-th head, counting from 1, or closes the connection when it returns
/// `None`.
async fn respond_to_heads(mut stream: TcpStream, reply: impl Fn(usize) -> Option<&'static [u8]>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let mut heads = 0;
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        head.extend_from_slice(&buf[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.drain(..end + 4);
            heads += 1;
            let Some(response) = reply(heads) else {
                return;
            };
            if stream.write_all(response).await.is_err() {
                return;
            }
        }
    }
}

/// Returns an address where nothing listens: a port the kernel picked, then
/// freed.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Starts a WebSocket server that echoes every text and binary message.
pub async fn start_websocket_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    let data = message.is_text() || message.is_binary();
                    if data && socket.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Starts an app that responds to each request with a chunked body that
/// never ends, written as fast as the gateway takes it. Returns its address
/// and its count of open connections, which drops when the gateway lets a
/// connection go.
pub async fn start_endless() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                stream_forever(stream).await;
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

/// Reads one request head, then writes 16 KiB chunks until a write fails.
async fn stream_forever(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(n @ 1..) => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let start = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    if stream.write_all(start).await.is_err() {
        return;
    }
    let mut chunk = b"4000\r\n".to_vec();
    chunk.extend_from_slice(&[b'x'; 0x4000]);
    chunk.extend_from_slice(b"\r\n");
    while stream.write_all(&chunk).await.is_ok() {}
}
