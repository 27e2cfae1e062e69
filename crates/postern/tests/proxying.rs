//! The exchange with the upstream: bodies streamed both ways, WebSocket
//! tunnels, and the 502 and 504 responses when the upstream fails.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Opens an HTTP/1.1 connection from 127.0.0.1 to `gate`, sends a GET with
/// the machine token, and returns the response with its body unread.
async fn open_get(
    gate: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> http::Response<hyper::body::Incoming> {
    let stream = connect_from(LOCALHOST, gate).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = request("GET", host, path)
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(empty_body())
        .unwrap();
    within(
        RESPONSE_TIMEOUT,
        "response headers",
        sender.send_request(request),
    )
    .await
    .unwrap()
}

/// Reads a server-sent-events body and returns each event's text and the
/// time it arrived. Stops at the end of the body or at the first error.
async fn read_events(
    body: &mut hyper::body::Incoming,
    limit: Duration,
) -> (Vec<(String, Instant)>, Option<String>) {
    let mut events = Vec::new();
    let mut pending = String::new();
    let deadline = Instant::now() + limit;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(remaining, body.frame()).await {
            Err(_) => {
                panic!("the event stream did not end within {limit:?}; events so far: {events:?}")
            }
            Ok(None) => return (events, None),
            Ok(Some(Err(error))) => return (events, Some(error.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let now = Instant::now();
        pending.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = pending.find("\n\n") {
            let event = pending[..end].to_owned();
            pending.drain(..end + 2);
            events.push((event, now));
        }
    }
}

#[tokio::test]
async fn sse_events_arrive_one_by_one() {
    let sse = start_sse().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("stream", sse))
        .start()
        .await;
    let pause = Duration::from_millis(200);

    let response = open_get(
        gateway.public,
        &public_host("stream"),
        "/events?count=5&pause_ms=200",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    let (events, error) = read_events(&mut body, Duration::from_secs(5)).await;

    assert_eq!(error, None);
    let texts: Vec<&str> = events.iter().map(|(text, _)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "data: event 0",
            "data: event 1",
            "data: event 2",
            "data: event 3",
            "data: event 4"
        ]
    );
    for pair in events.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        // Some slack for scheduling on a busy machine, but a buffered stream
        // would show gaps near zero.
        assert!(
            gap >= pause / 2,
            "{:?} arrived {gap:?} after {:?}; the upstream paused {pause:?}",
            pair[1].0,
            pair[0].0
        );
    }
}

#[tokio::test]
async fn request_body_streams_up() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    let chunk = vec![b'x'; 128 * 1024];
    let chunks = 8;

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let (sender, body) = channel_body();
    let request = request("POST", &public_host("echo"), "/upload")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(body)
        .unwrap();
    let upload = {
        let chunk = Bytes::from(chunk.clone());
        async move {
            for _ in 0..chunks {
                sender.send(chunk.clone()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Instant::now()
        }
    };
    let (response, last_sent) = tokio::join!(send_http1(stream, request), upload);

    let seen = response.unwrap().echo();
    let mut hasher = Sha256::new();
    for _ in 0..chunks {
        hasher.update(&chunk);
    }
    assert_eq!(seen.body_len(), (chunk.len() * chunks) as u64);
    assert_eq!(seen.body_sha256(), hex::encode(hasher.finalize()));
    let record = &echo.requests()[0];
    let first_chunk_at = record.first_chunk_at.expect("the upstream got body bytes");
    assert!(
        first_chunk_at + Duration::from_millis(300) < last_sent,
        "the upstream got its first body bytes only {:?} before the client sent its last chunk",
        last_sent.saturating_duration_since(first_chunk_at)
    );
}

#[tokio::test]
async fn large_fixed_length_body_round_trip() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let request = request("PUT", &public_host("echo"), "/blob")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .header("content-length", body.len())
        .body(full_body(body.clone()))
        .unwrap();
    let response = send_http1(stream, request).await.unwrap();

    let seen = response.echo();
    assert_eq!(seen.header("content-length"), Some(body.len().to_string()));
    assert_eq!(seen.body_len(), body.len() as u64);
    assert_eq!(seen.body_sha256(), hex::encode(Sha256::digest(&body)));
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["bytes_in"], body.len() as u64);
}

/// Builds a WebSocket client request for `host` with `headers`.
fn websocket_request(host: &str, headers: &[(&str, String)]) -> http::Request<()> {
    let mut request = format!("ws://{host}/chat").into_client_request().unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn websocket_echo_through_both_gates() {
    let upstream = start_websocket_echo().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("ws", upstream).private())
        .start()
        .await;
    let token = [("proxy-authorization", format!("Bearer {TOKEN}"))];

    let cases = [
        (
            "public",
            LOCALHOST,
            gateway.public,
            public_host("ws"),
            &token[..],
        ),
        (
            "private",
            VPC_PEER,
            gateway.private_gate(),
            private_host("ws"),
            &[][..],
        ),
    ];
    for (gate, source, addr, host, headers) in cases {
        let stream = connect_from(source, addr).await;
        let (mut socket, response) = within(
            RESPONSE_TIMEOUT,
            "the WebSocket handshake",
            tokio_tungstenite::client_async(websocket_request(&host, headers), stream),
        )
        .await
        .unwrap_or_else(|e| panic!("{gate} gate: WebSocket handshake failed: {e}"));
        assert_eq!(response.status(), 101, "{gate} gate");

        for message in [
            Message::text("hello through postern"),
            Message::binary(vec![0u8, 1, 2, 255]),
        ] {
            socket.send(message.clone()).await.unwrap();
            let echoed = within(RESPONSE_TIMEOUT, "the echoed message", socket.next())
                .await
                .expect("a message")
                .unwrap();
            assert_eq!(echoed, message, "{gate} gate");
        }
        socket.close(None).await.unwrap();
    }
}

#[tokio::test]
async fn websocket_without_token_401() {
    let upstream = start_websocket_echo().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("ws", upstream))
        .start()
        .await;

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let outcome = within(
        RESPONSE_TIMEOUT,
        "the WebSocket handshake",
        tokio_tungstenite::client_async(websocket_request(&public_host("ws"), &[]), stream),
    )
    .await;

    match outcome {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        Err(other) => panic!("expected a 401 response, got the error {other}"),
        Ok(_) => panic!("the upgrade succeeded without a credential"),
    }
}

#[tokio::test]
async fn refused_upgrade_passes_upstream_response() {
    // The echo server returns 200 for every request, upgrade requests included.
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("ws", echo.addr))
        .start()
        .await;

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let request = request("GET", &public_host("ws"), "/chat")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(empty_body())
        .unwrap();
    let response = send_http1(stream, request).await.unwrap();

    assert_eq!(response.status, 200);
    let seen = response.echo();
    assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
    assert_eq!(
        seen.header("sec-websocket-key").as_deref(),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn http10_upgrade_forwarded_as_plain_request() {
    let echo = EchoServer::start().await;
    let websocket = start_websocket_echo().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .app(AppSpec::new("ws", websocket))
        .start()
        .await;
    // An HTTP/1.0 server must ignore Upgrade (RFC 9110 section 7.8).
    let upgrade = |app: &str| {
        format!(
            "GET /chat HTTP/1.0\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            public_host(app)
        )
    };

    // The app receives a plain request, without the hop-by-hop Upgrade.
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let response = RawResponse::parse(&raw_exchange(&mut stream, upgrade("echo").as_bytes()).await);
    assert_eq!(response.status, 200);
    let seen = response.echo();
    assert_eq!(seen.header("upgrade"), None);
    assert_eq!(seen.header("connection"), None);
    assert_eq!(
        seen.header("sec-websocket-key").as_deref(),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    // A WebSocket app, asked without Upgrade, refuses to switch protocols.
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let response = RawResponse::parse(&raw_exchange(&mut stream, upgrade("ws").as_bytes()).await);
    assert_ne!(response.status, 101);
    assert_eq!(response.header("upgrade"), None);
}

/// Sends `count` GET requests one after another on one client connection
/// and returns their statuses.
async fn sequential_gets(gateway: &Gateway, count: usize) -> Vec<u16> {
    sequential_requests(gateway, "GET", count).await
}

/// Sends `count` requests with `method` one after another on one client
/// connection (a POST carries a small body) and returns their statuses.
async fn sequential_requests(gateway: &Gateway, method: &str, count: usize) -> Vec<u16> {
    let stream = tokio::net::TcpStream::connect(gateway.public)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut statuses = Vec::new();
    for _ in 0..count {
        let body = if method == "POST" {
            full_body("x")
        } else {
            empty_body()
        };
        let request = request(method, &public_host("app"), "/")
            .header("proxy-authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        statuses.push(response.status().as_u16());
        response.into_body().collect().await.unwrap();
    }
    statuses
}

#[tokio::test]
async fn upstream_connection_reused() {
    let (gateway, connections) = gateway_with_counting_app(false).await;

    let statuses = sequential_gets(&gateway, 5).await;

    assert_eq!(statuses, [200; 5]);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_upload_does_not_hold_pooled_connection() {
    use tokio::io::AsyncWriteExt;
    let (gateway, connections) = gateway_with_counting_app(false).await;
    // The app responds to this POST before its body arrives; the rest of
    // the body keeps the upstream connection busy.
    let mut uploader = tokio::net::TcpStream::connect(gateway.public)
        .await
        .unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\ncontent-length: 100\r\n\r\n0123456789",
        public_host("app")
    );
    uploader.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let statuses = tokio::time::timeout(Duration::from_secs(3), sequential_gets(&gateway, 1))
        .await
        .expect("a GET waited behind another client's upload");

    assert_eq!(statuses, [200]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    drop(uploader);
}

#[tokio::test]
async fn upstream_closing_idle_connection_retried() {
    let (gateway, connections) = gateway_with_counting_app(true).await;

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.extend(sequential_gets(&gateway, 1).await);
        // Let the close reach the gateway for some requests, not others.
        statuses.extend(sequential_gets(&gateway, 2).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(statuses, [200; 15]);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 15);
}

/// Writes `parts` to a new connection to the public gate, pausing between
/// them, and returns everything the gateway sent until it went quiet.
async fn send_in_parts(gateway: &Gateway, parts: &[&str], pause: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gateway.public)
        .await
        .unwrap();
    for part in parts {
        stream.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(pause).await;
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n @ 1..)) =
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await
    {
        received.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Returns a raw HTTP/1.1 GET head for the app, with the machine token.
fn raw_get_head() -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\n\r\n",
        public_host("app")
    )
}

/// Starts a gateway whose one app is a [`start_counting`] upstream.
#[tokio::test]
async fn get_lost_on_reused_connection_sent_again() {
    let (upstream, connections) = start_losing_second_request().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", upstream))
        .start()
        .await;

    // The second GET meets a pooled connection that the app closes on it;
    // the gateway sends it again on a new connection.
    let statuses = sequential_gets(&gateway, 2).await;

    assert_eq!(statuses, [200, 200]);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn post_lost_on_reused_connection_not_sent_again() {
    let (upstream, connections) = start_losing_second_request().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", upstream))
        .start()
        .await;

    // A POST may have had an effect, so the gateway reports the failure.
    let statuses = sequential_requests(&gateway, "POST", 2).await;

    assert_eq!(statuses, [200, 502]);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

async fn gateway_with_counting_app(
    close_after_one: bool,
) -> (Gateway, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (upstream, connections) = start_counting(close_after_one).await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", upstream))
        .start()
        .await;
    (gateway, connections)
}

#[tokio::test]
async fn keep_alive_survives_idle_gaps() {
    let (gateway, _) = gateway_with_counting_app(false).await;
    let head = raw_get_head();
    // Idle gaps longer than the parking delay: between requests, and in
    // the middle of a request head.
    let (first, rest) = head.split_at(20);
    let received = send_in_parts(
        &gateway,
        &[&head, first, rest, &head],
        Duration::from_millis(300),
    )
    .await;

    assert_eq!(received.matches("HTTP/1.1 200 OK").count(), 3, "{received}");
    assert!(
        !received.to_ascii_lowercase().contains("connection: close"),
        "{received}"
    );
}

#[tokio::test]
async fn pipelined_requests_all_answered() {
    let (gateway, _) = gateway_with_counting_app(false).await;
    let head = raw_get_head();
    let burst = head.repeat(3);

    let received = send_in_parts(&gateway, &[&burst], Duration::from_millis(300)).await;

    assert_eq!(received.matches("HTTP/1.1 200 OK").count(), 3, "{received}");
}

/// Asserts a JSON error response from the gateway, its access log line, its
/// diagnostic line and its metric.
async fn assert_upstream_error(
    gateway: &Gateway,
    response: &HttpResponse,
    status: u16,
    reason: &str,
) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.json()["error"], reason);
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["decision"], "error");
    assert_eq!(line["reason"], reason);
    assert_eq!(line["status"], status);
    let request_id = response.request_id();
    gateway
        .wait_for_diagnostic(&format!("the upstream failure of {request_id}"), |l| {
            l["request_id"] == request_id.as_str() && l["level"] == "WARN"
        })
        .await;
    let labels = [("app", "app"), ("kind", reason)];
    gateway
        .wait_for_metric("postern_upstream_errors_total", &labels, 1.0)
        .await;
}

#[tokio::test]
async fn upstream_refused_502() {
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", refused_addr().await))
        .start()
        .await;

    let response = get_with_token(gateway.public, &public_host("app"), "/").await;

    assert_upstream_error(&gateway, &response, 502, "upstream_connect_failed").await;
}

#[tokio::test]
async fn upstream_reset_502() {
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", start_resetting().await))
        .start()
        .await;

    let response = get_with_token(gateway.public, &public_host("app"), "/").await;

    assert_upstream_error(&gateway, &response, 502, "upstream_reset").await;
}

#[tokio::test]
async fn slow_upstream_504() {
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", start_silent().await).timeout("response_headers", "500ms"))
        .start()
        .await;

    let started = Instant::now();
    let response = get_with_token(gateway.public, &public_host("app"), "/").await;
    let elapsed = started.elapsed();

    assert_upstream_error(&gateway, &response, 504, "upstream_response_timeout").await;
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(3),
        "the 504 came after {elapsed:?}; response_headers is 500ms"
    );
}

#[tokio::test]
async fn stalled_body_cut_by_idle_timeout() {
    let sse = start_sse().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", sse).timeout("body_idle", "500ms"))
        .start()
        .await;

    let response = open_get(
        gateway.public,
        &public_host("app"),
        "/events?count=2&pause_ms=100&stall_ms=20000",
    )
    .await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.into_body();
    let (events, error) = read_events(&mut body, Duration::from_secs(5)).await;

    assert_eq!(events.len(), 2, "events before the stall: {events:?}");
    assert!(error.is_some(), "the stalled stream ended as if complete");
    let cut_after = events[1].1.elapsed();
    assert!(
        cut_after < Duration::from_secs(3),
        "the stream was cut {cut_after:?} after the last event; body_idle is 500ms"
    );
    let line = gateway.access_log_for(&request_id).await;
    assert_eq!(line["reason"], "upstream_body_idle_timeout");
    assert_eq!(line["decision"], "error");
}

#[tokio::test]
async fn long_stream_within_idle_timeout_completes() {
    let sse = start_sse().await;
    let gateway = GatewaySpec::new()
        .app(
            AppSpec::new("app", sse)
                .timeout("body_idle", "500ms")
                .timeout("response_headers", "500ms"),
        )
        .start()
        .await;

    // Eight events 300 ms apart take longer than both timeouts in total,
    // but no single silence does.
    let response = open_get(
        gateway.public,
        &public_host("app"),
        "/events?count=8&pause_ms=300",
    )
    .await;
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = response.into_body();
    let (events, error) = read_events(&mut body, Duration::from_secs(6)).await;

    assert_eq!(error, None);
    assert_eq!(events.len(), 8);
    let line = gateway.access_log_for(&request_id).await;
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["status"], 200);
}
