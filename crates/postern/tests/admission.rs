//! Private-gate admission, one connection at a time, against the real
//! binary: every row of the admission rules, the PROXY header sent in one
//! write and byte by byte, and the refusal log lines and metrics.
//!
//! 127.0.1.0/24 is the VPC, 127.0.0.2 is the trusted balancer, and other
//! loopback addresses are outside. A refused connection must end with EOF
//! or a reset and no HTTP response.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::*;
use tokio::io::AsyncWriteExt;

/// How long a refused connection may stay open before the test fails.
const CLOSE_LIMIT: Duration = Duration::from_secs(3);
/// `proxy_protocol.header_timeout` in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);

/// Starts a gateway with one app, `echo`, open on both gates.
async fn gateway_with_echo() -> (Gateway, EchoServer) {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .proxy_header_timeout("500ms")
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    (gateway, echo)
}

/// Parses a client address for a PROXY header to declare. Nothing connects
/// to it.
fn declared(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Connects from `source`, writes `prefix` (a PROXY header, possibly
/// empty), then sends a GET for the echo app with hyper.
async fn get_after_prefix(
    source: IpAddr,
    gate: SocketAddr,
    prefix: &[u8],
    path: &str,
) -> (HttpResponse, SocketAddr) {
    let mut stream = connect_from(source, gate).await;
    let local = stream.local_addr().unwrap();
    stream.write_all(prefix).await.unwrap();
    let request = request("GET", &private_host("echo"), path)
        .body(empty_body())
        .unwrap();
    let response = send_http1(stream, request).await.unwrap_or_else(|e| {
        panic!(
            "GET {path} from {source} after a {}-byte prefix: {e}",
            prefix.len()
        )
    });
    (response, local)
}

/// Connects from `source`, writes `bytes` and a GET, and asserts that the
/// gateway closes the connection without a response, logs one refusal line
/// with `reason` and this peer, and returns that line.
async fn assert_refused(
    gateway: &Gateway,
    gate: SocketAddr,
    source: IpAddr,
    bytes: &[u8],
    reason: &str,
    case: &str,
) -> serde_json::Value {
    let mut stream = connect_from(source, gate).await;
    let peer = stream.local_addr().unwrap().to_string();
    write_ignoring_errors(&mut stream, bytes).await;
    write_ignoring_errors(&mut stream, &raw_get(&private_host("echo"), "/", "")).await;
    assert_closed_without_response(&mut stream, CLOSE_LIMIT, case).await;

    let line = gateway
        .wait_for_diagnostic(&format!("the refusal line of {case}"), |line| {
            line["message"] == "Connection refused" && line["peer"] == peer.as_str()
        })
        .await;
    assert_eq!(line["reason"], reason, "{case}: refusal reason in {line}");
    let lines = gateway
        .diagnostics()
        .into_iter()
        .filter(|l| l["message"] == "Connection refused" && l["peer"] == peer.as_str())
        .count();
    assert_eq!(lines, 1, "{case}: refusal lines for {peer}");
    line
}

/// Asserts that `postern_refusals_total` counts `expected` refusals with
/// `reason` on `gate`.
async fn assert_refusals(gateway: &Gateway, gate: &str, reason: &str, expected: f64) {
    let labels = [("gate", gate), ("reason", reason)];
    gateway
        .wait_for_metric("postern_refusals_total", &labels, expected)
        .await;
    let value = gateway.metric("postern_refusals_total", &labels).await;
    assert_eq!(value, expected, "postern_refusals_total{labels:?}");
}

#[tokio::test]
async fn vpc_peer_without_header_admitted() {
    let (gateway, echo) = gateway_with_echo().await;

    let (response, local) =
        get_after_prefix(VPC_PEER, gateway.private_gate(), b"", "/v1/models").await;

    let seen = response.echo();
    assert_eq!(seen.path(), "/v1/models");
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.1.5"));
    assert_eq!(echo.hits(), 1);
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["gate"], "private");
    assert_eq!(line["app"], "echo");
    assert_eq!(line["status"], 200);
    assert_eq!(line["client_addr"], local.to_string());
    assert_eq!(line["peer_addr"], local.to_string());
    assert_eq!(line["endpoint_id"], serde_json::Value::Null);
    let admitted = [("gate", "private"), ("kind", "vpc_workload")];
    gateway
        .wait_for_metric("postern_admissions_total", &admitted, 1.0)
        .await;
}

#[tokio::test]
async fn vpc_peer_with_proxy_header_closed() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let source = declared("127.0.1.44:40000");

    let v2 = proxy_v2_endpoint(source, gate, ENDPOINT_ALLOWED);
    let v1 = proxy_v1(source, gate);
    let reason = "proxy_header_from_untrusted_peer";
    assert_refused(&gateway, gate, VPC_PEER, &v2, reason, "v2 from a VPC peer").await;
    assert_refused(&gateway, gate, VPC_PEER, &v1, reason, "v1 from a VPC peer").await;

    assert_eq!(echo.hits(), 0);
    assert_refusals(&gateway, "private", reason, 2.0).await;
}

#[tokio::test]
async fn privatelink_endpoint_admitted() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    // The CIDR rule does not apply to a PrivateLink client: this source is
    // outside the VPC.
    let client = declared("198.51.100.23:50123");
    let header = proxy_v2_endpoint(client, gate, ENDPOINT_ALLOWED);

    let (response, local) = get_after_prefix(BALANCER, gate, &header, "/v1/chat").await;

    let seen = response.echo();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("198.51.100.23")
    );
    assert_eq!(echo.hits(), 1);
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["client_addr"], "198.51.100.23:50123");
    assert_eq!(line["peer_addr"], local.to_string());
    assert_eq!(line["endpoint_id"], ENDPOINT_ALLOWED);
    assert_eq!(line["endpoint_owner"], ALLOWED_ACCOUNT);
    assert_eq!(line["decision"], "allow");
    let admitted = [("gate", "private"), ("kind", "privatelink")];
    gateway
        .wait_for_metric("postern_admissions_total", &admitted, 1.0)
        .await;
}

#[tokio::test]
async fn privatelink_endpoint_refusals() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let client = declared("198.51.100.23:50123");
    let cases: [(&[u8], &str); 8] = [
        (
            ENDPOINT_OTHER_OWNER.as_bytes(),
            "endpoint_owner_not_allowed",
        ),
        (ENDPOINT_PENDING.as_bytes(), "endpoint_not_available"),
        (ENDPOINT_UNKNOWN.as_bytes(), "endpoint_unknown"),
        (b"vpce-0A1B2C3D4E5F60001", "endpoint_id_invalid"),
        (b"vpce-0a1b2c3d4e5f60001\n", "endpoint_id_invalid"),
        (b"vpce-0a1b2c3d4e5f60001 x", "endpoint_id_invalid"),
        (b"vpce-\xff\xfe0a1b2c3d4e5f", "endpoint_id_invalid"),
        (b"", "endpoint_id_invalid"),
    ];

    for (endpoint_id, reason) in cases {
        let value = endpoint_tlv_value(endpoint_id);
        let header = proxy_v2(client, gate, &[(PP2_TYPE_AWS, &value)]);
        let case = format!("endpoint id {:?}", String::from_utf8_lossy(endpoint_id));
        let line = assert_refused(&gateway, gate, BALANCER, &header, reason, &case).await;
        assert!(
            line["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("endpoint_id="),
            "{case}: the refusal line names the endpoint: {line}"
        );
    }

    assert_eq!(echo.hits(), 0);
    assert_refusals(&gateway, "private", "endpoint_owner_not_allowed", 1.0).await;
    assert_refusals(&gateway, "private", "endpoint_not_available", 1.0).await;
    assert_refusals(&gateway, "private", "endpoint_unknown", 1.0).await;
    assert_refusals(&gateway, "private", "endpoint_id_invalid", 5.0).await;
}

#[tokio::test]
async fn proxied_source_must_be_in_vpc() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let inside = declared("127.0.1.77:40000");
    let outside = declared("10.20.30.40:40000");

    for (version, header) in [
        ("v2", proxy_v2(inside, gate, &[])),
        ("v1", proxy_v1(inside, gate)),
    ] {
        let (response, _) = get_after_prefix(BALANCER, gate, &header, "/").await;
        let seen = response.echo();
        assert_eq!(
            seen.header("x-forwarded-for").as_deref(),
            Some("127.0.1.77"),
            "{version} without the endpoint TLV, source in the VPC"
        );
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["client_addr"], "127.0.1.77:40000", "{version}");
        assert_eq!(line["endpoint_id"], serde_json::Value::Null, "{version}");
    }

    let reason = "proxy_source_not_in_vpc";
    let v2 = proxy_v2(outside, gate, &[]);
    let v1 = proxy_v1(outside, gate);
    assert_refused(
        &gateway,
        gate,
        BALANCER,
        &v2,
        reason,
        "v2 from outside the VPC",
    )
    .await;
    assert_refused(
        &gateway,
        gate,
        BALANCER,
        &v1,
        reason,
        "v1 from outside the VPC",
    )
    .await;

    assert_eq!(echo.hits(), 2);
    assert_refusals(&gateway, "private", reason, 2.0).await;
    let proxied = [("gate", "private"), ("kind", "proxied_vpc")];
    gateway
        .wait_for_metric("postern_admissions_total", &proxied, 2.0)
        .await;
}

#[tokio::test]
async fn tlvs_in_any_order_and_unknown_skipped() {
    let (gateway, _echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let client = declared("198.51.100.23:50123");
    let endpoint = endpoint_tlv_value(ENDPOINT_ALLOWED.as_bytes());
    // An AWS TLV with another subtype is not the endpoint id.
    let other_aws_subtype = [0x02, b'x', b'y'];

    let header = proxy_v2(
        client,
        gate,
        &[
            (0x05, b"unique-id-0001"),
            (PP2_TYPE_AWS, &other_aws_subtype),
            (0xE0, b"custom"),
            (PP2_TYPE_AWS, &endpoint),
            (0x04, b""),
        ],
    );
    let (response, _) = get_after_prefix(BALANCER, gate, &header, "/").await;

    response.echo();
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["endpoint_id"], ENDPOINT_ALLOWED);
    assert_eq!(line["client_addr"], "198.51.100.23:50123");
}

#[tokio::test]
async fn local_header_reaches_health_only() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();

    let (health, _) = get_after_prefix(BALANCER, gate, &proxy_v2_local(), "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");

    let (app, _) = get_after_prefix(BALANCER, gate, &proxy_v2_local(), "/v1/models").await;
    assert_eq!(app.status, 404, "{}", app.text());
    assert_eq!(app.json()["error"], "not_found");

    assert_eq!(echo.hits(), 0);
    let health_checks = [("gate", "private"), ("kind", "health_check")];
    gateway
        .wait_for_metric("postern_admissions_total", &health_checks, 2.0)
        .await;
}

#[tokio::test]
async fn invalid_headers_closed() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let client = declared("198.51.100.23:50123");
    let valid = proxy_v2_endpoint(client, gate, ENDPOINT_ALLOWED);

    let mut bad_version = valid.clone();
    bad_version[12] = 0x31;
    let mut bad_family = valid.clone();
    bad_family[13] = 0x91;
    // The TLV declares 64 bytes of value, but the header contains 3.
    let overrunning_tlv = with_raw_payload(
        proxy_v2(client, gate, &[]),
        &[PP2_TYPE_AWS, 0x00, 0x40, 0x01, b'v', b'p'],
    );
    // A TLV cut after its type byte.
    let cut_tlv = with_raw_payload(proxy_v2(client, gate, &[]), &[PP2_TYPE_AWS]);
    let mut huge_length = valid.clone();
    huge_length[14..16].copy_from_slice(&0xFFFFu16.to_be_bytes());
    let mut twice = valid.clone();
    twice.extend_from_slice(&valid);
    let mut v1_then_v2 = proxy_v1(declared("127.0.1.7:4000"), gate);
    v1_then_v2.extend_from_slice(&valid);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no header", Vec::new(), "proxy_header_missing"),
        (
            "v1 with a bad address",
            b"PROXY TCP4 not-an-ip 127.0.0.3 1 2\r\n".to_vec(),
            "proxy_header_malformed",
        ),
        (
            "v1 longer than 107 bytes",
            b"PROXY TCP4 127.0.1.7 127.0.0.3 1 2 ".repeat(4),
            "proxy_header_malformed",
        ),
        ("v2 with version 3", bad_version, "proxy_header_malformed"),
        (
            "v2 with an unknown address family",
            bad_family,
            "proxy_header_malformed",
        ),
        (
            "v2 with an overrunning TLV",
            overrunning_tlv,
            "proxy_header_malformed",
        ),
        ("v2 with a cut TLV", cut_tlv, "proxy_header_malformed"),
        ("v2 declaring 64 KiB", huge_length, "proxy_header_malformed"),
        ("two v2 headers", twice, "proxy_header_repeated"),
        ("v1 then v2", v1_then_v2, "proxy_header_repeated"),
    ];
    let mut expected = std::collections::BTreeMap::new();
    for (case, bytes, reason) in &cases {
        assert_refused(&gateway, gate, BALANCER, bytes, reason, case).await;
        *expected.entry(*reason).or_insert(0.0) += 1.0;
    }

    // Truncated: half a header, then the client closes its side.
    let mut stream = connect_from(BALANCER, gate).await;
    let peer = stream.local_addr().unwrap().to_string();
    stream.write_all(&valid[..20]).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_closed_without_response(&mut stream, CLOSE_LIMIT, "truncated header").await;
    let line = gateway
        .wait_for_diagnostic("the refusal line of the truncated header", |l| {
            l["message"] == "Connection refused" && l["peer"] == peer.as_str()
        })
        .await;
    assert_eq!(line["reason"], "proxy_header_truncated");
    *expected.entry("proxy_header_truncated").or_insert(0.0) += 1.0;

    assert_eq!(echo.hits(), 0);
    for (reason, count) in expected {
        assert_refusals(&gateway, "private", reason, count).await;
    }
}

#[tokio::test]
async fn slow_header_closed_at_deadline() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let header = proxy_v2_endpoint(declared("198.51.100.23:50123"), gate, ENDPOINT_ALLOWED);

    // Half a header, then silence.
    let mut stream = connect_from(BALANCER, gate).await;
    let started = Instant::now();
    stream.write_all(&header[..10]).await.unwrap();
    assert_closed_without_response(&mut stream, CLOSE_LIMIT, "silent after half a header").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= HEADER_TIMEOUT - Duration::from_millis(50) && elapsed < HEADER_TIMEOUT * 3,
        "closed after {elapsed:?}; the header timeout is {HEADER_TIMEOUT:?}"
    );

    // One byte every 100 ms: each read makes progress, but the deadline
    // covers the whole header.
    let mut stream = connect_from(BALANCER, gate).await;
    let started = Instant::now();
    let trickle = async {
        for byte in &header {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(HEADER_TIMEOUT * 2, trickle).await;
    assert_closed_without_response(&mut stream, CLOSE_LIMIT, "header trickled byte by byte").await;
    assert!(
        started.elapsed() < HEADER_TIMEOUT * 2 + CLOSE_LIMIT,
        "the trickled header kept the connection open for {:?}",
        started.elapsed()
    );

    assert_eq!(echo.hits(), 0);
    assert_refusals(&gateway, "private", "proxy_header_timeout", 2.0).await;
}

#[tokio::test]
async fn other_peers_closed() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let header = proxy_v2_endpoint(declared("198.51.100.23:50123"), gate, ENDPOINT_ALLOWED);

    let reason = "peer_not_in_vpc";
    assert_refused(
        &gateway,
        gate,
        LOCALHOST,
        b"",
        reason,
        "127.0.0.1 without a header",
    )
    .await;
    assert_refused(
        &gateway,
        gate,
        OUTSIDER,
        b"",
        reason,
        "127.0.0.9 without a header",
    )
    .await;
    assert_refused(
        &gateway,
        gate,
        OUTSIDER,
        &header,
        reason,
        "127.0.0.9 with a header",
    )
    .await;

    assert_eq!(echo.hits(), 0);
    assert_refusals(&gateway, "private", reason, 3.0).await;
}

#[tokio::test]
async fn header_in_one_write_or_byte_by_byte() {
    let (gateway, echo) = gateway_with_echo().await;
    let gate = gateway.private_gate();
    let headers = [
        (
            "v2 with the endpoint TLV",
            proxy_v2_endpoint(declared("198.51.100.23:50123"), gate, ENDPOINT_ALLOWED),
            "198.51.100.23",
        ),
        (
            "v2 from the VPC",
            proxy_v2(declared("127.0.1.77:40000"), gate, &[]),
            "127.0.1.77",
        ),
        (
            "v1 from the VPC",
            proxy_v1(declared("127.0.1.78:40000"), gate),
            "127.0.1.78",
        ),
        ("v2 LOCAL", proxy_v2_local(), ""),
    ];

    for (case, header, client) in &headers {
        let path = if client.is_empty() {
            "/healthz"
        } else {
            "/one-write"
        };
        let mut request = header.clone();
        request.extend_from_slice(&raw_get(&private_host("echo"), path, ""));

        // The header and the request in one write.
        let mut stream = connect_from(BALANCER, gate).await;
        let response = RawResponse::parse(&raw_exchange(&mut stream, &request).await);
        assert_eq!(response.status, 200, "{case} in one write");
        if !client.is_empty() {
            let seen = response.echo();
            assert_eq!(
                seen.header("x-forwarded-for").as_deref(),
                Some(*client),
                "{case}"
            );
        }

        // One byte per write, then the request.
        let mut stream = connect_from(BALANCER, gate).await;
        for byte in header {
            stream.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let path = if client.is_empty() {
            "/healthz"
        } else {
            "/byte-by-byte"
        };
        let response = RawResponse::parse(
            &raw_exchange(&mut stream, &raw_get(&private_host("echo"), path, "")).await,
        );
        assert_eq!(response.status, 200, "{case} byte by byte");
        if !client.is_empty() {
            let seen = response.echo();
            assert_eq!(seen.path(), "/byte-by-byte", "{case}");
            assert_eq!(
                seen.header("x-forwarded-for").as_deref(),
                Some(*client),
                "{case}"
            );
        }
    }
    assert_eq!(echo.hits(), 6);
}

#[tokio::test]
async fn public_gate_trusted_proxy_source() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .public_proxy_source("127.0.0.2/32")
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    let gate = gateway.public;
    let token = format!("Proxy-Authorization: Bearer {TOKEN}\r\n");

    // The balancer's header is believed.
    let mut request = proxy_v2(declared("203.0.113.9:4444"), gate, &[]);
    request.extend_from_slice(&raw_get(&public_host("echo"), "/", &token));
    let mut stream = connect_from(BALANCER, gate).await;
    let response = RawResponse::parse(&raw_exchange(&mut stream, &request).await);
    let seen = response.echo();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9")
    );

    // Any other peer connects directly and may not send a header.
    let direct = get_with_token(gate, &public_host("echo"), "/").await;
    assert_eq!(
        direct.echo().header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    let header = proxy_v2(declared("203.0.113.9:4444"), gate, &[]);
    assert_refused(
        &gateway,
        gate,
        LOCALHOST,
        &header,
        "proxy_header_from_untrusted_peer",
        "a header from 127.0.0.1 on the public gate",
    )
    .await;

    // The balancer must send one.
    assert_refused(
        &gateway,
        gate,
        BALANCER,
        b"",
        "proxy_header_missing",
        "no header from the public balancer",
    )
    .await;

    assert_eq!(echo.hits(), 2);
    assert_refusals(&gateway, "public", "proxy_header_from_untrusted_peer", 1.0).await;
    assert_refusals(&gateway, "public", "proxy_header_missing", 1.0).await;
}
