//! People provisioned in postern: `postern passwd`, and signing in on the
//! login page at `auth.<cluster hostname>/login`.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use http::StatusCode;
use support::*;

/// The session key of the test gateways (at least 32 bytes).
const SESSION_KEY: &str = "test-session-key-0123456789abcdef0123456789";
/// Another client address, so rate-limit tests do not share counters with
/// the other requests of a test.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 77));

/// The password hashed in these tests.
const PASSWORD: &str = "correct horse battery staple";

/// Runs `postern passwd` with `args`, the password on standard input.
fn passwd(args: &[&str], password: &str) -> std::process::Output {
    let mut full = vec!["passwd"];
    full.extend_from_slice(args);
    postern_with_input(&full, Some(password.as_bytes()))
}

#[test]
fn passwd_output_verifies() {
    let output = passwd(&["alice"], &format!("{PASSWORD}\n"));
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(
        printed.contains("  users:\n    - name: alice\n"),
        "{printed}"
    );
    let hash = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("password_argon2id: "))
        .unwrap_or_else(|| panic!("no password_argon2id line in {printed}"))
        .trim_matches('"')
        .to_owned();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    // The trailing newline is not part of the password.
    assert!(postern::identity::password::verify(
        &hash,
        PASSWORD.as_bytes()
    ));
    assert!(!postern::identity::password::verify(
        &hash,
        format!("{PASSWORD}\n").as_bytes()
    ));
    assert!(!printed.contains(PASSWORD), "the password was printed");
    // The email and groups are examples to edit, so they are comments: a
    // pasted entry must not grant a rule by an email domain.
    for key in ["email:", "groups:"] {
        assert!(
            !printed.lines().any(|l| l.trim_start().starts_with(key)),
            "{key} is a live value in {printed}"
        );
        assert!(printed.contains(&format!("# {key}")), "{printed}");
    }
    assert!(
        !text(&output.stderr).contains(PASSWORD),
        "the password went to stderr"
    );
}

#[test]
fn passwd_without_name_prints_hash() {
    let output = passwd(&[], PASSWORD);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let printed = text(&output.stdout);
    let hash = printed.trim();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(postern::identity::password::verify(
        hash,
        PASSWORD.as_bytes()
    ));
    let again = text(&passwd(&[], PASSWORD).stdout);
    assert_ne!(again.trim(), hash, "the salt must be random");
}

#[test]
fn passwd_rejects_bad_input() {
    let short = passwd(&["alice"], "short\n");
    assert!(!short.status.success());
    assert!(text(&short.stdout).is_empty());
    assert!(
        text(&short.stderr).contains("shorter than 8 bytes"),
        "{}",
        text(&short.stderr)
    );

    let long = passwd(&["alice"], &"x".repeat(2000));
    assert!(!long.status.success());
    assert!(
        text(&long.stderr).contains("longer than 1024"),
        "{}",
        text(&long.stderr)
    );

    let name = passwd(&["bad name"], PASSWORD);
    assert!(!name.status.success());
    assert!(text(&name.stderr).contains("invalid user name \"bad name\""));

    let help = postern(&["passwd", "--help"]);
    let stdout = text(&help.stdout);
    assert!(stdout.contains("Usage: postern passwd [NAME]"), "{stdout}");
    assert!(stdout.contains("standard input"), "{stdout}");
}

/// `identities` lines for `alice` (password [`PASSWORD`]) and sessions.
fn users_yaml() -> String {
    let hash = postern::identity::password::hash(PASSWORD).unwrap();
    format!(
        "  users:
    - name: alice
      email: alice@example.test
      groups: [admins, staff]
      password_argon2id: \"{hash}\"
  sessions:
    keys:
      - insecure_inline: {SESSION_KEY}
"
    )
}

/// Starts a gateway with the echo app and the user `alice`.
async fn gateway_with_users() -> (Gateway, EchoServer) {
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .identities(&users_yaml())
        .start()
        .await;
    (gateway, echo)
}

#[tokio::test]
async fn login_page_renders_form() {
    let (gateway, _echo) = gateway_with_users().await;
    let rd = "https://echo.example.test/x?a=1&b=2";
    let path = format!(
        "/login?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", rd)
            .finish()
    );
    let page = get(gateway.public, &auth_host(), &path, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    // Pages without a policy of their own get the auth host's strict one.
    let index = get(gateway.public, &auth_host(), "/", &[]).await;
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    assert_eq!(index.header("cache-control"), Some("no-store"));
    let csp = index.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text();
    assert!(
        html.contains("<form method=\"post\" action=\"/login\">"),
        "{html}"
    );
    assert!(
        html.contains("value=\"https://echo.example.test/x?a=1&amp;b=2\""),
        "{html}"
    );

    // A return address off the cluster is replaced before it is shown.
    let off = get(
        gateway.public,
        &auth_host(),
        "/login?rd=%2F%2Fevil.test%2F%22%3E",
        &[],
    )
    .await;
    let html = off.text();
    assert!(html.contains("name=\"rd\" value=\"/\""), "{html}");
    assert!(!html.contains("evil"), "{html}");
}

#[tokio::test]
async fn login_reaches_app_as_user() {
    let (gateway, _echo) = gateway_with_users().await;
    let rd = "https://echo.example.test/after";
    let response = post_login(
        LOCALHOST,
        gateway.public,
        &[("username", "alice"), ("password", PASSWORD), ("rd", rd)],
        &[],
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    assert_eq!(response.header("location"), Some(rd));
    let cookies = cookie_header(&response);
    assert!(!cookies.is_empty(), "no session cookie");

    // A spoofed identity header is replaced by the session's identity.
    let app = get(
        gateway.public,
        &public_host("echo"),
        "/after",
        &[("cookie", &cookies), ("x-auth-request-user", "mallory")],
    )
    .await;
    let echo = app.echo();
    assert_eq!(echo.headers_named("x-auth-request-user"), ["alice"]);
    assert!(
        echo.header("cookie").is_none(),
        "postern's cookie reached the app"
    );
    let line = gateway.access_log_for(&app.request_id()).await;
    assert_eq!(line["identity"], "alice");
    assert_eq!(line["auth_method"], "password");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_alike() {
    let (gateway, _echo) = gateway_with_users().await;
    let wrong = post_login(
        LOCALHOST,
        gateway.public,
        &[
            ("username", "alice"),
            ("password", "not the password"),
            ("rd", "/"),
        ],
        &[],
    )
    .await;
    let unknown = post_login(
        LOCALHOST,
        gateway.public,
        &[
            ("username", "nobody"),
            ("password", "not the password"),
            ("rd", "/"),
        ],
        &[],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, wrong.status);
    assert!(wrong.header("set-cookie").is_none());
    // The pages differ only in the user name filled in again.
    let normalize = |r: &HttpResponse, name: &str| r.text().replace(name, "NAME");
    assert_eq!(normalize(&wrong, "alice"), normalize(&unknown, "nobody"));
    assert!(
        wrong
            .text()
            .contains("The user name or password is not valid.")
    );

    let failure = gateway
        .wait_for_diagnostic("the failed sign-in line", |line| line["user"] == "nobody")
        .await;
    assert_eq!(failure["client"], "127.0.0.1");
    assert!(!gateway.stderr_text().contains("not the password"));
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let (gateway, _echo) = gateway_with_users().await;
    for _ in 0..5 {
        let response = post_login(
            ELSEWHERE,
            gateway.public,
            &[("username", "alice"), ("password", "guess"), ("rd", "/")],
            &[],
        )
        .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is turned away now, and an unknown name
    // gets the same status once it has had its five failures.
    let limited = post_login(
        LOCALHOST,
        gateway.public,
        &[("username", "alice"), ("password", PASSWORD), ("rd", "/")],
        &[],
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((850..=900).contains(&retry), "Retry-After {retry}");
    assert!(limited.header("set-cookie").is_none());
    for _ in 0..5 {
        post_login(
            ELSEWHERE,
            gateway.public,
            &[("username", "nobody"), ("password", "guess")],
            &[],
        )
        .await;
    }
    let unknown = post_login(
        LOCALHOST,
        gateway.public,
        &[("username", "nobody"), ("password", "guess")],
        &[],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(unknown.header("retry-after").is_some());
}

#[tokio::test]
async fn cross_site_post_rejected() {
    let (gateway, _echo) = gateway_with_users().await;
    let fields = [("username", "alice"), ("password", PASSWORD), ("rd", "/")];
    let cases: [&[(&str, &str)]; 3] = [
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "none")],
    ];
    for extra in cases {
        let response = post_login(LOCALHOST, gateway.public, &fields, extra).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{extra:?}");
        assert!(response.header("set-cookie").is_none(), "{extra:?}");
    }
    let logged = gateway
        .wait_for_diagnostic("the cross-site line", |line| line["check"].is_string())
        .await;
    assert_eq!(logged["check"], "sec_fetch_site");

    // Without Fetch Metadata, Origin decides; without both, no sign-in.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let host = auth_host();
    for (origin, expected) in [
        (Some("http://evil.test"), StatusCode::FORBIDDEN),
        (None, StatusCode::FORBIDDEN),
        (Some(&*format!("http://{host}")), StatusCode::SEE_OTHER),
    ] {
        let mut builder = request("POST", &host, "/login")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        let stream = connect_from(LOCALHOST, gateway.public).await;
        let response = send_http1(stream, builder.body(full_body(body.clone())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status, expected, "Origin {origin:?}");
    }
}

#[tokio::test]
async fn open_redirects_fall_back() {
    let (gateway, _echo) = gateway_with_users().await;
    for rd in [
        "//evil.test/",
        "/\\evil.test/",
        "https:evil.test",
        "https://evil.test/",
        "/%2f%2fevil.test",
        "https://user@evil.test/",
        "https://echo.example.test@evil.test/",
        "javascript:alert(1)",
    ] {
        let response = post_login(
            LOCALHOST,
            gateway.public,
            &[("username", "alice"), ("password", PASSWORD), ("rd", rd)],
            &[],
        )
        .await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{rd}");
        assert_eq!(response.header("location"), Some("/"), "{rd}");
    }
}

#[tokio::test]
async fn navigation_leads_to_login_page() {
    let (gateway, _echo) = gateway_with_users().await;
    let navigation = get(
        gateway.public,
        &public_host("echo"),
        "/page",
        &[("accept", "text/html"), ("sec-fetch-mode", "navigate")],
    )
    .await;
    assert_eq!(
        navigation.status,
        StatusCode::FOUND,
        "{}",
        navigation.text()
    );
    let start = navigation.header("location").unwrap().to_owned();
    let start_path = start.split_once(&auth_host()).map(|(_, p)| p.to_owned());
    let start_path = start_path.unwrap_or_else(|| panic!("not on the auth host: {start}"));
    assert!(start_path.starts_with("/oauth2/start?"), "{start}");

    // With users and no provider, sign-in starts on the login page.
    let login = get(gateway.public, &auth_host(), &start_path, &[]).await;
    assert_eq!(login.status, StatusCode::FOUND);
    let location = login.header("location").unwrap();
    assert!(location.starts_with("/login?rd="), "{location}");
    let page = get(gateway.public, &auth_host(), location, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("name=\"password\""));
}

#[tokio::test]
async fn parallel_burst_stays_within_limit() {
    let (gateway, _echo) = gateway_with_users().await;
    let attempts = (0..12).map(|_| {
        post_login(
            ELSEWHERE,
            gateway.public,
            &[("username", "alice"), ("password", "guess")],
            &[],
        )
    });
    let responses = futures_util::future::join_all(attempts).await;
    let checked = responses
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let limited = responses
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked, 5, "passwords checked");
    assert_eq!(limited, 7, "attempts over the limit");
}

#[tokio::test]
async fn explain_words_redirect_and_kind() {
    let (gateway, _echo) = gateway_with_users().await;
    let vars = gateway.vars_path();
    let host = public_host("echo");
    let base = [
        "explain",
        "--config",
        vars.to_str().unwrap(),
        "--gate",
        "public",
        "--host",
        &host,
    ];

    let mut navigation = base.to_vec();
    navigation.extend(["-H", "Accept: text/html"]);
    let output = postern(&navigation);
    let printed = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let outcome = printed
        .lines()
        .find(|l| l.starts_with("outcome: "))
        .unwrap_or_else(|| panic!("no outcome line in {printed}"));
    let expected = format!(
        "outcome: redirect 302 credential_missing (to sign in at http://{}/oauth2/start?rd=",
        auth_host()
    );
    assert!(outcome.starts_with(&expected), "{outcome}");

    let mut described = base.to_vec();
    described.extend(["--identity", "bob"]);
    let printed = text(&postern(&described).stdout);
    assert!(
        printed.contains("described identity bob (person, described), taken as proven"),
        "{printed}"
    );
}

/// Extra request headers of one test case.
type Headers = &'static [(&'static str, &'static str)];

/// Sends a sign-out with the session cookies and `extra` headers.
async fn sign_out(
    gateway: &Gateway,
    method: &str,
    cookies: &str,
    extra: &[(&str, &str)],
) -> HttpResponse {
    let mut builder =
        request(method, &auth_host(), "/oauth2/sign_out?rd=%2Fafter").header("cookie", cookies);
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let stream = connect_from(LOCALHOST, gateway.public).await;
    send_http1(stream, builder.body(empty_body()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} /oauth2/sign_out: {e}"))
}

/// Asserts that a response signed the browser out: back to `rd`, with
/// every Set-Cookie removing a session cookie.
fn assert_signed_out(response: &HttpResponse, case: &str) {
    assert_eq!(
        response.status,
        StatusCode::FOUND,
        "{case}: {}",
        response.text()
    );
    assert_eq!(response.header("location"), Some("/after"), "{case}");
    let removals: Vec<&str> = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!removals.is_empty(), "{case}: no cookie removed");
    for removal in removals {
        assert!(removal.starts_with("_postern="), "{case}: {removal}");
        assert!(removal.contains("Max-Age=0"), "{case}: {removal}");
    }
}

#[tokio::test]
async fn sign_out_from_auth_host() {
    let (gateway, _echo) = gateway_with_users().await;
    let cookies = sign_in_with_password(&gateway, "alice", PASSWORD).await;

    let cases: [(&str, &str, Headers); 4] = [
        (
            "GET, same origin",
            "GET",
            &[("sec-fetch-site", "same-origin")],
        ),
        (
            "GET, link in an app",
            "GET",
            &[("sec-fetch-site", "same-site")],
        ),
        ("GET, no metadata", "GET", &[]),
        (
            "POST, same origin",
            "POST",
            &[("sec-fetch-site", "same-origin")],
        ),
    ];
    for (case, method, extra) in cases {
        let response = sign_out(&gateway, method, &cookies, extra).await;
        assert_signed_out(&response, case);
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["reason"], "signed_out", "{case}");
        assert_eq!(line["identity"], "alice", "{case}");
    }

    // A browser without Fetch Metadata names the auth host in Origin.
    let origin = format!("http://{}", auth_host());
    let response = sign_out(&gateway, "POST", &cookies, &[("origin", &origin)]).await;
    assert_signed_out(&response, "POST, Origin of the auth host");

    // Other methods sign nobody out.
    let put = sign_out(
        &gateway,
        "PUT",
        &cookies,
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST"));
    assert!(put.header("set-cookie").is_none());
}

#[tokio::test]
async fn cross_site_sign_out_asks_first() {
    let (gateway, _echo) = gateway_with_users().await;
    let cookies = sign_in_with_password(&gateway, "alice", PASSWORD).await;

    let cases: [(&str, Headers); 2] = [
        ("Sec-Fetch-Site", &[("sec-fetch-site", "cross-site")]),
        ("Origin", &[("origin", "https://evil.test")]),
    ];
    for (case, extra) in cases {
        let page = sign_out(&gateway, "GET", &cookies, extra).await;
        assert_eq!(page.status, StatusCode::OK, "{case}: {}", page.text());
        assert!(page.header("set-cookie").is_none(), "{case}: signed out");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{case}"
        );
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "{case}");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("cache-control"), Some("no-store"), "{case}");
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{case}: {csp}");
        let html = page.text();
        assert!(
            html.contains("<form method=\"post\" action=\"/oauth2/sign_out?rd=%2Fafter\"><button>"),
            "{case}: {html}"
        );
        let line = gateway.access_log_for(&page.request_id()).await;
        assert_eq!(line["reason"], "sign_out_confirm", "{case}");
        assert_eq!(line["decision"], "deny", "{case}");
    }

    // The session still works after both.
    let app = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("cookie", &cookies)],
    )
    .await;
    assert_eq!(app.echo().headers_named("x-auth-request-user"), ["alice"]);
}

#[tokio::test]
async fn cross_site_sign_out_post_rejected() {
    let (gateway, _echo) = gateway_with_users().await;
    let cookies = sign_in_with_password(&gateway, "alice", PASSWORD).await;

    let cases: [(&str, Headers); 4] = [
        ("foreign Origin", &[("origin", "https://evil.test")]),
        ("app's Origin", &[("origin", "http://echo.example.test")]),
        ("same-site", &[("sec-fetch-site", "same-site")]),
        ("no Origin", &[]),
    ];
    for (case, extra) in cases {
        let response = sign_out(&gateway, "POST", &cookies, extra).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{case}");
        assert!(
            response.header("set-cookie").is_none(),
            "{case}: signed out"
        );
        assert!(
            response
                .text()
                .contains("action=\"/oauth2/sign_out?rd=%2Fafter\""),
            "{case}: no button to sign out after all"
        );
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["reason"], "sign_out_cross_site", "{case}");
    }

    let logged = gateway
        .wait_for_diagnostic("the rejected sign-out line", |line| {
            line["message"] == "Sign-out form rejected as cross-site"
        })
        .await;
    assert_eq!(logged["check"], "origin");
}
