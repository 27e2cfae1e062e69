//! Server-side sessions in a real Redis server, shared by two postern
//! processes: a sign-in on one works on the other, and a sign-out on one
//! takes effect on both at once.

mod support;

use http::StatusCode;
use support::*;

const PASSWORD: &str = "correct horse battery staple";
const REDIS_PASSWORD: &str = "redis-test-password-0001";
const SESSION_KEY: &str = "test-session-key-0123456789abcdef0123456789";

/// Starts a gateway with the echo app, the user `alice`, and sessions in
/// `redis`.
async fn replica(redis: &RedisServer, echo: &EchoServer) -> Gateway {
    replica_of(redis.addr, echo).await
}

/// Starts a gateway like [`replica`] whose sessions are in Redis at
/// `redis`, which need not be running yet.
async fn replica_of(redis: std::net::SocketAddr, echo: &EchoServer) -> Gateway {
    let hash = postern::identity::password::hash(PASSWORD).unwrap();
    let identities = format!(
        "  users:
    - name: alice
      groups: [staff]
      password_argon2id: \"{hash}\"
  sessions:
    keys:
      - insecure_inline: {SESSION_KEY}
    redis:
      url: redis://{redis}
      password:
        file: redis.pass
"
    );
    GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .identities(&identities)
        .file("redis.pass", &format!("{REDIS_PASSWORD}\n"))
        .start()
        .await
}

/// Signs `alice` in on `gateway` and returns the session's Cookie header.
async fn sign_in(gateway: &Gateway) -> String {
    sign_in_with_password(gateway, "alice", PASSWORD).await
}

async fn whoami(gateway: &Gateway, cookies: &str) -> HttpResponse {
    get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("cookie", cookies)],
    )
    .await
}

#[tokio::test]
async fn sign_out_reaches_every_replica() {
    let redis = RedisServer::start(REDIS_PASSWORD);
    let echo = EchoServer::start().await;
    let first = replica(&redis, &echo).await;
    let second = replica(&redis, &echo).await;

    let cookies = sign_in(&first).await;
    // The cookie carries a sealed id, not the session.
    assert!(cookies.len() < 300, "cookie too large for an id: {cookies}");
    assert!(!cookies.contains("alice"), "{cookies}");

    for gateway in [&first, &second] {
        let response = whoami(gateway, &cookies).await;
        assert_eq!(
            response.echo().headers_named("x-auth-request-user"),
            ["alice"]
        );
    }

    let signed_out = get(
        second.public,
        &auth_host(),
        "/oauth2/sign_out?rd=/",
        &[("cookie", &cookies)],
    )
    .await;
    assert!(signed_out.status.is_redirection(), "{}", signed_out.status);

    // The old cookie, replayed, is no session on either replica.
    for gateway in [&first, &second] {
        let response = whoami(gateway, &cookies).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text()
        );
    }
}

#[tokio::test]
async fn redis_outage_answers_503() {
    let mut redis = RedisServer::start(REDIS_PASSWORD);
    let echo = EchoServer::start().await;
    let gateway = replica(&redis, &echo).await;
    let cookies = sign_in(&gateway).await;

    redis.stop();
    let response = whoami(&gateway, &cookies).await;
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.text()
    );
    assert_eq!(echo.hits(), 0, "the request reached the app");
    let login = post_login(
        LOCALHOST,
        gateway.public,
        &[("username", "alice"), ("password", PASSWORD), ("rd", "/")],
        &[],
    )
    .await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    gateway
        .wait_for_diagnostic("the Redis outage line", |line| {
            line["message"] == "Redis session store unavailable"
        })
        .await;
    assert!(!gateway.stderr_text().contains(REDIS_PASSWORD));

    // The gateway itself is still up for machine tokens.
    let machine = get_with_token(gateway.public, &public_host("echo"), "/").await;
    assert_eq!(machine.status, StatusCode::OK);
}

#[tokio::test]
async fn starts_and_recovers_without_redis() {
    let port = free_port();
    let echo = EchoServer::start().await;
    let gateway = replica_of(std::net::SocketAddr::from(([127, 0, 0, 1], port)), &echo).await;
    let form = [("username", "alice"), ("password", PASSWORD), ("rd", "/")];

    // No Redis yet: the gateway runs, and a sign-in gets 503.
    let rejected = post_login(LOCALHOST, gateway.public, &form, &[]).await;
    assert_eq!(rejected.status, StatusCode::SERVICE_UNAVAILABLE);

    let mut redis = RedisServer::start_on(port, REDIS_PASSWORD);
    let cookies = sign_in(&gateway).await;
    let response = whoami(&gateway, &cookies).await;
    assert_eq!(
        response.echo().headers_named("x-auth-request-user"),
        ["alice"]
    );

    // A restarted Redis (persistence off) lost the session: the gateway
    // reconnects by itself, and the old cookie is no session any more.
    redis.stop();
    let response = whoami(&gateway, &cookies).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let _redis = RedisServer::start_on(port, REDIS_PASSWORD);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = whoami(&gateway, &cookies).await.status;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let again = sign_in(&gateway).await;
    let response = whoami(&gateway, &again).await;
    assert_eq!(
        response.echo().headers_named("x-auth-request-user"),
        ["alice"]
    );
}

#[test]
fn redis_url_with_credentials_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("vars.yaml");
    let yaml = GatewaySpec::new()
        .identities(
            "  sessions:
    keys:
      - insecure_inline: test-session-key-0123456789abcdef0123456789
    redis:
      url: redis://:secret@127.0.0.1:6379
",
        )
        .vars_yaml();
    std::fs::write(&vars, yaml).unwrap();
    std::fs::write(dir.path().join("endpoints.yaml"), DEFAULT_ENDPOINTS).unwrap();
    let output = postern(&["check", vars.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("identities.sessions.redis.url"), "{stderr}");
    assert!(
        stderr.contains("credentials in the URL are not allowed"),
        "{stderr}"
    );
}
