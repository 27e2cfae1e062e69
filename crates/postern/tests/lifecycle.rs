//! Reloads (file changes and SIGHUP, good and bad edits, the endpoints
//! file) and the drain on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::AsyncWriteExt;

/// How long a reload may take to show, from the file write or the signal.
const RELOAD_LIMIT: Duration = Duration::from_secs(5);

/// Polls `check` every 50 ms until it returns true, for at most
/// `RELOAD_LIMIT`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < RELOAD_LIMIT,
            "{what} did not happen within {RELOAD_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_of(gateway: &Gateway, app: &str) -> u16 {
    get_with_token(gateway.public, &public_host(app), "/")
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn added_app_served_without_restart() {
    let echo = EchoServer::start().await;
    let spec = GatewaySpec::new().app(AppSpec::new("echo", echo.addr));
    let gateway = spec.start().await;
    let pid = gateway.pid();
    assert_eq!(status_of(&gateway, "extra").await, 404);
    gateway.wait_for_file_watch().await;
    let applied = [("file", "vars"), ("outcome", "applied")];
    let applied_before = gateway
        .metric("postern_config_reloads_total", &applied)
        .await;

    let spec = spec.app(AppSpec::new("extra", echo.addr));
    gateway.replace_vars(&spec.vars_yaml());

    eventually("serving the added app", || async {
        status_of(&gateway, "extra").await == 200
    })
    .await;
    assert_eq!(status_of(&gateway, "echo").await, 200);
    assert_eq!(gateway.pid(), pid);
    gateway
        .wait_for_metric(
            "postern_config_reloads_total",
            &applied,
            applied_before + 1.0,
        )
        .await;
    gateway
        .wait_for_diagnostic("the reload line", |l| {
            l["message"] == "Config reload applied"
        })
        .await;
}

#[tokio::test]
async fn bad_edit_keeps_running_config() {
    let echo = EchoServer::start().await;
    let spec = GatewaySpec::new().app(AppSpec::new("echo", echo.addr));
    let gateway = spec.start().await;
    gateway.wait_for_file_watch().await;
    let applied = [("file", "vars"), ("outcome", "applied")];
    let applied_before = gateway
        .metric("postern_config_reloads_total", &applied)
        .await;

    // A typo in a key, and an app that would be served if it were applied.
    let broken = spec
        .app(AppSpec::new("extra", echo.addr))
        .vars_yaml()
        .replace(
            "    enabled: true\n    upstream",
            "    enabeld: true\n    upstream",
        );
    gateway.replace_vars(&broken);

    let rejected = [("file", "vars"), ("outcome", "rejected")];
    gateway
        .wait_for_metric("postern_config_reloads_total", &rejected, 1.0)
        .await;
    let problem = gateway
        .wait_for_diagnostic("the config problem line", |l| {
            l["message"] == "Config problem"
        })
        .await;
    assert_eq!(problem["key"], "app_config.echo.enabeld", "{problem}");
    assert!(
        problem["line"].as_u64().unwrap_or_default() > 0,
        "{problem}"
    );
    gateway
        .wait_for_diagnostic("the rejection line", |l| {
            l["message"] == "Config reload rejected; the running config stays"
        })
        .await;
    assert_eq!(status_of(&gateway, "echo").await, 200);
    assert_eq!(status_of(&gateway, "extra").await, 404);
    assert_eq!(
        gateway
            .metric("postern_config_reloads_total", &applied)
            .await,
        applied_before
    );
}

#[tokio::test]
async fn sighup_reloads() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    // The signal handler is installed just before the file watcher starts.
    gateway.wait_for_file_watch().await;
    let applied = [("file", "vars"), ("outcome", "applied")];
    let applied_before = gateway
        .metric("postern_config_reloads_total", &applied)
        .await;

    gateway.signal("HUP");

    gateway
        .wait_for_diagnostic("a reload line with trigger Signal", |l| {
            l["message"] == "Config reload applied" && l["trigger"] == "sighup"
        })
        .await;
    gateway
        .wait_for_metric(
            "postern_config_reloads_total",
            &applied,
            applied_before + 1.0,
        )
        .await;
    assert_eq!(status_of(&gateway, "echo").await, 200);
}

/// Sends a PrivateLink PROXY header for `endpoint_id` and a GET, and returns
/// the status, or `None` if the gateway closed the connection.
async fn privatelink_status(gateway: &Gateway, endpoint_id: &str) -> Option<u16> {
    let gate = gateway.private_gate();
    let mut bytes = proxy_v2_endpoint("198.51.100.23:50123".parse().unwrap(), gate, endpoint_id);
    bytes.extend_from_slice(&raw_get(&private_host("echo"), "/", ""));
    let mut stream = connect_from(BALANCER, gate).await;
    write_ignoring_errors(&mut stream, &bytes).await;
    match read_outcome(&mut stream, RESPONSE_TIMEOUT).await {
        ReadOutcome::Data(bytes) => Some(RawResponse::parse(&bytes).status),
        ReadOutcome::Closed | ReadOutcome::Reset => None,
        ReadOutcome::Silent => panic!("no response and no close for {endpoint_id}"),
    }
}

#[tokio::test]
async fn endpoints_edit_admits_endpoint() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    assert_eq!(privatelink_status(&gateway, ENDPOINT_PENDING).await, None);
    gateway.wait_for_file_watch().await;
    let applied = [("file", "endpoints"), ("outcome", "applied")];
    let applied_before = gateway
        .metric("postern_config_reloads_total", &applied)
        .await;
    let vars_applied = [("file", "vars"), ("outcome", "applied")];
    let vars_before = gateway
        .metric("postern_config_reloads_total", &vars_applied)
        .await;

    let accepted = DEFAULT_ENDPOINTS.replace("state: pendingAcceptance", "state: available");
    gateway.replace_endpoints(&accepted);

    eventually("admitting the accepted endpoint", || async {
        privatelink_status(&gateway, ENDPOINT_PENDING).await == Some(200)
    })
    .await;
    gateway
        .wait_for_metric(
            "postern_config_reloads_total",
            &applied,
            applied_before + 1.0,
        )
        .await;

    // Only the endpoints file changed, so the vars file was not reloaded.
    assert_eq!(
        gateway
            .metric("postern_config_reloads_total", &vars_applied)
            .await,
        vars_before
    );

    // A broken endpoints file is rejected and the last good list stays.
    gateway.replace_endpoints("endpoints:\n  - id: not-an-endpoint\n");
    let rejected = [("file", "endpoints"), ("outcome", "rejected")];
    gateway
        .wait_for_metric("postern_config_reloads_total", &rejected, 1.0)
        .await;
    assert_eq!(
        privatelink_status(&gateway, ENDPOINT_PENDING).await,
        Some(200)
    );
    assert_eq!(
        privatelink_status(&gateway, ENDPOINT_OTHER_OWNER).await,
        None
    );
}

#[tokio::test]
async fn revoked_request_logs_host() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    gateway.wait_for_file_watch().await;

    // One keep-alive connection through the allowed endpoint.
    let keep_alive_get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            private_host("echo")
        )
    };
    let gate = gateway.private_gate();
    let client = "198.51.100.23:50123".parse().unwrap();
    let mut stream = connect_from(BALANCER, gate).await;
    let mut first = proxy_v2_endpoint(client, gate, ENDPOINT_ALLOWED);
    first.extend_from_slice(keep_alive_get("/before").as_bytes());
    stream.write_all(&first).await.unwrap();
    assert_eq!(read_one_response(&mut stream).await.status, 200);

    // The endpoint is no longer available, so the next request on the same
    // connection is refused.
    let applied = [("file", "endpoints"), ("outcome", "applied")];
    let applied_before = gateway
        .metric("postern_config_reloads_total", &applied)
        .await;
    let revoked = DEFAULT_ENDPOINTS.replacen("state: available", "state: rejected", 1);
    gateway.replace_endpoints(&revoked);
    gateway
        .wait_for_metric(
            "postern_config_reloads_total",
            &applied,
            applied_before + 1.0,
        )
        .await;
    stream
        .write_all(keep_alive_get("/after").as_bytes())
        .await
        .unwrap();
    let response = read_one_response(&mut stream).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error"], "admission_revoked");
    assert_eq!(
        response.json()["message"],
        "a config change revoked this connection's admission: its VPC endpoint, account or \
         source network is no longer allowed, so reconnecting does not help; check the \
         endpoints file, allowed_principals and vpc_cidrs"
    );

    let line = gateway
        .wait_for_access_log("the revoked request", |l| l["path"] == "/after")
        .await;
    assert_eq!(line["reason"], "endpoint_not_available", "{line}");
    assert_eq!(line["host"], private_host("echo"), "{line}");
    assert_eq!(echo.hits(), 1);
}

/// Starts a gateway with a server-sent-events app and a grace period of
/// 10 s, opens a stream of 6 events 300 ms apart, and sends SIGTERM once
/// the response headers have arrived. The task returns the whole body.
async fn terminate_during_stream() -> (
    Gateway,
    tokio::task::JoinHandle<Result<String, hyper::Error>>,
) {
    let sse = start_sse().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("stream", sse))
        .limit("shutdown_grace_period", "10s")
        .limit("shutdown_delay", "0s")
        .start()
        .await;

    let reader = open_stream(&gateway, "/events?count=6&pause_ms=300").await;

    gateway.signal("TERM");
    (gateway, reader)
}

/// Sends an HTTP/1.1 GET of `path` to the `stream` app and waits for the
/// 200 response headers. The task returns the whole body.
async fn open_stream(
    gateway: &Gateway,
    path: &str,
) -> tokio::task::JoinHandle<Result<String, hyper::Error>> {
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = request("GET", &public_host("stream"), path)
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(empty_body())
        .unwrap();
    let response = within(
        RESPONSE_TIMEOUT,
        "the stream's headers",
        sender.send_request(request),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    tokio::spawn(async move {
        let collected = response.into_body().collect().await;
        collected.map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
    })
}

#[tokio::test]
async fn sigterm_drains_in_flight_stream() {
    let (mut gateway, reader) = terminate_during_stream().await;

    // New connections are refused once the listener has closed.
    let public = gateway.public;
    eventually("the public gate refusing connections", || async {
        match try_connect_from(LOCALHOST, public).await {
            Err(_) => true,
            Ok(mut stream) => {
                // The connection was accepted before the listener closed, or
                // queued in its backlog. Either way, it must not be served.
                let request = raw_get(&public_host("stream"), "/", "");
                write_ignoring_errors(&mut stream, &request).await;
                let outcome = read_outcome(&mut stream, Duration::from_millis(500)).await;
                !matches!(outcome, ReadOutcome::Data(_))
            }
        }
    })
    .await;

    // The stream in flight still completes.
    let body = within(Duration::from_secs(8), "the in-flight stream", reader)
        .await
        .unwrap()
        .expect("the in-flight stream ended cleanly");
    assert_eq!(body.matches("data: event").count(), 6, "{body:?}");
    let status = gateway.wait_exit(Duration::from_secs(8)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; stderr:\n{}",
        gateway.stderr_text()
    );
    assert!(gateway.stderr_text().contains("All connections drained"));
}

#[tokio::test]
async fn readyz_503_during_drain() {
    let (gateway, reader) = terminate_during_stream().await;

    // Once the public gate refuses connections, the drain has begun. The
    // stream keeps it going for about 1.5 s more, and in that time /readyz
    // must return 503 so that balancers stop sending new clients.
    let public = gateway.public;
    eventually("the public gate refusing connections", || async {
        try_connect_from(LOCALHOST, public).await.is_err()
    })
    .await;
    let readyz = admin_get(gateway.admin, "/readyz").await;

    assert!(
        !reader.is_finished(),
        "the stream ended before /readyz was asked"
    );
    match readyz {
        Ok(response) => assert_eq!(response.status, 503, "{}", response.text()),
        Err(error) => panic!("/readyz did not respond during the drain: {error}"),
    }
}

#[tokio::test]
async fn idle_connection_closed_on_drain() {
    let echo = EchoServer::start().await;
    let mut gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("shutdown_grace_period", "10s")
        .limit("shutdown_delay", "0s")
        .start()
        .await;

    // A keep-alive connection with no request in flight must not hold up
    // the exit for the whole grace period.
    let mut idle = connect_from(LOCALHOST, gateway.public).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\n\r\n",
        public_host("echo")
    );
    idle.write_all(request.as_bytes()).await.unwrap();
    assert!(matches!(
        read_outcome(&mut idle, RESPONSE_TIMEOUT).await,
        ReadOutcome::Data(_)
    ));

    let started = Instant::now();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(5)).await;

    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "exiting took {:?} with one idle connection",
        started.elapsed()
    );
}

#[tokio::test]
async fn drain_closes_stalled_clients_promptly() {
    let sse = start_sse().await;
    let echo = EchoServer::start().await;
    let mut gateway = GatewaySpec::new()
        .app(AppSpec::new("stream", sse))
        .app(AppSpec::new("echo", echo.addr))
        .limit("shutdown_grace_period", "20s")
        .limit("shutdown_delay", "0s")
        .start()
        .await;
    let events = "/events?count=6&pause_ms=300";
    let auth = format!("Bearer {TOKEN}");

    // Clients with nothing in flight: half a request head, half the HTTP/2
    // preface, and an HTTP/2 connection with no stream that never
    // acknowledges a PING.
    let mut half_head = connect_from(LOCALHOST, gateway.public).await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
        public_host("echo")
    );
    half_head.write_all(head.as_bytes()).await.unwrap();
    let mut half_preface = connect_from(LOCALHOST, gateway.public).await;
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut h2_idle = connect_from(LOCALHOST, gateway.public).await;
    h2_idle.write_all(H2_PREFACE).await.unwrap();

    // Requests in flight: an HTTP/2 stream from a client that never
    // acknowledges a PING, and an HTTP/1.1 stream.
    let mut h2_busy = connect_from(LOCALHOST, gateway.public).await;
    let mut bytes = H2_PREFACE.to_vec();
    let extra = [("proxy-authorization", auth.as_str())];
    bytes.extend(h2_get_frame(1, &public_host("stream"), events, &extra));
    h2_busy.write_all(&bytes).await.unwrap();
    let h2_reader = tokio::spawn(async move {
        read_h2_frames_unanswered(&mut h2_busy, Duration::from_secs(15)).await
    });
    let h1_reader = open_stream(&gateway, events).await;

    let started = Instant::now();
    gateway.signal("TERM");

    // The stalled clients are closed at once, the idle HTTP/2 one after its
    // GOAWAY and the 1 s wait for a PING acknowledgement.
    for (case, stream) in [
        ("half a request head", &mut half_head),
        ("half the HTTP/2 preface", &mut half_preface),
    ] {
        assert_closed_without_response(stream, Duration::from_secs(1), case).await;
    }
    let (frames, closed) = read_h2_frames_unanswered(&mut h2_idle, Duration::from_secs(3)).await;
    let kinds = h2_frame_kinds(&frames);
    assert!(
        closed,
        "the idle HTTP/2 connection stayed open; frames {kinds:?}"
    );
    assert!(kinds.contains(&H2_GOAWAY), "no GOAWAY in {kinds:?}");

    // The streams in flight still complete.
    let body = within(Duration::from_secs(8), "the HTTP/1.1 stream", h1_reader)
        .await
        .unwrap()
        .expect("the HTTP/1.1 stream ended cleanly");
    assert_eq!(body.matches("data: event").count(), 6, "{body:?}");
    let (frames, closed) = h2_reader.await.unwrap();
    let kinds = h2_frame_kinds(&frames);
    assert!(
        closed,
        "the busy HTTP/2 connection stayed open; frames {kinds:?}"
    );
    let data: Vec<u8> = frames
        .iter()
        .filter(|frame| frame.kind == H2_DATA && frame.stream == 1)
        .flat_map(|frame| frame.payload.clone())
        .collect();
    let data = String::from_utf8_lossy(&data);
    assert_eq!(data.matches("data: event").count(), 6, "{data:?}");
    let ended = frames
        .iter()
        .any(|frame| frame.kind == H2_DATA && frame.stream == 1 && frame.flags & 0x1 != 0);
    assert!(
        ended,
        "the HTTP/2 stream did not end cleanly; frames {kinds:?}"
    );

    // Well within the 20 s grace period: the streams take about 1.5 s.
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gateway.stderr_text());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "exiting took {took:?}");
    assert!(gateway.stderr_text().contains("All connections drained"));
}

#[tokio::test]
async fn disabled_private_gate_opens_no_listener() {
    // Keep a port listening and name it as the private gate's address. If
    // postern tried to open the private gate, it could not start.
    let occupied = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
    let occupied_addr = occupied.local_addr().unwrap();
    let spec = GatewaySpec::new()
        .without_private_gate()
        .private_listen(occupied_addr);

    let gateway = spec.start().await;

    assert_eq!(gateway.private, None);
    drop(occupied);
}

#[tokio::test]
async fn shutdown_delay_keeps_serving_while_not_ready() {
    let echo = EchoServer::start().await;
    let mut gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("shutdown_delay", "1500ms")
        .start()
        .await;

    // A connection that has sent nothing yet must not hold up the exit.
    let _silent = connect_from(LOCALHOST, gateway.public).await;

    let started = Instant::now();
    gateway.signal("TERM");
    eventually("/readyz returning 503", || async {
        admin_get(gateway.admin, "/readyz")
            .await
            .is_ok_and(|r| r.status == 503)
    })
    .await;

    // Within the delay, new connections are still served.
    let response = get_with_token(gateway.public, &public_host("echo"), "/late").await;
    assert_eq!(response.status, 200);
    assert!(started.elapsed() < Duration::from_millis(1500));

    let status = gateway.wait_exit(Duration::from_secs(8)).await;
    assert_eq!(status.code(), Some(0));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "exited after {took:?}");
    assert!(took < Duration::from_secs(5), "exited after {took:?}");

    // The durations are logged as the config writes them.
    let line = gateway
        .wait_for_diagnostic("the shutdown line", |l| {
            l["message"] == "Shutting down; /readyz now reports 503"
        })
        .await;
    assert_eq!(line["delay"], "1s 500ms", "{line}");
    assert_eq!(line["grace_period"], "30s", "{line}");
}

#[tokio::test]
async fn drain_keeps_flow_blocked_h2_response() {
    let echo = EchoServer::start().await;
    let mut gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("shutdown_grace_period", "20s")
        .limit("shutdown_delay", "0s")
        .start()
        .await;

    // A 100-byte window: the app's 8 KB response, handed to h2 in one chunk,
    // waits in h2's buffer until the client reads.
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(100)
            .handshake(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = request("GET", &public_host("echo"), "/held")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .header("x-padding", "p".repeat(8000))
        .body(empty_body())
        .unwrap();
    let response = within(
        RESPONSE_TIMEOUT,
        "the response head",
        sender.send_request(request),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    // The client reads nothing for longer than postern waits for a PING
    // acknowledgement after its GOAWAY, then reads the rest.
    gateway.signal("TERM");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let body = within(RESPONSE_TIMEOUT, "the body", response.into_body().collect())
        .await
        .expect("the response was cut short")
        .to_bytes();

    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("the whole JSON body");
    assert_eq!(echoed["path"], "/held");
    let status = gateway.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}
