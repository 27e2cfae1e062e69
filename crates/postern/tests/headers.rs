//! What crosses the gateway: the public gate's credential check, which
//! request headers reach the app, which are dropped or replaced, and
//! requests whose framing two parsers could read differently.
//!
//! Raw TCP requests keep header letter case and duplicates exactly as
//! written, which hyper's client would normalize.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::AsyncWriteExt;

/// Starts a gateway with one app, `echo`, open on both gates.
async fn gateway_with_echo() -> (Gateway, EchoServer) {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    (gateway, echo)
}

/// Sends `head` (request line and headers, each ending in CRLF) and `body`
/// from 127.0.0.1, with `Connection: close`, and parses the response.
async fn raw_request(gate: SocketAddr, head: &str, body: &str) -> RawResponse {
    let mut stream = connect_from(LOCALHOST, gate).await;
    let bytes = format!("{head}Connection: close\r\n\r\n{body}");
    RawResponse::parse(&raw_exchange(&mut stream, bytes.as_bytes()).await)
}

#[tokio::test]
async fn missing_credential_401() {
    let (gateway, echo) = gateway_with_echo().await;

    for (case, headers) in [
        ("no credential", vec![]),
        (
            "Basic credentials",
            vec![("authorization", "Basic dXNlcjpwYXNz")],
        ),
        ("empty Bearer", vec![("authorization", "Bearer ")]),
    ] {
        let response = get(gateway.public, &public_host("echo"), "/", &headers).await;

        assert_eq!(response.status, 401, "{case}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{case}: WWW-Authenticate {challenge:?}"
        );
        assert!(
            !challenge.contains("invalid_token"),
            "{case}: WWW-Authenticate {challenge:?}"
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        assert_eq!(response.json()["error"], "unauthorized", "{case}");
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn wrong_token_401_invalid_token() {
    let (gateway, echo) = gateway_with_echo().await;

    for (case, name) in [
        ("Proxy-Authorization", "proxy-authorization"),
        ("Authorization", "authorization"),
    ] {
        let value = "Bearer pst_not_a_known_token";
        let response = get(gateway.public, &public_host("echo"), "/", &[(name, value)]).await;

        assert_eq!(response.status, 401, "{case}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{case}: {challenge:?}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge:?}"
        );
        assert_eq!(response.json()["error"], "unauthorized", "{case}");
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["decision"], "deny", "{case}");
        assert_eq!(line["reason"], "credential_invalid", "{case}");
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn proxy_authorization_without_bearer_named() {
    let (gateway, echo) = gateway_with_echo().await;

    for (case, value) in [("bare token", TOKEN), ("Basic", "Basic dXNlcjpwYXNz")] {
        let response = get(
            gateway.public,
            &public_host("echo"),
            "/",
            &[("proxy-authorization", value)],
        )
        .await;

        assert_eq!(response.status, 401, "{case}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge:?}"
        );
        let body = response.json();
        assert_eq!(body["error"], "unauthorized", "{case}");
        let message = body["message"].as_str().unwrap_or_default();
        assert_eq!(
            message,
            "the Proxy-Authorization header lacks the Bearer scheme: send \
             Proxy-Authorization: Bearer <token>",
            "{case}: {body}"
        );
        assert!(!message.contains(TOKEN), "{case}: the token was echoed");
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["reason"], "credential_invalid", "{case}");
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn proxy_authorization_keeps_app_key() {
    let (gateway, echo) = gateway_with_echo().await;
    // An app key with characters that a normalizing proxy might rewrite.
    let app_key = "Bearer  sk-LiteLLM_Key/+=0001 ";
    let head = format!(
        "GET /v1/models HTTP/1.1\r\nHost: echo.example.test\r\n\
         Proxy-Authorization: Bearer {TOKEN}\r\nAuthorization: {app_key}\r\n"
    );

    let response = raw_request(gateway.public, &head, "").await;

    let seen = response.echo();
    // The server trims the value's outer spaces, as HTTP parsers do.
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some(app_key.trim())
    );
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some(MACHINE));
    assert_eq!(echo.hits(), 1);

    let request_id = response.header("x-request-id").unwrap().to_owned();
    let line = gateway.access_log_for(&request_id).await;
    assert_eq!(line["identity"], MACHINE);
    assert_eq!(line["auth_method"], "machine_token");
    let logs = format!("{}\n{}", gateway.stdout_text(), gateway.stderr_text());
    assert!(!logs.contains(TOKEN), "a log line holds the machine token");
    assert!(!logs.contains("sk-LiteLLM"), "a log line holds the app key");
}

#[tokio::test]
async fn authorization_token_removed() {
    let (gateway, _echo) = gateway_with_echo().await;
    let credential = format!("Bearer {TOKEN}");

    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("authorization", &credential)],
    )
    .await;

    let seen = response.echo();
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some(MACHINE));
}

#[tokio::test]
async fn spoofed_headers_replaced() {
    let (gateway, _echo) = gateway_with_echo().await;
    let spoofed = "X-Auth-Request-User: admin\r\n\
                   x-AUTH-request-email: root@example.test\r\n\
                   X-Auth-Request-Groups: admins\r\n\
                   X-Postern-Identity: admin\r\n\
                   X-Forwarded-For: 6.6.6.6\r\n\
                   X-Forwarded-For: 7.7.7.7\r\n\
                   X-Forwarded-Proto: https\r\n\
                   X-Forwarded-Host: evil.test\r\n\
                   X-Real-IP: 6.6.6.6\r\n\
                   Forwarded: for=6.6.6.6;proto=https\r\n\
                   X-Request-Id: spoofed-request-id\r\n";

    // Public gate.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: echo.example.test\r\nProxy-Authorization: Bearer {TOKEN}\r\n{spoofed}"
    );
    let response = raw_request(gateway.public, &head, "").await;
    let seen = response.echo();
    assert_eq!(
        seen.headers_named("x-auth-request-user"),
        vec![MACHINE.to_owned()]
    );
    assert_eq!(seen.header("x-auth-request-email"), None);
    assert_eq!(seen.header("x-auth-request-groups"), None);
    assert_eq!(seen.header("x-postern-identity"), None);
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        vec!["127.0.0.1".to_owned()]
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("echo.example.test")
    );
    assert_eq!(seen.header("x-real-ip"), None);
    assert_eq!(seen.header("forwarded"), None);
    let request_id = seen.header("x-request-id").unwrap_or_default();
    assert_ne!(request_id, "spoofed-request-id");
    assert_eq!(response.header("x-request-id"), Some(request_id.as_str()));

    // Private gate, which sets no identity at all.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\n{spoofed}",
        private_host("echo")
    );
    let mut stream = connect_from(VPC_PEER, gateway.private_gate()).await;
    let bytes = format!("{head}Connection: close\r\n\r\n");
    let response = RawResponse::parse(&raw_exchange(&mut stream, bytes.as_bytes()).await);
    let seen = response.echo();
    assert_eq!(seen.header("x-auth-request-user"), None);
    assert_eq!(seen.header("x-auth-request-email"), None);
    assert_eq!(
        seen.headers_named("x-forwarded-for"),
        vec!["127.0.1.5".to_owned()]
    );
    assert_eq!(seen.header("x-real-ip"), None);
    assert_eq!(seen.header("forwarded"), None);
}

#[tokio::test]
async fn hop_by_hop_headers_stripped() {
    let (gateway, _echo) = gateway_with_echo().await;
    let head = format!(
        "GET /hop-response HTTP/1.1\r\nHost: echo.example.test\r\n\
         Proxy-Authorization: Bearer {TOKEN}\r\n\
         Connection: keep-alive, X-Hop-Secret\r\n\
         X-Hop-Secret: 1\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: gzip\r\n\
         Upgrade: h2c\r\n\
         Proxy-Connection: keep-alive\r\n\
         X-End-To-End: yes\r\n"
    );

    let response = raw_request(gateway.public, &head, "").await;

    let seen = response.echo();
    for name in [
        "x-hop-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    let connection = seen
        .headers_named("connection")
        .join(",")
        .to_ascii_lowercase();
    assert!(
        !connection.contains("x-hop-secret"),
        "upstream Connection: {connection:?}"
    );
    assert_eq!(seen.header("x-end-to-end").as_deref(), Some("yes"));

    // The upstream's own hop-by-hop headers stop at the gateway too.
    assert_eq!(response.header("x-upstream-hop"), None);
    assert_eq!(response.header("keep-alive"), None);
    assert_eq!(response.header("x-upstream-end-to-end"), Some("1"));
}

#[tokio::test]
async fn h2c_upgrade_request_not_upgraded() {
    let (gateway, _echo) = gateway_with_echo().await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: echo.example.test\r\n\
         Proxy-Authorization: Bearer {TOKEN}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\n\
         HTTP2-Settings: AAMAAABkAAQAAP__\r\n"
    );

    let response = raw_request(gateway.public, &head, "").await;

    let seen = response.echo();
    assert_eq!(seen.header("upgrade"), None);
    assert_eq!(seen.header("http2-settings"), None);
}

#[tokio::test]
async fn te_trailers_kept() {
    let (gateway, _echo) = gateway_with_echo().await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: echo.example.test\r\n\
         Proxy-Authorization: Bearer {TOKEN}\r\nTE: trailers\r\n"
    );

    let response = raw_request(gateway.public, &head, "").await;

    assert_eq!(response.echo().header("te").as_deref(), Some("trailers"));
}

#[tokio::test]
async fn te_in_response_stripped() {
    let app = start_answering(
        b"HTTP/1.1 200 OK\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("raw", app))
        .start()
        .await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nProxy-Authorization: Bearer {TOKEN}\r\n",
        public_host("raw")
    );

    let response = raw_request(gateway.public, &head, "").await;

    assert_eq!(response.status, 200);
    assert_eq!(response.header("te"), None);
    assert_eq!(response.header("keep-alive"), None);
}

#[tokio::test]
async fn ambiguous_framing_400() {
    let (gateway, echo) = gateway_with_echo().await;
    let start = format!(
        "POST /framing HTTP/1.1\r\nHost: echo.example.test\r\nProxy-Authorization: Bearer {TOKEN}\r\n"
    );
    let cases = [
        (
            "Content-Length and chunked",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        (
            "chunked and Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            "0\r\n\r\n",
        ),
        (
            "two Content-Length values",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "hello!",
        ),
        (
            "a Content-Length list",
            "Content-Length: 5, 6\r\n",
            "hello!",
        ),
        (
            "an invalid Content-Length",
            "Content-Length: +5\r\n",
            "hello",
        ),
    ];

    for (case, framing, body) in cases {
        let response = raw_request(gateway.public, &format!("{start}{framing}"), body).await;
        assert_eq!(response.status, 400, "{case}");

        let private_start = format!(
            "POST /framing HTTP/1.1\r\nHost: {}\r\n",
            private_host("echo")
        );
        let mut stream = connect_from(VPC_PEER, gateway.private_gate()).await;
        let bytes = format!("{private_start}{framing}Connection: close\r\n\r\n{body}");
        let response = RawResponse::parse(&raw_exchange(&mut stream, bytes.as_bytes()).await);
        assert_eq!(response.status, 400, "{case} on the private gate");
    }
    assert_eq!(
        echo.hits(),
        0,
        "the upstream saw {:?}",
        echo.request_lines()
    );
}

#[tokio::test]
async fn smuggled_request_never_reaches_upstream() {
    let (gateway, echo) = gateway_with_echo().await;
    // Read by Content-Length, the body is "0\r\n\r\n". Read as chunked, a
    // second request follows. The request has no `Connection: close`, and
    // the gateway must still not serve what follows.
    let smuggled = format!(
        "POST /outer HTTP/1.1\r\nHost: echo.example.test\r\nProxy-Authorization: Bearer {TOKEN}\r\n\
         Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\n\
         GET /smuggled HTTP/1.1\r\nHost: echo.example.test\r\nProxy-Authorization: Bearer {TOKEN}\r\n\r\n"
    );

    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let limit = std::time::Duration::from_secs(2);
    let (bytes, closed) = raw_exchange_within(&mut stream, smuggled.as_bytes(), limit).await;

    let response = RawResponse::parse(&bytes);
    assert_eq!(response.status, 400);
    assert_eq!(
        echo.hits(),
        0,
        "the upstream saw {:?}",
        echo.request_lines()
    );
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "more than one response: {text:?}"
    );
    assert!(closed, "the connection stayed open after the 400");
}

#[tokio::test]
async fn ambiguous_framing_400_in_large_head() {
    // A head larger than `max_header_bytes` (8 KiB) that arrives in two
    // parts must not slip past the check.
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .limit("max_header_bytes", "8192")
        .start()
        .await;
    let head = format!(
        "POST /framing HTTP/1.1\r\nHost: echo.example.test\r\nProxy-Authorization: Bearer {TOKEN}\r\n\
         X-Padding: {}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "a".repeat(9000)
    );

    // The head arrives in two parts, as it would over a slow network.
    let bytes = format!("{head}Connection: close\r\n\r\n0\r\n\r\n").into_bytes();
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    stream.write_all(&bytes[..8500]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // The gateway may have answered 431 and closed after the first part, in
    // which case the rest of the write fails and a reset may discard the
    // response, so a response is checked only when one arrived.
    write_ignoring_errors(&mut stream, &bytes[8500..]).await;
    let (out, _) = raw_exchange_within(&mut stream, &[], RESPONSE_TIMEOUT).await;
    if !out.is_empty() {
        let response = RawResponse::parse(&out);
        assert!(
            response.status == 400 || response.status == 431,
            "status {}",
            response.status
        );
    }
    assert_eq!(
        echo.hits(),
        0,
        "the upstream saw {:?}",
        echo.request_lines()
    );
}

/// Sends `first_head`, which gets `first_status`, then an ambiguous request
/// on the same keep-alive connection, which must still get 400.
async fn assert_second_request_rejected(first_head: &str, first_status: u16) {
    let (gateway, echo) = gateway_with_echo().await;
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let first = format!("{first_head}Proxy-Authorization: Bearer {TOKEN}\r\n\r\n");
    stream.write_all(first.as_bytes()).await.unwrap();
    let response = read_one_response(&mut stream).await;
    assert_eq!(response.status, first_status, "the first request");

    let second = format!(
        "POST /second HTTP/1.1\r\nHost: echo.example.test\r\nProxy-Authorization: Bearer {TOKEN}\r\n\
         Content-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    );
    let response = RawResponse::parse(&raw_exchange(&mut stream, second.as_bytes()).await);

    assert_eq!(response.status, 400, "the ambiguous second request");
    let seen = echo.request_lines();
    assert!(
        !seen.contains(&"POST /second".to_owned()),
        "the upstream saw {seen:?}"
    );
}

#[tokio::test]
async fn ambiguous_framing_400_after_upgrade_request() {
    // The gateway strips `Upgrade: h2c`, so the connection stays HTTP/1.1.
    let first = "GET /first HTTP/1.1\r\nHost: echo.example.test\r\n\
                 Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n";
    assert_second_request_rejected(first, 200).await;
}

#[tokio::test]
async fn ambiguous_framing_400_after_connect() {
    let first = "CONNECT echo.example.test:443 HTTP/1.1\r\nHost: echo.example.test:443\r\n";
    assert_second_request_rejected(first, 405).await;
}
