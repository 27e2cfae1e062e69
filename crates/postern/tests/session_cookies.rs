//! postern's session cookie among the apps' cookies: non-ASCII cookies of
//! other apps, apps that try to set postern's cookies, and same-named
//! cookies sent ahead of the real one. The real binary, a real app and
//! password sign-in, all on loopback.

mod support;

use http::StatusCode;
use support::*;

const SESSION_KEY: &str = "test-session-key-0123456789abcdef0123456789";
const PASSWORD: &str = "correct horse battery staple";

/// Starts a gateway with the echo app and the users `alice` and
/// `mallory`; returns it with alice's session cookie.
async fn signed_in(echo: &EchoServer) -> (Gateway, String) {
    let hash = postern::identity::password::hash(PASSWORD).unwrap();
    let identities = format!(
        "  users:\n    - name: alice\n      password_argon2id: \"{hash}\"\n\
         \x20   - name: mallory\n      password_argon2id: \"{hash}\"\n\
         \x20 sessions:\n    keys:\n      - insecure_inline: {SESSION_KEY}\n"
    );
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .identities(&identities)
        .start()
        .await;
    let form = [("username", "alice"), ("password", PASSWORD), ("rd", "/")];
    let response = post_login(LOCALHOST, gateway.public, &form, &[]).await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    let cookie = cookie_header(&response);
    assert!(cookie.starts_with("_postern="), "{cookie}");
    (gateway, cookie)
}

#[tokio::test]
async fn non_ascii_cookies_neither_hide_nor_leak_the_session() {
    let echo = EchoServer::start().await;
    let (gateway, session) = signed_in(&echo).await;

    // A browser sends another app's UTF-8 cookie value raw, next to the
    // session cookie.
    let header = format!("name=Jos\u{e9}; {session}; lang=\u{65e5}\u{672c}");
    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("cookie", &header)],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let seen = response.echo();
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.headers_named("cookie"),
        ["name=Jos\u{e9}; lang=\u{65e5}\u{672c}"]
    );
}

#[tokio::test]
async fn apps_cannot_set_posterns_cookies() {
    let echo = EchoServer::start().await;
    let (gateway, session) = signed_in(&echo).await;

    let lines = [
        "_postern=x; Domain=example.test; Path=/",
        "_postern_0=x; Domain=example.test; Path=/",
        "_postern_flow=x; Path=/oauth2/",
        "theme=dark; Path=/",
    ];
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(lines.iter().map(|l| ("c", *l)))
        .finish();
    let response = get(
        gateway.public,
        &public_host("echo"),
        &format!("/set-cookie?{query}"),
        &[("cookie", &session)],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let set: Vec<&str> = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set, ["theme=dark; Path=/"]);
    let line = gateway
        .wait_for_diagnostic("the dropped Set-Cookie line", |l| {
            l["message"] == "Dropped the app's Set-Cookie for postern's own cookies"
        })
        .await;
    assert_eq!(line["app"], "echo");
    assert_eq!(line["dropped"], 3);

    // A junk cookie of the session's name sent ahead of the real one (as a
    // cookie that an app set for a narrower path would be) does not hide it.
    let junk = format!("_postern=junk; {session}");
    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("cookie", &junk)],
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.echo().header("cookie").is_none());
}

#[tokio::test]
async fn two_different_sessions_count_as_none() {
    let echo = EchoServer::start().await;
    let (gateway, alice) = signed_in(&echo).await;
    let mallory = sign_in_with_password(&gateway, "mallory", PASSWORD).await;
    // Browsers send the cookie of the longer path first: here the one an
    // app's page planted at /app with mallory's valid session.
    let both = format!("{mallory}; {alice}");

    let response = get(
        gateway.public,
        &public_host("echo"),
        "/app/page",
        &[("cookie", &both)],
    )
    .await;

    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text()
    );
    assert_eq!(echo.hits(), 0);
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["reason"], "session_cookie_conflict", "{line}");
    assert!(line["identity"].is_null(), "{line}");
    let cleared: Vec<&str> = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    for path in ["/app/page", "/app/", "/app", "/"] {
        let host_only = cleared.iter().any(|c| {
            c.starts_with("_postern=;")
                && c.contains(&format!("Path={path};"))
                && c.contains("Max-Age=0")
                && !c.contains("Domain=")
        });
        assert!(host_only, "no host-only removal at {path} in {cleared:?}");
    }
    let domain = cleared.iter().any(|c| {
        c.starts_with("_postern=;") && c.contains("Path=/app;") && c.contains("Domain=example.test")
    });
    assert!(domain, "no cluster-domain removal at /app in {cleared:?}");
    for (i, cookie) in cleared.iter().enumerate() {
        assert!(
            !cleared[..i].contains(cookie),
            "{cookie:?} is sent twice in {cleared:?}"
        );
    }
    assert_eq!(
        response.json()["message"],
        "the request carries two different session cookies of this gateway, so neither \
         counts; this response clears them, so sign in again"
    );

    // A browser navigation with the same cookies is sent to sign in.
    let navigation = get(
        gateway.public,
        &public_host("echo"),
        "/app/page",
        &[("cookie", &both), ("accept", "text/html")],
    )
    .await;
    assert_eq!(navigation.status, StatusCode::FOUND);
    let location = navigation.header("location").unwrap_or_default();
    assert!(location.contains("/oauth2/start?rd="), "{location}");
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn same_session_cookie_twice_is_one_session() {
    let echo = EchoServer::start().await;
    let (gateway, alice) = signed_in(&echo).await;
    let twice = format!("{alice}; {alice}");

    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("cookie", &twice)],
    )
    .await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let seen = response.echo();
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some("alice"));
}
