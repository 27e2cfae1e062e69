//! The access log, the metrics and the admin endpoints, as a client and an
//! operator see them.

mod support;

use std::collections::BTreeSet;

use support::*;

/// Every field of an access log line.
const ACCESS_LOG_FIELDS: [&str; 21] = [
    "time",
    "gate",
    "app",
    "method",
    "host",
    "path",
    "protocol",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "client_addr",
    "peer_addr",
    "endpoint_id",
    "endpoint_owner",
    "identity",
    "auth_method",
    "request_id",
    "decision",
    "reason",
];

fn keys(line: &serde_json::Value) -> BTreeSet<String> {
    line.as_object()
        .expect("an access log line is a JSON object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn access_log_same_schema_on_both_gates() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;

    let public = get_with_token(gateway.public, &public_host("echo"), "/v1/models").await;
    let private = get_from(
        VPC_PEER,
        gateway.private_gate(),
        &private_host("echo"),
        "/v1/models",
        &[],
    )
    .await;
    let public_line = gateway.access_log_for(&public.request_id()).await;
    let private_line = gateway.access_log_for(&private.request_id()).await;

    let expected: BTreeSet<String> = ACCESS_LOG_FIELDS.iter().map(|f| f.to_string()).collect();
    assert_eq!(keys(&public_line), expected, "{public_line}");
    assert_eq!(keys(&private_line), expected, "{private_line}");

    for (gate, line, response) in [
        ("public", &public_line, &public),
        ("private", &private_line, &private),
    ] {
        assert_eq!(line["gate"], gate);
        assert_eq!(line["method"], "GET", "{gate}");
        assert_eq!(line["path"], "/v1/models", "{gate}");
        assert_eq!(line["protocol"], "HTTP/1.1", "{gate}");
        assert_eq!(line["status"], 200, "{gate}");
        assert_eq!(line["bytes_out"], response.body.len() as u64, "{gate}");
        assert_eq!(line["bytes_in"], 0, "{gate}");
        assert!(line["duration_ms"].is_number(), "{gate}: {line}");
        assert!(line["upstream_ms"].is_number(), "{gate}: {line}");
        let time = line["time"].as_str().unwrap_or_default();
        assert!(
            time.ends_with('Z') && time.contains('T'),
            "{gate}: time {time:?}"
        );
        assert_eq!(
            line["request_id"].as_str().map(str::len),
            Some(32),
            "{gate}: {line}"
        );
        assert_eq!(line["decision"], "allow", "{gate}");
    }
    assert_eq!(public_line["identity"], MACHINE);
    assert_eq!(private_line["identity"], serde_json::Value::Null);
}

#[tokio::test]
async fn query_values_never_logged() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;

    let response = get_with_token(
        gateway.public,
        &public_host("echo"),
        "/search?api_key=SECRET-VALUE-0001&q=1",
    )
    .await;

    assert_eq!(
        response.echo().path(),
        "/search?api_key=SECRET-VALUE-0001&q=1"
    );
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["path"], "/search");
    let logs = format!("{}\n{}", gateway.stdout_text(), gateway.stderr_text());
    assert!(
        !logs.contains("SECRET-VALUE-0001"),
        "a log line holds a query value"
    );
}

#[tokio::test]
async fn forwarded_headers_from_trusted_source_kept() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .public_forwarded_source("127.0.0.2/32")
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    let credential = format!("Bearer {TOKEN}");
    let headers = [
        ("proxy-authorization", credential.as_str()),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "edge-0001"),
    ];

    let trusted = get_from(
        BALANCER,
        gateway.public,
        &public_host("echo"),
        "/",
        &headers,
    )
    .await;
    let seen = trusted.echo();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.2")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("x-request-id").as_deref(), Some("edge-0001"));
    assert_eq!(trusted.header("x-request-id"), Some("edge-0001"));
    let line = gateway.access_log_for("edge-0001").await;
    assert_eq!(
        line["client_addr"]
            .as_str()
            .map(|a| a.starts_with("127.0.0.2:")),
        Some(true)
    );

    let untrusted = get_from(
        LOCALHOST,
        gateway.public,
        &public_host("echo"),
        "/",
        &headers,
    )
    .await;
    let seen = untrusted.echo();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_ne!(seen.header("x-request-id").as_deref(), Some("edge-0001"));
}

#[tokio::test]
async fn request_metrics_by_gate_app_status() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;

    get_with_token(gateway.public, &public_host("echo"), "/")
        .await
        .echo();
    let denied = get(gateway.public, &public_host("echo"), "/", &[]).await;
    assert_eq!(denied.status, 401);
    let unknown = get_with_token(gateway.public, &public_host("nosuch"), "/").await;
    assert_eq!(unknown.status, 404);
    get_from(
        VPC_PEER,
        gateway.private_gate(),
        &private_host("echo"),
        "/",
        &[],
    )
    .await
    .echo();

    let cases: [(&[(&str, &str)], f64); 4] = [
        (
            &[("gate", "public"), ("app", "echo"), ("status_class", "2xx")],
            1.0,
        ),
        (
            &[("gate", "public"), ("app", "echo"), ("status_class", "4xx")],
            1.0,
        ),
        (
            &[("gate", "public"), ("app", "-"), ("status_class", "4xx")],
            1.0,
        ),
        (
            &[
                ("gate", "private"),
                ("app", "echo"),
                ("status_class", "2xx"),
            ],
            1.0,
        ),
    ];
    for (labels, expected) in cases {
        gateway
            .wait_for_metric("postern_requests_total", labels, expected)
            .await;
        assert_eq!(
            gateway.metric("postern_requests_total", labels).await,
            expected,
            "{labels:?}"
        );
    }
    let text = gateway.metrics().await;
    let duration = [("gate", "public"), ("app", "echo"), ("le", "+Inf")];
    assert_eq!(
        metric_sum(&text, "postern_request_duration_seconds_bucket", &duration),
        2.0
    );
    let upstream = [("gate", "public"), ("app", "echo")];
    assert_eq!(
        metric_sum(
            &text,
            "postern_upstream_response_header_seconds_count",
            &upstream
        ),
        1.0
    );
    assert_eq!(metric_sum(&text, "postern_privatelink_endpoints", &[]), 3.0);
    assert!(
        text.contains("postern_open_connections{gate=\"public\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_endpoints() {
    let gateway = GatewaySpec::new().start().await;

    let healthz = admin_get(gateway.admin, "/healthz").await.unwrap();
    assert_eq!(healthz.status, 200);
    assert_eq!(healthz.json()["status"], "ok");
    let readyz = admin_get(gateway.admin, "/readyz").await.unwrap();
    assert_eq!(readyz.status, 200);
    let metrics = admin_get(gateway.admin, "/metrics").await.unwrap();
    assert!(
        metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let other = admin_get(gateway.admin, "/debug").await.unwrap();
    assert_eq!(other.status, 404);

    let stream = tokio::net::TcpStream::connect(gateway.admin).await.unwrap();
    let post = request("POST", "admin", "/metrics")
        .body(empty_body())
        .unwrap();
    let response = send_http1(stream, post).await.unwrap();
    assert_eq!(response.status, 405);
}

#[tokio::test]
async fn request_abandoned_before_response_logged_499() {
    use tokio::io::AsyncWriteExt;
    let silent = start_silent().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("silent", silent))
        .start()
        .await;

    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let head = format!(
        "POST /abandoned HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\ncontent-length: 2\r\n\r\nok",
        public_host("silent")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(stream);

    let line = gateway
        .wait_for_access_log("the abandoned request", |l| l["path"] == "/abandoned")
        .await;
    assert_eq!(line["status"], 499);
    assert_eq!(line["reason"], "client_closed");
    assert_eq!(line["decision"], "error");
    assert_eq!(line["identity"], MACHINE);
}

#[tokio::test]
async fn private_series_only_for_opted_apps() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("inside", echo.addr).private())
        .app(AppSpec::new("outside", echo.addr))
        .start()
        .await;

    let text = gateway.metrics().await;

    for (gate, app, present) in [
        ("public", "inside", true),
        ("private", "inside", true),
        ("public", "outside", true),
        ("private", "outside", false),
    ] {
        let series = format!("postern_requests_total{{gate=\"{gate}\",app=\"{app}\"");
        assert_eq!(
            text.contains(&series),
            present,
            "{series} present: expected {present}, in:\n{text}"
        );
    }
}
