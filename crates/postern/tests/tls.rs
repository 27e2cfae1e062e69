//! TLS termination: HTTP/1.1 and HTTP/2 by ALPN on the public gate, TLS
//! after a PROXY header on the private gate, and a certificate replaced by
//! a reload.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for both gates' hosts, as PEM, and its DER.
fn certificate() -> (String, String, CertificateDer<'static>) {
    let names = vec![
        format!("*.{CLUSTER_HOSTNAME}"),
        format!("*.internal.{CLUSTER_HOSTNAME}"),
    ];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    (
        certified.cert.pem(),
        certified.key_pair.serialize_pem(),
        certified.cert.der().clone(),
    )
}

/// Runs a TLS handshake on `stream` for `host`, trusting only `root`, and
/// offering `alpn`.
async fn handshake(
    stream: TcpStream,
    host: &str,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    within(
        RESPONSE_TIMEOUT,
        "the TLS handshake",
        TlsConnector::from(Arc::new(config)).connect(name, stream),
    )
    .await
}

async fn tls_get(
    gate: SocketAddr,
    host: &str,
    root: &CertificateDer<'static>,
    alpn: &[u8],
) -> (HttpResponse, Option<Vec<u8>>) {
    let stream = connect_from(LOCALHOST, gate).await;
    let tls = handshake(stream, host, root, &[alpn])
        .await
        .expect("a TLS handshake");
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = hyper_util::rt::TokioIo::new(tls);
    let request = http::Request::builder()
        .uri(format!("https://{host}/tls"))
        .header("proxy-authorization", format!("Bearer {TOKEN}"));
    let response = if alpn == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = request.body(empty_body()).unwrap();
        read_response(sender.send_request(request).await.unwrap()).await
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let request = request
            .uri("/tls")
            .header("host", host)
            .body(empty_body())
            .unwrap();
        read_response(sender.send_request(request).await.unwrap()).await
    };
    (response.unwrap(), negotiated)
}

#[tokio::test]
async fn public_gate_http1_and_h2_by_alpn() {
    let echo = EchoServer::start().await;
    let (cert, key, root) = certificate();
    let gateway = GatewaySpec::new()
        .tls(&cert, &key)
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;

    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let (response, negotiated) =
            tls_get(gateway.public, &public_host("echo"), &root, alpn).await;

        let case = String::from_utf8_lossy(alpn);
        assert_eq!(negotiated.as_deref(), Some(alpn), "ALPN {case}");
        let seen = response.echo();
        assert_eq!(
            seen.header("x-forwarded-proto").as_deref(),
            Some("https"),
            "ALPN {case}"
        );
        assert_eq!(
            seen.header("host"),
            Some(public_host("echo")),
            "ALPN {case}"
        );
        let line = gateway.access_log_for(&response.request_id()).await;
        let protocol = if alpn == b"h2" { "HTTP/2" } else { "HTTP/1.1" };
        assert_eq!(line["protocol"], protocol);
    }
}

#[tokio::test]
async fn idle_h2_without_ping_ack_closed() {
    let echo = EchoServer::start().await;
    let (cert, key, root) = certificate();
    let gateway = GatewaySpec::new()
        .tls(&cert, &key)
        .app(AppSpec::new("echo", echo.addr))
        .limit("client_idle_timeout", "500ms")
        .start()
        .await;

    // HTTP/2 by ALPN, no stream, and no acknowledgement of the PING that
    // comes with the GOAWAY. postern waits 1 s for it, then closes.
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let mut tls = handshake(stream, &public_host("echo"), &root, &[b"h2"])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    tls.write_all(H2_PREFACE).await.unwrap();
    let limit = std::time::Duration::from_secs(4);
    let (frames, closed) = read_h2_frames_unanswered(&mut tls, limit).await;
    let frames = h2_frame_kinds(&frames);
    let elapsed = started.elapsed();

    assert!(closed, "still open after {limit:?}; frames {frames:?}");
    assert!(
        elapsed >= std::time::Duration::from_millis(400),
        "closed after only {elapsed:?}"
    );
    assert!(frames.contains(&H2_GOAWAY), "no GOAWAY in {frames:?}");
}

#[tokio::test]
async fn plain_http_on_tls_gate_refused() {
    let echo = EchoServer::start().await;
    let (cert, key, _) = certificate();
    let gateway = GatewaySpec::new()
        .tls(&cert, &key)
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;

    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let request = raw_get(
        &public_host("echo"),
        "/",
        &format!("Proxy-Authorization: Bearer {TOKEN}\r\n"),
    );
    write_ignoring_errors(&mut stream, &request).await;

    match read_outcome(&mut stream, RESPONSE_TIMEOUT).await {
        ReadOutcome::Closed | ReadOutcome::Reset => {}
        // A TLS alert is fine, but an HTTP response is not.
        ReadOutcome::Data(bytes) => assert!(
            !bytes.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        ),
        ReadOutcome::Silent => panic!("plain HTTP on a TLS gate got no response and no close"),
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn private_gate_tls_after_proxy_header() {
    let echo = EchoServer::start().await;
    let (cert, key, root) = certificate();
    let gateway = GatewaySpec::new()
        .tls(&cert, &key)
        .app(AppSpec::new("echo", echo.addr).private())
        .start()
        .await;
    let gate = gateway.private_gate();
    let client: SocketAddr = "198.51.100.23:50123".parse().unwrap();

    let mut stream = connect_from(BALANCER, gate).await;
    stream
        .write_all(&proxy_v2_endpoint(client, gate, ENDPOINT_ALLOWED))
        .await
        .unwrap();
    let tls = handshake(stream, &private_host("echo"), &root, &[b"http/1.1"])
        .await
        .expect("a TLS handshake after the PROXY header");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = request("GET", &private_host("echo"), "/private-tls")
        .body(empty_body())
        .unwrap();
    let response = read_response(sender.send_request(request).await.unwrap())
        .await
        .unwrap();

    let seen = response.echo();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("198.51.100.23")
    );
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["endpoint_id"], ENDPOINT_ALLOWED);
}

#[tokio::test]
async fn renewed_certificate_served_without_restart() {
    let echo = EchoServer::start().await;
    let (cert, key, old_root) = certificate();
    let gateway = GatewaySpec::new()
        .tls(&cert, &key)
        .app(AppSpec::new("echo", echo.addr))
        .start()
        .await;
    gateway.wait_for_file_watch().await;
    let applied = [("file", "vars"), ("outcome", "applied")];
    let applied_before = gateway
        .metric("postern_config_reloads_total", &applied)
        .await;

    let (new_cert, new_key, new_root) = certificate();
    // No SIGHUP: the gateway watches the certificate files too.
    gateway.replace_file("tls.key", &new_key);
    gateway.replace_file("tls.crt", &new_cert);
    gateway
        .wait_for_metric(
            "postern_config_reloads_total",
            &applied,
            applied_before + 1.0,
        )
        .await;

    let host = public_host("echo");
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let renewed = handshake(stream, &host, &new_root, &[b"http/1.1"]).await;
    assert!(
        renewed.is_ok(),
        "the renewed certificate is not served: {:?}",
        renewed.err()
    );
    let stream = connect_from(LOCALHOST, gateway.public).await;
    let old = handshake(stream, &host, &old_root, &[b"http/1.1"]).await;
    assert!(old.is_err(), "the old certificate is still served");
}
