//! The `limits` block and the per-app timeouts that the other files do not
//! cover: connection cap, header size, slow and idle clients, the upstream
//! connect timeout and the total cap.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the gateway may take past a configured limit to act on it.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn max_connections_refuses_extra() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("max_connections", "2")
        .start()
        .await;

    // Two open connections take both slots.
    let first = connect_from(LOCALHOST, gateway.public).await;
    let second = connect_from(LOCALHOST, gateway.public).await;
    let open = [("gate", "public")];
    gateway
        .wait_for_metric("postern_open_connections", &open, 2.0)
        .await;

    let mut third = connect_from(LOCALHOST, gateway.public).await;
    let request = raw_get(
        &public_host("echo"),
        "/",
        &format!("Proxy-Authorization: Bearer {TOKEN}\r\n"),
    );
    write_ignoring_errors(&mut third, &request).await;
    assert_closed_without_response(&mut third, SLACK, "a third connection").await;
    let limit = [("gate", "public"), ("reason", "connection_limit")];
    gateway
        .wait_for_metric("postern_refusals_total", &limit, 1.0)
        .await;

    // A closed connection frees its slot.
    drop(first);
    drop(second);
    let started = Instant::now();
    loop {
        let mut stream = connect_from(LOCALHOST, gateway.public).await;
        write_ignoring_errors(&mut stream, &request).await;
        if let ReadOutcome::Data(bytes) = read_outcome(&mut stream, SLACK).await {
            assert_eq!(RawResponse::parse(&bytes).status, 200);
            break;
        }
        assert!(
            started.elapsed() < SLACK,
            "no slot was freed after two connections closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The kernel hashes each new connection to one worker's socket. The
/// workers hand connections to each other so that each has nearly the same
/// number, and a handed-over connection is served like any other.
#[tokio::test]
async fn connections_spread_evenly_over_workers() {
    const WORKERS: usize = 4;
    const CONNECTIONS: usize = 64;
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .workers(WORKERS)
        .start()
        .await;
    // A keep-alive request, so that every connection stays open.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\n\r\n",
        public_host("echo")
    );
    let mut open = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = connect_from(LOCALHOST, gateway.public).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let ReadOutcome::Data(bytes) = read_outcome(&mut stream, SLACK).await else {
            panic!("a connection got no response");
        };
        assert_eq!(RawResponse::parse(&bytes).status, 200);
        open.push(stream);
    }

    let text = gateway.metrics().await;
    let counts: Vec<f64> = (0..WORKERS)
        .map(|worker| {
            let labels = [("gate", "public"), ("worker", &*worker.to_string())];
            metric_sum(&text, "postern_worker_connections", &labels)
        })
        .collect();
    assert_eq!(counts.iter().sum::<f64>(), CONNECTIONS as f64, "{counts:?}");
    let (fewest, most) = counts
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), &n| (lo.min(n), hi.max(n)));
    assert!(
        most - fewest <= 2.0,
        "open connections per worker: {counts:?}"
    );
}

#[tokio::test]
async fn oversized_head_431() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("max_header_bytes", "8192")
        .start()
        .await;
    let token = format!("Proxy-Authorization: Bearer {TOKEN}\r\n");

    let small = format!("X-Padding: {}\r\n{token}", "a".repeat(1000));
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let response = RawResponse::parse(
        &raw_exchange(&mut stream, &raw_get(&public_host("echo"), "/", &small)).await,
    );
    assert_eq!(response.status, 200, "a 1 KB header with an 8 KiB limit");

    let huge = format!("X-Padding: {}\r\n{token}", "a".repeat(20_000));
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let response = RawResponse::parse(
        &raw_exchange(&mut stream, &raw_get(&public_host("echo"), "/", &huge)).await,
    );
    assert_eq!(response.status, 431, "a 20 KB header with an 8 KiB limit");

    // Just over the limit.
    let large = format!("X-Padding: {}\r\n{token}", "a".repeat(8300));
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let response = RawResponse::parse(
        &raw_exchange(&mut stream, &raw_get(&public_host("echo"), "/", &large)).await,
    );
    assert_eq!(response.status, 431, "an 8.3 KB header with an 8 KiB limit");

    assert_eq!(echo.hits(), 1);
    let too_large = [("gate", "public"), ("kind", "request_head_too_large")];
    gateway
        .wait_for_metric("postern_client_errors_total", &too_large, 2.0)
        .await;
    gateway
        .wait_for_diagnostic("the rejection line", |l| {
            l["message"] == "Request rejected before routing"
        })
        .await;
}

#[tokio::test]
async fn slow_client_head_closed() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("header_read_timeout", "500ms")
        .start()
        .await;

    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: echo.example.test\r\nX-Slow: ")
        .await
        .unwrap();

    // hyper may send 408 before it closes. Either way, no request is served.
    match read_outcome(&mut stream, Duration::from_millis(500) + SLACK).await {
        ReadOutcome::Closed | ReadOutcome::Reset => {}
        ReadOutcome::Data(bytes) => {
            let response = RawResponse::parse(&bytes);
            assert_eq!(
                response.status,
                408,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        ReadOutcome::Silent => panic!("a client that stopped mid-head was kept waiting"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450),
        "closed after only {elapsed:?}"
    );
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn idle_keep_alive_closed() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("client_idle_timeout", "500ms")
        .start()
        .await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\n\r\n",
        public_host("echo")
    );

    // HTTP/1.1: one request, then silence.
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    assert!(matches!(
        read_outcome(&mut stream, RESPONSE_TIMEOUT).await,
        ReadOutcome::Data(_)
    ));
    let started = Instant::now();
    assert_closed_without_response(
        &mut stream,
        Duration::from_millis(500) + SLACK,
        "an idle HTTP/1.1 connection",
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed after only {:?}",
        started.elapsed()
    );

    // HTTP/2: one request, then the connection must end.
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(format!("http://{}/", public_host("echo")))
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(empty_body())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    within(
        Duration::from_millis(500) + SLACK,
        "the idle HTTP/2 connection to end",
        connection,
    )
    .await
    .unwrap()
    .ok();
}

#[tokio::test]
async fn idle_h2_without_ping_ack_closed() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("client_idle_timeout", "500ms")
        .start()
        .await;

    // HTTP/2 with prior knowledge, no stream, and no acknowledgement of the
    // PING that comes with the GOAWAY. postern waits 1 s for that
    // acknowledgement before it closes anyway.
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let started = Instant::now();
    stream.write_all(H2_PREFACE).await.unwrap();
    let limit = Duration::from_millis(500) + Duration::from_secs(1) + SLACK;
    let (frames, closed) = read_h2_frames_unanswered(&mut stream, limit).await;
    let frames = h2_frame_kinds(&frames);
    let elapsed = started.elapsed();

    assert!(closed, "still open after {limit:?}; frames {frames:?}");
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed after only {elapsed:?}"
    );
    assert!(frames.contains(&H2_GOAWAY), "no GOAWAY in {frames:?}");
    assert!(frames.contains(&H2_PING), "no PING in {frames:?}");
}

#[tokio::test]
async fn long_response_outlives_idle_timeout() {
    let sse = start_sse().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("stream", sse))
        .limit("client_idle_timeout", "300ms")
        .start()
        .await;

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let request = request(
        "GET",
        &public_host("stream"),
        "/events?count=5&pause_ms=300",
    )
    .header("proxy-authorization", format!("Bearer {TOKEN}"))
    .body(empty_body())
    .unwrap();
    let response = send_http1(stream, request).await.expect("the whole stream");

    assert_eq!(response.status, 200);
    assert_eq!(
        response.text().matches("data: event").count(),
        5,
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn upstream_connect_timeout_504() {
    // A listener that never accepts, with its accept queue full. Linux then
    // drops further SYNs, so a connect hangs until it times out.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let upstream = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), socket.connect(upstream)).await
        {
            fillers.push(stream);
        }
    }
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("app", upstream).timeout("connect", "500ms"))
        .start()
        .await;

    let started = Instant::now();
    let response = get_with_token(gateway.public, &public_host("app"), "/").await;
    let elapsed = started.elapsed();

    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(response.json()["error"], "upstream_connect_timeout");
    assert!(
        elapsed < Duration::from_millis(500) + SLACK,
        "the 504 took {elapsed:?}"
    );
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["reason"], "upstream_connect_timeout");
    drop(listener);
}

#[tokio::test]
async fn total_timeout_cuts_stream() {
    let sse = start_sse().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("stream", sse).timeout("total", "800ms"))
        .start()
        .await;

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = request(
        "GET",
        &public_host("stream"),
        "/events?count=20&pause_ms=100",
    )
    .header("proxy-authorization", format!("Bearer {TOKEN}"))
    .body(empty_body())
    .unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = within(
        SLACK + Duration::from_secs(2),
        "the cut stream to end",
        response.into_body().collect(),
    )
    .await;
    let elapsed = started.elapsed();

    assert!(body.is_err(), "the stream ended as if complete");
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_millis(800) + SLACK,
        "the stream was cut after {elapsed:?}; total is 800ms"
    );
    let line = gateway.access_log_for(&request_id).await;
    assert_eq!(line["reason"], "total_timeout");
}

#[tokio::test]
async fn reset_stream_lets_idle_h2_connection_close() {
    let silent = start_silent().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("silent", silent))
        .limit("client_idle_timeout", "500ms")
        .start()
        .await;

    let stream = connect_from(LOCALHOST, gateway.public).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = request("GET", &public_host("silent"), "/")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(empty_body())
        .unwrap();
    // Dropping the unanswered request resets its stream. The client keeps
    // its connection: only the gateway may close it.
    let waiting =
        tokio::time::timeout(Duration::from_millis(300), sender.send_request(request)).await;
    assert!(waiting.is_err(), "the silent app answered");

    // The reset request no longer counts as in flight, so the idle timeout
    // closes the connection.
    let closed = tokio::time::timeout(Duration::from_millis(500) + SLACK, connection).await;
    assert!(
        closed.is_ok(),
        "the connection stayed open past the idle timeout"
    );
    drop(sender);
}

/// Waits until `open` app connections remain, or fails after `limit`.
async fn wait_for_open(open: &AtomicUsize, expected: usize, limit: Duration, case: &str) {
    let started = Instant::now();
    while open.load(Ordering::SeqCst) != expected {
        assert!(
            started.elapsed() < limit,
            "{case}: {} app connections open after {limit:?}, expected {expected}",
            open.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a gateway with a 1 s send timeout in front of an endless app and
/// sends it `request` on a client connection that reads nothing until the
/// access log line is written. Checks that the send timeout ends the
/// request at `path` and releases the app connection. Returns the client
/// stream, the access log line and the gateway.
async fn unread_response(request: &[u8], path: &str) -> (TcpStream, serde_json::Value, Gateway) {
    let (endless, open) = start_endless().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("endless", endless))
        .limit("send_timeout", "1s")
        .start()
        .await;
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    stream.write_all(request).await.unwrap();
    wait_for_open(&open, 1, SLACK, "the app connection").await;
    let started = Instant::now();

    let line = gateway
        .wait_for_access_log("the line of the unread response", |line| {
            line["path"] == path
        })
        .await;
    let elapsed = started.elapsed();

    assert_eq!(line["reason"], "client_send_timeout", "{line}");
    assert_eq!(line["decision"], "error", "{line}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut after only {elapsed:?}; send_timeout is 1s"
    );
    wait_for_open(&open, 0, SLACK, "the released app connection").await;
    (stream, line, gateway)
}

#[tokio::test]
async fn send_timeout_closes_unread_h1() {
    let token = format!("Proxy-Authorization: Bearer {TOKEN}\r\n");
    let request = raw_get(&public_host("endless"), "/h1-not-reading", &token);

    let (mut stream, line, gateway) = unread_response(&request, "/h1-not-reading").await;

    assert_eq!(line["protocol"], "HTTP/1.1", "{line}");
    // The client gets what was already in the socket buffers, then the end.
    within(SLACK, "the client connection to end", async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(1..) = stream.read(&mut buf).await {}
    })
    .await;
    let kind = [("gate", "public"), ("kind", "client_send_timeout")];
    gateway
        .wait_for_metric("postern_client_errors_total", &kind, 1.0)
        .await;
}

#[tokio::test]
async fn send_timeout_closes_unread_h2() {
    // HTTP/2 with windows so large that flow control never stops postern:
    // only the unread socket does.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 2^31 - 1.
    hello.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0x4, 0x7f, 0xff, 0xff, 0xff]);
    // WINDOW_UPDATE (0x8) on the connection, up to 2^31 - 1.
    hello.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&(0x7fff_ffff_u32 - 65_535).to_be_bytes());
    let authorization = format!("Bearer {TOKEN}");
    hello.extend_from_slice(&h2_get_frame(
        1,
        &public_host("endless"),
        "/h2-not-reading",
        &[("proxy-authorization", &authorization)],
    ));

    let (mut stream, line, _gateway) = unread_response(&hello, "/h2-not-reading").await;

    assert_eq!(line["protocol"], "HTTP/2", "{line}");
    let (_, closed) = read_h2_frames_unanswered(&mut stream, SLACK).await;
    assert!(closed, "the client connection stayed open");
}

#[tokio::test]
async fn send_timeout_resets_h2_stream_with_closed_window() {
    // The client opens the connection's window wide but never the stream's,
    // past its initial 65,535 bytes, which fit in the socket buffers: the
    // stream waits, not the socket.
    let mut hello = H2_PREFACE.to_vec();
    // WINDOW_UPDATE (0x8) on the connection, up to 2^31 - 1.
    hello.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&(0x7fff_ffff_u32 - 65_535).to_be_bytes());
    let authorization = format!("Bearer {TOKEN}");
    hello.extend_from_slice(&h2_get_frame(
        1,
        &public_host("endless"),
        "/h2-window-closed",
        &[("proxy-authorization", &authorization)],
    ));

    let (mut stream, line, gateway) = unread_response(&hello, "/h2-window-closed").await;

    assert_eq!(line["protocol"], "HTTP/2", "{line}");
    let kind = [("gate", "public"), ("kind", "client_send_timeout")];
    gateway
        .wait_for_metric("postern_client_errors_total", &kind, 1.0)
        .await;
    let (frames, closed) = read_h2_frames_unanswered(&mut stream, Duration::from_millis(500)).await;
    assert!(!closed, "the connection closed; only the stream should end");
    let reset = frames
        .iter()
        .any(|f| f.kind == H2_RST_STREAM && f.stream == 1);
    assert!(
        reset,
        "no RST_STREAM on stream 1 in {:?}",
        h2_frame_kinds(&frames)
    );
    let data: usize = frames
        .iter()
        .filter(|f| f.kind == H2_DATA)
        .map(|f| f.payload.len())
        .sum();
    assert_eq!(data, 65_535, "DATA bytes sent within the stream's window");
}
