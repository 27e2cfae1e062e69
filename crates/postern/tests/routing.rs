//! Routing by host: the forms a client may write a host in, hosts that
//! match no app, apps closed to a gate, and HTTP/2 `:authority`.

mod support;

use http::StatusCode;
use support::*;
use tokio::io::AsyncWriteExt;

fn token_header() -> String {
    format!("Proxy-Authorization: Bearer {TOKEN}\r\n")
}

/// Sends raw request bytes from 127.0.0.1 to `gate` and parses the response.
async fn raw_request(gate: std::net::SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut stream = connect_from(LOCALHOST, gate).await;
    RawResponse::parse(&raw_exchange(&mut stream, bytes).await)
}

#[tokio::test]
async fn host_forms_normalized() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;

    for host in [
        "ECHO.EXAMPLE.TEST",
        "echo.example.test:18080",
        "echo.example.test.",
        "Echo.Example.Test.:443",
    ] {
        let response = get_with_token(gateway.public, host, "/forms").await;

        let seen = response.echo();
        assert_eq!(
            seen.header("host").as_deref(),
            Some("echo.example.test"),
            "Host {host:?}"
        );
        assert_eq!(
            seen.header("x-forwarded-host").as_deref(),
            Some("echo.example.test"),
            "Host {host:?}"
        );
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["host"], "echo.example.test", "Host {host:?}");
        assert_eq!(line["app"], "echo", "Host {host:?}");
    }
    assert_eq!(echo.hits(), 4);
}

#[tokio::test]
async fn absolute_form_cannot_pick_upstream() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    let token = token_header();

    // A target naming the upstream itself, with a matching Host.
    let direct = format!(
        "GET http://{0}/steal HTTP/1.1\r\nHost: {0}\r\n{token}Connection: close\r\n\r\n",
        echo.addr
    );
    let response = raw_request(gateway.public, direct.as_bytes()).await;
    assert_eq!(response.status, 404, "absolute-form naming the upstream");

    // A target naming another host than the Host header.
    let conflict = format!(
        "GET http://evil.test/steal HTTP/1.1\r\nHost: echo.example.test\r\n{token}Connection: close\r\n\r\n"
    );
    let response = raw_request(gateway.public, conflict.as_bytes()).await;
    assert_eq!(response.status, 400, "absolute-form conflicting with Host");
    assert_eq!(echo.hits(), 0);

    // A target naming the app's own host is served, in origin form.
    let own = format!(
        "GET http://Echo.Example.Test/own?x=1 HTTP/1.1\r\nHost: echo.example.test\r\n{token}Connection: close\r\n\r\n"
    );
    let response = raw_request(gateway.public, own.as_bytes()).await;
    let seen = response.echo();
    assert_eq!(seen.path(), "/own?x=1");
    assert_eq!(seen.header("host").as_deref(), Some("echo.example.test"));
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn connect_method_rejected() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;

    let request = format!(
        "CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n{1}\r\n",
        echo.addr,
        token_header()
    );
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = match read_outcome(&mut stream, RESPONSE_TIMEOUT).await {
        ReadOutcome::Data(bytes) => RawResponse::parse(&bytes),
        other => panic!("expected a response to CONNECT, got {other:?}"),
    };

    assert_eq!(response.status, 405);
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn unknown_host_404_json() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;

    let cases = [
        (
            "public, unknown app",
            gateway.public,
            LOCALHOST,
            public_host("nosuch"),
        ),
        (
            "public, other domain",
            gateway.public,
            LOCALHOST,
            "echo.example.org".to_owned(),
        ),
        (
            "public, private host form",
            gateway.public,
            LOCALHOST,
            private_host("echo"),
        ),
        (
            "private, unknown app",
            gateway.private_gate(),
            VPC_PEER,
            private_host("nosuch"),
        ),
        (
            "private, public host form",
            gateway.private_gate(),
            VPC_PEER,
            public_host("echo"),
        ),
        (
            "public, IP literal",
            gateway.public,
            LOCALHOST,
            echo.addr.to_string(),
        ),
    ];
    let credential = format!("Bearer {TOKEN}");
    for (case, gate, source, host) in cases {
        // The public gate requires a credential before it looks up a host.
        let headers: &[(&str, &str)] = if gate == gateway.public {
            &[("proxy-authorization", &credential)]
        } else {
            &[]
        };
        let response = get_from(source, gate, &host, "/", headers).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{case}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        assert_eq!(response.json()["error"], "not_found", "{case}");
    }
    assert_eq!(echo.hits(), 0);

    // Without a credential, an unknown host and a known one look the same.
    for host in [public_host("nosuch"), public_host("echo")] {
        let response = get_from(LOCALHOST, gateway.public, &host, "/", &[]).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{host}");
    }
}

#[tokio::test]
async fn public_only_app_hidden_on_private_gate() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("grafana", echo.addr))
        .start()
        .await;

    let hidden = get_from(
        VPC_PEER,
        gateway.private_gate(),
        &private_host("grafana"),
        "/",
        &[],
    )
    .await;
    let unknown = get_from(
        VPC_PEER,
        gateway.private_gate(),
        &private_host("nosuch"),
        "/",
        &[],
    )
    .await;

    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden.body, unknown.body,
        "an app closed to the gate looks like an unknown app"
    );
    assert_eq!(echo.hits(), 0);
    let public = get_with_token(gateway.public, &public_host("grafana"), "/").await;
    public.echo();
}

#[tokio::test]
async fn disabled_app_404_on_both_gates() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("jupyterhub", echo.addr).private().disabled())
        .start()
        .await;

    let public = get_with_token(gateway.public, &public_host("jupyterhub"), "/").await;
    let private = get_from(
        VPC_PEER,
        gateway.private_gate(),
        &private_host("jupyterhub"),
        "/",
        &[],
    )
    .await;

    assert_eq!(public.status, StatusCode::NOT_FOUND);
    assert_eq!(private.status, StatusCode::NOT_FOUND);
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn h2c_prior_knowledge_uses_authority() {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;

    // Public gate: the credential and `:authority` in mixed case with a port.
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let request = http::Request::builder()
        .uri("http://Echo.Example.Test:8080/h2?q=1")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(empty_body())
        .unwrap();
    let response = send_http2(stream, request)
        .await
        .expect("an HTTP/2 exchange");
    let seen = response.echo();
    assert_eq!(seen.path(), "/h2?q=1");
    assert_eq!(seen.header("host").as_deref(), Some("echo.example.test"));
    assert_eq!(
        seen.0["version"], "HTTP/1.1",
        "the upstream hop is HTTP/1.1"
    );
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["host"], "echo.example.test");
    assert_eq!(line["identity"], MACHINE);

    // Private gate, from the VPC.
    let stream = connect_from(VPC_PEER, gateway.private_gate()).await;
    let request = http::Request::builder()
        .uri(format!("http://{}/private-h2", private_host("echo")))
        .body(empty_body())
        .unwrap();
    let response = send_http2(stream, request)
        .await
        .expect("an HTTP/2 exchange");
    let seen = response.echo();
    assert_eq!(seen.header("host"), Some(private_host("echo")));

    // An unknown `:authority` gets the same 404.
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let request = http::Request::builder()
        .uri("http://nosuch.example.test/")
        .header("proxy-authorization", format!("Bearer {TOKEN}"))
        .body(empty_body())
        .unwrap();
    let response = send_http2(stream, request)
        .await
        .expect("an HTTP/2 exchange");
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(echo.hits(), 2);
}
