//! Browser sign-in through an upstream OpenID provider: headless Chromium
//! against the real postern binary, the npm oidc-provider and echo apps,
//! all on loopback. Names under the cluster hostname resolve to 127.0.0.1
//! in the browser only.

mod support;

use std::time::Duration;

use postern::config::identity::{SecretSource, SessionsConfig};
use postern::session::{ProviderGrant, Session};
use serde_json::{Value, json};
use support::*;

/// The session cookie's name (the default).
const COOKIE: &str = "_postern";
/// The key that seals the gateway's session cookies.
const SESSION_KEY: &str = "session-key-0123456789abcdef0123456789";
/// The password of the tests' Redis servers.
const REDIS_PASSWORD: &str = "redis-test-password-0001";

/// A signed-in browser's world: the provider, the gateway, two apps.
struct World {
    idp: Idp,
    gateway: Gateway,
    echo: EchoServer,
    other: EchoServer,
    browser: Browser,
}

// === impl World ===

impl World {
    /// Starts everything; the provider's access tokens live
    /// `access_token_ttl` seconds.
    async fn start(access_token_ttl: u64) -> World {
        World::start_with(access_token_ttl, None).await
    }

    /// Starts everything like [`World::start`], with the sessions in
    /// `redis` when given.
    async fn start_with(access_token_ttl: u64, redis: Option<&RedisServer>) -> World {
        let idp = Idp::start().await;
        let echo = EchoServer::start().await;
        let other = EchoServer::start().await;
        let store = redis.map_or(String::new(), |r| {
            format!(
                "    redis:\n      url: redis://{}\n      password: {{file: redis.pass}}\n",
                r.addr
            )
        });
        let identities = format!(
            "  sessions:\n    keys:\n      - insecure_inline: {SESSION_KEY}\n{store}\
             \x20 providers:\n    - name: idp\n      issuer: {}\n      client_id: postern\n\
             \x20     client_secret: {{insecure_inline: postern-secret}}\n\
             \x20     scopes: [openid, email, profile, groups]\n",
            idp.issuer
        );
        let gateway = GatewaySpec::new()
            .app(AppSpec::new("echo", echo.addr).private())
            .app(AppSpec::new("other", other.addr))
            .identities(&identities)
            .file("redis.pass", REDIS_PASSWORD)
            .start()
            .await;
        idp.register_postern(&origin(&gateway, "auth"), access_token_ttl)
            .await;
        World {
            idp,
            gateway,
            echo,
            other,
            browser: Browser::start().await,
        }
    }

    /// Opens `url` without a session and signs in as `user` at the
    /// provider; returns the page the browser lands on.
    async fn sign_in(&mut self, url: &str, user: &str) -> Page {
        let login = self.browser.goto(url).await;
        assert!(
            login.url.starts_with(&self.idp.issuer),
            "expected the provider's login page, got {} ({})",
            login.url,
            login.text
        );
        self.browser.login(user).await
    }

    /// The browser's session cookies: `_postern` or its chunks, not the
    /// sign-in flow's cookie.
    async fn session_cookies(&mut self) -> Vec<Value> {
        let flow = format!("{COOKIE}_flow");
        let mut cookies = self.browser.cookies_named(COOKIE).await;
        cookies.retain(|c| c["name"] != flow.as_str());
        cookies
    }

    /// The Cookie header the browser would send to an app.
    async fn cookie_header(&mut self) -> String {
        self.session_cookies()
            .await
            .iter()
            .map(|c| {
                format!(
                    "{}={}",
                    c["name"].as_str().unwrap(),
                    c["value"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `http://<app>.example.test:<public port>`.
fn origin(gateway: &Gateway, app: &str) -> String {
    format!("http://{}:{}", public_host(app), gateway.public.port())
}

/// The request an echo app saw, from the page the browser shows.
fn echoed(page: &Page) -> Echo {
    let value: Value = serde_json::from_str(&page.text)
        .unwrap_or_else(|_| panic!("not an echo at {}: {}", page.url, page.text));
    Echo(value)
}

/// Requests an app received, less the browser's own favicon requests.
fn page_hits(app: &EchoServer) -> usize {
    app.request_lines()
        .iter()
        .filter(|l| !l.contains("/favicon.ico"))
        .count()
}

/// Sends a GET to the public gate as a client other than the browser.
async fn get_with(gateway: &Gateway, app: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let host = format!("{}:{}", public_host(app), gateway.public.port());
    get(gateway.public, &host, "/page", headers).await
}

#[tokio::test]
async fn one_sign_in_reaches_every_app_then_signs_out() {
    let mut w = World::start(3600).await;
    let echo_origin = origin(&w.gateway, "echo");
    let other_origin = origin(&w.gateway, "other");

    // Without a session: an API call gets 401, a navigation gets sent to
    // sign in with the original URL.
    let api = get_with(&w.gateway, "echo", &[("accept", "application/json")]).await;
    assert_eq!(api.status, 401);
    assert!(
        api.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let nav = get_with(&w.gateway, "echo", &[("accept", "text/html")]).await;
    assert_eq!(nav.status, 302);
    let location = nav.header("location").unwrap();
    let start = format!("{}/oauth2/start?rd=", origin(&w.gateway, "auth"));
    assert!(location.starts_with(&start), "{location}");
    assert!(location.contains("echo.example.test"), "{location}");

    // One sign-in, and the browser is back at the page it asked for.
    let page = w
        .sign_in(&format!("{echo_origin}/hello?x=1"), "alice")
        .await;
    assert_eq!(
        page.url,
        format!("{echo_origin}/hello?x=1"),
        "{}\n{}\n{}",
        page.text,
        w.gateway.stderr_text(),
        w.idp.stderr_text()
    );
    let seen = echoed(&page);
    assert_eq!(seen.path(), "/hello?x=1");
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some("alice"));
    assert!(
        seen.header("cookie").is_none(),
        "{:?}",
        seen.header("cookie")
    );

    // The session cookie's attributes.
    let cookies = w.session_cookies().await;
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert_eq!(cookie["name"], COOKIE);
    assert_eq!(cookie["domain"], ".example.test");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    assert_eq!(cookie["secure"], false, "the test gate has no TLS");
    let session_value = cookie["value"].as_str().unwrap().to_owned();

    // The second app needs no sign-in, and the app's own cookies reach it
    // byte for byte while postern's never do.
    w.browser
        .set_cookies(vec![json!({
            "name": "theme", "value": "dark\"x", "domain": "other.example.test", "path": "/"
        })])
        .await;
    let page = w.browser.goto(&format!("{other_origin}/two")).await;
    let seen = echoed(&page);
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some("alice"));
    assert_eq!(seen.header("cookie").as_deref(), Some("theme=dark\"x"));
    assert_eq!(page_hits(&w.other), 1);
    assert_eq!(page_hits(&w.echo), 1);

    // The access log names the person and how they signed in, and holds
    // no cookie.
    let line = w
        .gateway
        .wait_for_access_log("the request to other", |l| l["app"] == "other")
        .await;
    assert_eq!(line["identity"], "alice");
    assert_eq!(line["auth_method"], "oidc:idp");
    assert!(!w.gateway.stdout_text().contains(&session_value));
    assert!(!w.gateway.stderr_text().contains(&session_value));

    // Sign-out clears the cookie, signs out at the provider, and comes
    // back to rd; the app then asks for a sign-in again.
    let page = w
        .browser
        .goto(&format!(
            "{}/oauth2/sign_out?rd={echo_origin}/after",
            origin(&w.gateway, "auth")
        ))
        .await;
    assert!(
        page.url.starts_with(&w.idp.issuer),
        "expected the provider's login page after sign-out, got {}",
        page.url
    );
    assert!(w.session_cookies().await.is_empty());
    assert_eq!(w.idp.stats().await["sign_outs"], 1);
}

#[tokio::test]
async fn refresh_runs_once_and_large_sessions_are_chunked() {
    // Access tokens of 12 s are refreshed from 2 s on (10 s early).
    let mut w = World::start(12).await;
    let echo_origin = origin(&w.gateway, "echo");

    // `many` has 200 groups: the session takes several cookies.
    let page = w.sign_in(&format!("{echo_origin}/"), "many").await;
    assert_eq!(
        echoed(&page).header("x-auth-request-user").as_deref(),
        Some("many")
    );
    let chunks = w.session_cookies().await;
    assert!(chunks.len() >= 2, "expected chunked cookies: {chunks:?}");
    for chunk in &chunks {
        let name = chunk["name"].as_str().unwrap();
        let size = name.len() + 1 + chunk["value"].as_str().unwrap().len();
        assert!(size <= 4096, "{name} has {size} bytes");
        assert!(name.starts_with(&format!("{COOKIE}_")), "{name}");
    }
    let before = w.cookie_header().await;

    // Many requests of one session arrive together once a refresh is
    // due: one refresh at the provider (which rotates refresh tokens, so
    // a second use of the old one would revoke the grant), every request
    // admitted, and each response carries the new session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let header = [("cookie", before.as_str())];
    let requests = (0..8).map(|_| get_with(&w.gateway, "echo", &header));
    let responses = futures_util::future::join_all(requests).await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.headers.get_all("set-cookie").iter().count() >= 2);
        let seen = response.echo();
        assert!(seen.header("cookie").is_none());
    }
    let stats = w.idp.stats().await;
    assert_eq!(stats["refreshes"], 1, "{stats}");
    assert_eq!(stats["refresh_failures"], 0, "{stats}");

    // The browser refreshes as well (its cookie is still the old one) and
    // gets the refreshed session.
    let page = w.browser.goto(&format!("{echo_origin}/later")).await;
    assert_eq!(echoed(&page).path(), "/later");
    assert_ne!(w.cookie_header().await, before);
    assert_eq!(w.idp.stats().await["refresh_failures"], 0);

    // A refresh the provider refuses ends the session: 401 for an API
    // call, and cookies that clear it. The session is sealed here with the
    // gateway's key, holding a refresh token the provider never issued.
    let sessions = postern::session::Sessions::new(&SessionsConfig {
        keys: vec![SecretSource::InsecureInline(SESSION_KEY.to_owned())],
        lifetime: Duration::from_secs(3600),
        cookie_name: COOKIE.to_owned(),
        domain: CLUSTER_HOSTNAME.to_owned(),
        secure: false,
        redis: None,
    })
    .unwrap();
    let now = postern::identity::now();
    let forged = Session {
        user: "alice".to_owned(),
        email: None,
        groups: Vec::new(),
        method: "oidc:idp".to_owned(),
        issued_at: now,
        expires_at: now + 3600,
        provider: Some(ProviderGrant {
            provider: "idp".to_owned(),
            refresh_token: Some("never-issued".to_owned()),
            access_expires_at: Some(now - 1),
            id_token: None,
        }),
    };
    let set = sessions
        .save(&http::HeaderMap::new(), &forged)
        .await
        .unwrap();
    let cookie = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let hits = page_hits(&w.echo);
    let refused = get_with(&w.gateway, "echo", &[("cookie", &cookie)]).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert!(
        refused
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("_postern=;"))
    );
    assert_eq!(page_hits(&w.echo), hits);
    assert_eq!(w.idp.stats().await["refresh_failures"], 1);
}

#[tokio::test]
async fn key_rotation_bad_cookies_and_open_redirects() {
    let mut w = World::start(3600).await;
    let echo_origin = origin(&w.gateway, "echo");
    let auth_origin = origin(&w.gateway, "auth");
    w.sign_in(&format!("{echo_origin}/"), "alice").await;
    let good = w.cookie_header().await;
    let value = good.split_once('=').unwrap().1.to_owned();

    // Tampered, truncated and foreign cookies are no session: 302 for a
    // navigation, 401 for anything else, and never the app.
    let mut flipped = value.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let bad = [
        format!("{COOKIE}={}", String::from_utf8(flipped).unwrap()),
        format!("{COOKIE}={}", &value[..value.len() - 8]),
        format!("{COOKIE}_0={}", &value[..value.len() / 2]),
        format!("{COOKIE}=bm90IGEgc2Vzc2lvbg=="),
    ];
    let hits = page_hits(&w.echo);
    for cookie in &bad {
        let api = get_with(&w.gateway, "echo", &[("cookie", cookie)]).await;
        assert_eq!(api.status, 401, "{cookie}");
        let nav = get_with(
            &w.gateway,
            "echo",
            &[("cookie", cookie), ("accept", "text/html")],
        )
        .await;
        assert_eq!(nav.status, 302, "{cookie}");
    }
    assert_eq!(page_hits(&w.echo), hits);
    let ok = get_with(&w.gateway, "echo", &[("cookie", &good)]).await;
    assert_eq!(ok.status, 200);

    // The cookie also reaches the private gate's hosts, which are under the
    // cluster hostname too; it is removed there as well.
    let private = get_from(
        VPC_PEER,
        w.gateway.private_gate(),
        &private_host("echo"),
        "/",
        &[("cookie", &format!("a=1; {good}; b=2"))],
    )
    .await;
    assert_eq!(private.status, 200);
    assert_eq!(private.echo().header("cookie").as_deref(), Some("a=1; b=2"));

    // Every open-redirect form lands on the auth host's own page after
    // sign-in (the provider still knows the browser, so no login form).
    let forms = [
        "//evil.example/",
        "/\\evil.example",
        "https:evil.example",
        "/%2F%2Fevil.example",
        "https://evil.example/",
        "https://example.test.evil.example/",
        "https://echo.example.test@evil.example/",
        "https://evil.example\\@echo.example.test/",
        "javascript:alert(1)",
    ];
    for rd in forms {
        let encoded: String = form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let page = w
            .browser
            .goto(&format!("{auth_origin}/oauth2/start?rd={encoded}"))
            .await;
        assert_eq!(page.url, format!("{auth_origin}/"), "rd {rd:?}");
        assert!(page.text.contains("Signed in as alice"), "{}", page.text);
    }
    let page = w
        .browser
        .goto(&format!("{auth_origin}/oauth2/start?rd={echo_origin}/ok"))
        .await;
    assert_eq!(page.url, format!("{echo_origin}/ok"));

    // The provider rotates its signing keys and drops the old ones: a new
    // sign-in still works, without a restart.
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.idp.rotate(false).await;
    w.browser.clear_cookies().await;
    let page = w.sign_in(&format!("{echo_origin}/rotated"), "bob").await;
    assert_eq!(page.url, format!("{echo_origin}/rotated"), "{}", page.text);
    assert_eq!(
        echoed(&page).header("x-auth-request-user").as_deref(),
        Some("bob")
    );
}

/// Set-Cookie lines of a response.
fn set_cookies(response: &HttpResponse) -> Vec<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Starts a sign-in without a browser: the flow cookie and the state the
/// callback must carry.
async fn start_flow(gateway: &Gateway) -> (String, String) {
    let host = format!("{}:{}", public_host("auth"), gateway.public.port());
    let started = get(gateway.public, &host, "/oauth2/start?rd=/", &[]).await;
    assert_eq!(started.status, 302, "{}", started.text());
    let location = url::Url::parse(started.header("location").unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    (cookie_header(&started), state)
}

/// Sends the provider's redirect back to the callback, with a code the
/// provider never issued. Waits longer than other requests: the gateway
/// waits up to 10 s for the provider here.
async fn callback(gateway: &Gateway, flow: &(String, String)) -> (u16, String) {
    let host = format!("{}:{}", public_host("auth"), gateway.public.port());
    let path = format!("/oauth2/callback?code=never-issued&state={}", flow.1);
    let request = raw_get(&host, &path, &format!("Cookie: {}\r\n", flow.0));
    let mut stream = connect_from(LOCALHOST, gateway.public).await;
    let (bytes, closed) = raw_exchange_within(&mut stream, &request, Duration::from_secs(20)).await;
    assert!(closed, "no callback response in time");
    let response = RawResponse::parse(&bytes);
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

#[tokio::test]
async fn provider_outage_keeps_sessions_and_fails_sign_ins_clearly() {
    let mut w = World::start(12).await;
    let echo_origin = origin(&w.gateway, "echo");
    w.sign_in(&format!("{echo_origin}/"), "alice").await;
    let cookie = w.cookie_header().await;
    let navigation = [("cookie", cookie.as_str()), ("accept", "text/html")];

    // A code the provider refuses is still a failed sign-in.
    let (status, page) = callback(&w.gateway, &start_flow(&w.gateway).await).await;
    assert_eq!(status, 401, "{page}");

    // The provider hangs while a refresh is due: the session is served,
    // as it is, until its own end.
    let flow = start_flow(&w.gateway).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.idp.signal("STOP");
    let served = get_with(&w.gateway, "echo", &navigation).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(
        served.echo().header("x-auth-request-user").as_deref(),
        Some("alice")
    );
    assert!(
        set_cookies(&served).is_empty(),
        "{:?}",
        set_cookies(&served)
    );

    // Within the back-off the next request does not wait for the provider.
    let started = std::time::Instant::now();
    let again = get_with(&w.gateway, "echo", &navigation).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A sign-in cannot finish: 504 while the provider does not answer...
    let (status, page) = callback(&w.gateway, &flow).await;
    assert_eq!(status, 504, "{page}");
    assert!(page.contains("did not answer in time"), "{page}");

    // ...and 502 once it is gone.
    w.idp.signal("KILL");
    let (status, page) = callback(&w.gateway, &flow).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("cannot be reached"), "{page}");

    // After the back-off the refresh is tried again, and the session is
    // still served.
    // The back-off (signin::refresh::BACKOFF) is 5 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = get_with(&w.gateway, "echo", &navigation).await;
    assert_eq!(later.status, 200, "{}", later.text());
    // The second warning may reach the log just after the response.
    w.gateway
        .wait_for_diagnostic("the warning of the retried refresh", |line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Refresh not possible now"))
                && line["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("the refresh failed"))
        })
        .await;
    let warnings = w
        .gateway
        .diagnostics()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Refresh not possible now"))
        })
        .count();
    assert_eq!(warnings, 2, "{}", w.gateway.stderr_text());
}

#[tokio::test]
async fn redis_refresh_keeps_the_session_id_and_explain_changes_nothing() {
    let redis = RedisServer::start(REDIS_PASSWORD);
    let mut w = World::start_with(12, Some(&redis)).await;
    let echo_origin = origin(&w.gateway, "echo");
    w.sign_in(&format!("{echo_origin}/"), "alice").await;
    let cookie = w.cookie_header().await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // `postern explain` with the cookie reports the due refresh and
    // neither refreshes at the provider nor touches the stored session.
    let vars = w.gateway.vars_path();
    let host = format!("{}:{}", public_host("echo"), w.gateway.public.port());
    let header = format!("Cookie: {cookie}");
    let args: Vec<String> = [
        "explain",
        "--config",
        vars.to_str().unwrap(),
        "--gate",
        "public",
        "--host",
        &host,
        "-H",
        &header,
    ]
    .map(str::to_owned)
    .to_vec();
    let output = tokio::task::spawn_blocking(move || {
        postern(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let printed = text(&output.stdout);
    assert!(
        printed.contains(
            "session: session valid; provider refresh due, the server would refresh it now"
        ),
        "{printed}\n{}",
        text(&output.stderr)
    );
    assert!(printed.contains("outcome: allow"), "{printed}");
    assert_eq!(w.idp.stats().await["refreshes"], 0);

    // Parallel requests with the cookie once the refresh is due: one
    // refresh, every request served, and the cookie stays as it is
    // because the session keeps its id.
    let headers = [("cookie", cookie.as_str())];
    let requests = (0..6).map(|_| get_with(&w.gateway, "echo", &headers));
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(
            set_cookies(&response).is_empty(),
            "{:?}",
            set_cookies(&response)
        );
    }
    // Requests sent with the same cookie afterwards still work.
    let after = get_with(&w.gateway, "echo", &headers).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(
        after.echo().header("x-auth-request-user").as_deref(),
        Some("alice")
    );
    let stats = w.idp.stats().await;
    assert_eq!(stats["refreshes"], 1, "{stats}");
    assert_eq!(stats["refresh_failures"], 0, "{stats}");
}

#[tokio::test]
async fn string_email_verified_is_read_as_boolean() {
    let mut w = World::start(3600).await;
    let echo_origin = origin(&w.gateway, "echo");

    // "true" as a string: the address is verified, and the app gets it.
    let page = w.sign_in(&format!("{echo_origin}/"), "strtrue").await;
    let seen = echoed(&page);
    assert_eq!(
        seen.header("x-auth-request-user").as_deref(),
        Some("strtrue")
    );
    assert_eq!(
        seen.header("x-auth-request-email").as_deref(),
        Some("strtrue@example.com")
    );

    // "false" as a string: signed in, but the address is not used.
    w.browser = Browser::start().await;
    let page = w.sign_in(&format!("{echo_origin}/"), "strfalse").await;
    let seen = echoed(&page);
    assert_eq!(
        seen.header("x-auth-request-user").as_deref(),
        Some("strfalse")
    );
    assert_eq!(seen.header("x-auth-request-email"), None);

    // Anything else: the sign-in fails with a reason that names the
    // provider's response, not its reachability.
    w.browser = Browser::start().await;
    let page = w.sign_in(&format!("{echo_origin}/"), "oddverified").await;
    assert_eq!(page.status, 502, "{}", page.text);
    let line = w
        .gateway
        .wait_for_access_log("the failed callback", |l| {
            l["path"] == "/oauth2/callback" && l["decision"] == "deny"
        })
        .await;
    assert_eq!(line["reason"], "provider_response_invalid", "{line}");
    let diagnostic = w
        .gateway
        .wait_for_diagnostic("the sign-in failure", |l| l["message"] == "Sign-in failed")
        .await;
    let error = diagnostic["error"].as_str().unwrap_or_default();
    assert!(error.contains("email_verified"), "{diagnostic}");
    assert_eq!(page_hits(&w.echo), 2);
}
