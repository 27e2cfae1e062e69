//! Clients: sockets bound to a chosen loopback source address, hyper
//! HTTP/1.1 and HTTP/2 over them, and raw bytes for requests that hyper
//! would refuse to send.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::LOCALHOST;
use super::gateway::TOKEN;
use super::upstream::Echo;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type of every hyper client here.
pub type ClientBody = BoxBody<Bytes, BoxError>;

/// How long a client waits for a whole response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A response read to the end.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A body fed from a channel, one frame per message.
pub struct ChannelBody {
    receiver: mpsc::Receiver<Bytes>,
}

/// What a read on a socket returned.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The peer closed the connection (EOF).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The peer sent bytes.
    Data(Vec<u8>),
    /// Nothing happened within the time limit.
    Silent,
}

// === impl HttpResponse ===

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.text()))
    }

    /// Parses the body as the echo upstream's description of the request.
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected the echo upstream's response; got {} {}",
            self.status,
            self.text()
        );
        Echo(self.json())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Returns the gateway's request id, which keys the access log line.
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .expect("the response has an X-Request-Id")
            .to_owned()
    }
}

// === impl ChannelBody ===

impl ChannelBody {
    /// Creates a body and the sender that feeds it. Dropping the sender ends
    /// the body.
    pub fn new() -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (sender, receiver) = mpsc::channel(4);
        (sender, ChannelBody { receiver })
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

pub fn empty_body() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full_body(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn channel_body() -> (mpsc::Sender<Bytes>, ClientBody) {
    let (sender, body) = ChannelBody::new();
    (sender, body.map_err(|never| match never {}).boxed())
}

/// Opens a TCP connection from `source` (port chosen by the kernel).
pub async fn connect_from(source: IpAddr, target: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("creating a socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .unwrap_or_else(|e| panic!("binding {source}: {e}"));
    let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(target))
        .await
        .unwrap_or_else(|_| panic!("connecting {source} -> {target} timed out"))
        .unwrap_or_else(|e| panic!("connecting {source} -> {target}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream
}

/// Tries to connect from `source`; returns the error if the connection was
/// not established.
pub async fn try_connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    match tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Starts a request for `host` and `path` (origin-form, with a Host header).
pub fn request(method: &str, host: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
}

/// Sends one HTTP/1.1 request on `stream` and reads the whole response.
pub async fn send_http1(
    stream: TcpStream,
    request: Request<ClientBody>,
) -> Result<HttpResponse, BoxError> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| "no response headers in time")??;
    read_response(response).await
}

/// Sends one HTTP/2 (prior knowledge) request on `stream`.
pub async fn send_http2(
    stream: TcpStream,
    request: Request<ClientBody>,
) -> Result<HttpResponse, BoxError> {
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| "no response headers in time")??;
    read_response(response).await
}

/// Reads a response's body to the end.
pub async fn read_response(response: http::Response<Incoming>) -> Result<HttpResponse, BoxError> {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(RESPONSE_TIMEOUT, body.collect())
        .await
        .map_err(|_| "the response body did not end in time")??
        .to_bytes();
    Ok(HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends a GET with `headers` from 127.0.0.1 to `gate` on a new connection.
pub async fn get(
    gate: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    get_from(LOCALHOST, gate, host, path, headers).await
}

/// Sends a GET with `headers` from `source` to `gate` on a new connection.
pub async fn get_from(
    source: IpAddr,
    gate: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut builder = request("GET", host, path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let stream = connect_from(source, gate).await;
    send_http1(stream, builder.body(empty_body()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {host}{path} via {gate}: {e}"))
}

/// Sends a GET through the public gate with the machine token in
/// Proxy-Authorization.
pub async fn get_with_token(gate: SocketAddr, host: &str, path: &str) -> HttpResponse {
    let credential = format!("Bearer {TOKEN}");
    get(gate, host, path, &[("proxy-authorization", &credential)]).await
}

/// Sends a GET to the admin listener.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Result<HttpResponse, BoxError> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(admin))
        .await
        .map_err(|_| "connecting to the admin listener timed out")??;
    let request = request("GET", "admin", path).body(empty_body()).unwrap();
    send_http1(stream, request).await
}

/// Reads once from `stream`, waiting at most `limit`.
pub async fn read_outcome(stream: &mut TcpStream, limit: Duration) -> ReadOutcome {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Err(_) => ReadOutcome::Silent,
        Ok(Ok(0)) => ReadOutcome::Closed,
        Ok(Ok(n)) => ReadOutcome::Data(buf[..n].to_vec()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => ReadOutcome::Reset,
        Ok(Err(e)) => panic!("unexpected read error: {e}"),
    }
}

/// Writes `bytes` and ignores errors, because a refused connection may
/// already be closed. The read that follows shows the outcome.
pub async fn write_ignoring_errors(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
}

/// The client connection preface of HTTP/2 followed by an empty SETTINGS
/// frame (RFC 9113 section 3.4).
pub const H2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// The frame type of an HTTP/2 PING (RFC 9113 section 6.7).
pub const H2_PING: u8 = 0x6;
/// The frame type of an HTTP/2 GOAWAY (RFC 9113 section 6.8).
pub const H2_GOAWAY: u8 = 0x7;

/// The frame type of an HTTP/2 DATA frame (RFC 9113 section 6.1).
pub const H2_DATA: u8 = 0x0;
/// The frame type of an HTTP/2 RST_STREAM (RFC 9113 section 6.4).
pub const H2_RST_STREAM: u8 = 0x3;

/// One HTTP/2 frame as read from the wire.
#[derive(Debug)]
pub struct H2Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// Builds an HTTP/2 HEADERS frame that ends its stream: a GET of `path` on
/// `authority` over plain HTTP, with `extra` headers. Each field is an HPACK
/// literal without indexing or Huffman coding (RFC 7541 section 6.2.2), so
/// the request needs no encoder state.
pub fn h2_get_frame(stream: u32, authority: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let pseudo = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
    ];
    let mut block = Vec::new();
    for (name, value) in pseudo.iter().chain(extra) {
        block.push(0x00);
        for text in [name, value] {
            assert!(
                text.len() < 127,
                "{text:?} is too long for a one-byte length"
            );
            block.push(text.len() as u8);
            block.extend_from_slice(text.as_bytes());
        }
    }

    // END_STREAM (0x1) and END_HEADERS (0x4).
    let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[0x1, 0x5]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&block);
    frame
}

/// Reads HTTP/2 frames until the peer closes the stream or `limit` passes,
/// and acknowledges none of them: no SETTINGS or PING acknowledgement. Returns
/// the whole frames read, in order, and whether the peer closed (EOF or an
/// error) within `limit`.
pub async fn read_h2_frames_unanswered<S>(stream: &mut S, limit: Duration) -> (Vec<H2Frame>, bool)
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            bytes.extend_from_slice(&buf[..n]);
        }
    })
    .await;

    // Each frame: a 24-bit payload length, the type, flags and a 31-bit
    // stream id (9 bytes), then the payload.
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + length {
            break;
        }
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        frames.push(H2Frame {
            kind: rest[3],
            flags: rest[4],
            stream,
            payload: rest[9..9 + length].to_vec(),
        });
        rest = &rest[9 + length..];
    }
    (frames, read.is_ok())
}

/// Returns the types of `frames`, in order.
pub fn h2_frame_kinds(frames: &[H2Frame]) -> Vec<u8> {
    frames.iter().map(|frame| frame.kind).collect()
}

/// Asserts that the gateway ends the connection without an HTTP response:
/// the next read returns EOF or a reset within `limit`.
pub async fn assert_closed_without_response(stream: &mut TcpStream, limit: Duration, case: &str) {
    match read_outcome(stream, limit).await {
        ReadOutcome::Closed | ReadOutcome::Reset => {}
        ReadOutcome::Data(bytes) => panic!(
            "{case}: expected the connection to close without a response, got {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        ReadOutcome::Silent => {
            panic!("{case}: the connection stayed open for {limit:?} without a response")
        }
    }
}

/// Builds a minimal HTTP/1.1 GET with `Connection: close`, as raw bytes.
pub fn raw_get(host: &str, path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Writes `bytes` and reads until the peer closes; fails the test if it
/// stays open longer than `RESPONSE_TIMEOUT`.
pub async fn raw_exchange(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    let (out, closed) = raw_exchange_within(stream, bytes, RESPONSE_TIMEOUT).await;
    assert!(
        closed,
        "the connection stayed open {RESPONSE_TIMEOUT:?} after the request; read so far: {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// Writes `bytes` and reads until the peer closes or `limit` passes.
/// Returns what was read and whether the peer closed.
pub async fn raw_exchange_within(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: Duration,
) -> (Vec<u8>, bool) {
    stream.write_all(bytes).await.expect("writing the request");
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (out, read.is_ok())
}

/// Reads one whole response from a keep-alive connection: the head, then a
/// Content-Length or chunked body. Fails the test after `RESPONSE_TIMEOUT`.
pub async fn read_one_response(stream: &mut TcpStream) -> RawResponse {
    let mut bytes = Vec::new();
    let complete = tokio::time::timeout(RESPONSE_TIMEOUT, async {
        let mut buf = [0u8; 8192];
        loop {
            if response_complete(&bytes) {
                return true;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return !bytes.is_empty(),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        complete == Ok(true),
        "no whole response within {RESPONSE_TIMEOUT:?}; read so far: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    RawResponse::parse(&bytes)
}

fn response_complete(bytes: &[u8]) -> bool {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let body = &bytes[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

/// A response parsed from raw bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names as sent, with their values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses the first response in `bytes`; chunked bodies are decoded.
    pub fn parse(bytes: &[u8]) -> RawResponse {
        let text = String::from_utf8_lossy(bytes);
        let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("no complete response head in {text:?}");
        };

        let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("invalid status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
            .collect();

        let rest = &bytes[head_end + 4..];
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let body = if chunked {
            decode_chunked(rest)
        } else if let Some(length) = length {
            rest[..length.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        RawResponse {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            200,
            "expected the echo upstream's response; got {} {:?}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        Echo(self.json())
    }
}

fn decode_chunked(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        bytes = &bytes[line_end + 2..];
        if size == 0 || bytes.len() < size {
            out.extend_from_slice(&bytes[..size.min(bytes.len())]);
            break;
        }
        out.extend_from_slice(&bytes[..size]);
        bytes = bytes.get(size + 2..).unwrap_or_default();
    }
    out
}
