//! Bearer JWTs on the public gate, against a real OpenID provider (npm
//! `oidc-provider`, see tests/idp): valid, expired, not yet valid, wrong
//! audience or issuer, `alg: none`, HMAC signed with the public key,
//! tampered, key rotation at the provider, and readiness before the first
//! JWKS fetch.

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::*;

/// Starts an IdP and a gateway that trusts it, with one app, `echo`.
/// `settings` are extra keys of the issuer entry, indented by six spaces.
async fn gateway_trusting_idp(settings: &str) -> (Idp, Gateway, EchoServer) {
    let idp = Idp::start().await;
    let echo = EchoServer::start().await;
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .identities(&issuer_entry("idp", &idp.issuer, settings))
        .start()
        .await;
    (idp, gateway, echo)
}

fn issuer_entry(name: &str, issuer: &str, settings: &str) -> String {
    format!(
        "  jwt_issuers:\n    - name: {name}\n      issuer: {issuer}\n      audiences: [{IDP_AUDIENCE}, {IDP_SHORT_AUDIENCE}]\n{settings}"
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Asserts a 401 with `error="invalid_token"` and a JSON body.
fn assert_invalid_token(response: &HttpResponse, case: &str) {
    assert_eq!(response.status, 401, "{case}: {}", response.text());
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=") && challenge.contains("error=\"invalid_token\""),
        "{case}: WWW-Authenticate {challenge:?}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{case}"
    );
    assert_eq!(response.json()["error"], "unauthorized", "{case}");
}

#[tokio::test]
async fn idp_token_reaches_app() {
    let (idp, gateway, echo) = gateway_trusting_idp("").await;
    let token = idp.client_credentials(IDP_AUDIENCE).await;

    for header in ["proxy-authorization", "authorization"] {
        let response = get(
            gateway.public,
            &public_host("echo"),
            "/",
            &[
                (header, &bearer(&token)),
                ("x-auth-request-user", "admin"),
                ("x-auth-request-email", "admin@example.test"),
            ],
        )
        .await;
        assert_eq!(response.status, 200, "{header}: {}", response.text());

        let seen = response.echo();
        assert_eq!(
            seen.headers_named("x-auth-request-user"),
            ["svc"],
            "{header}"
        );
        assert_eq!(seen.header("x-auth-request-email"), None, "{header}");
        assert_eq!(seen.header(header), None, "{header} reached the app");

        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["identity"], "svc", "{header}");
        assert_eq!(line["auth_method"], "jwt:idp", "{header}");
    }
    assert_eq!(echo.hits(), 2);
    assert!(
        !gateway.stdout_text().contains(&token) && !gateway.stderr_text().contains(&token),
        "the token was logged"
    );
}

#[tokio::test]
async fn invalid_tokens_never_reach_app() {
    let (idp, gateway, echo) = gateway_trusting_idp("      leeway: 0s\n").await;
    let other_idp = Idp::start().await;
    let now = now();
    let claims = |extra: Value| {
        let mut c = json!({
            "iss": idp.issuer, "aud": IDP_AUDIENCE, "sub": "svc",
            "iat": now, "exp": now + 300,
        });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };

    let valid = idp.client_credentials(IDP_AUDIENCE).await;
    let (head, signature) = valid.rsplit_once('.').unwrap();
    let (header, payload) = head.split_once('.').unwrap();

    // alg none: the real claims, no signature.
    let none_header = b64(br#"{"alg":"none","typ":"at+jwt"}"#);
    let alg_none = format!("{none_header}.{payload}.");

    // HS256 keyed with the provider's public RSA modulus, as published.
    let jwks = get(idp.addr, "127.0.0.1", "/jwks", &[]).await.json();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap();
    let hs_header = b64(json!({ "alg": "HS256", "kid": rsa["kid"] })
        .to_string()
        .as_bytes());
    let hs_input = format!("{hs_header}.{payload}");
    let hs_key =
        jsonwebtoken::EncodingKey::from_secret(rsa["n"].as_str().unwrap().as_bytes()).unwrap();
    let hs_signature =
        jsonwebtoken::crypto::sign(hs_input.as_bytes(), &hs_key, jsonwebtoken::Algorithm::HS256)
            .unwrap();
    let hmac_confusion = format!("{hs_input}.{hs_signature}");

    // Flip one bit of the signature; swap in a payload that names another
    // subject.
    let mut signature_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    signature_bytes[10] ^= 0x01;
    let flipped = format!("{head}.{}", b64(&signature_bytes));
    let mut forged_claims = b64_json(payload);
    forged_claims["sub"] = json!("admin");
    let forged = format!(
        "{header}.{}.{signature}",
        b64(forged_claims.to_string().as_bytes())
    );

    let short = idp.client_credentials(IDP_SHORT_AUDIENCE).await;
    let cases = [
        ("alg none", alg_none, "jwt_malformed"),
        (
            "HMAC with the public key",
            hmac_confusion,
            "jwt_algorithm_not_allowed",
        ),
        ("flipped signature bit", flipped, "jwt_bad_signature"),
        ("payload swapped", forged, "jwt_bad_signature"),
        (
            "wrong audience",
            idp.client_credentials("urn:postern:other").await,
            "jwt_wrong_audience",
        ),
        (
            "audience missing",
            idp.sign(
                json!({}),
                json!({ "iss": idp.issuer, "sub": "svc", "exp": now + 300 }),
            )
            .await,
            "jwt_wrong_audience",
        ),
        (
            "not yet valid",
            idp.sign(json!({}), claims(json!({ "nbf": now + 600 })))
                .await,
            "jwt_not_yet_valid",
        ),
        (
            "issued in the future",
            idp.sign(json!({}), claims(json!({ "iat": now + 600 })))
                .await,
            "jwt_issued_in_future",
        ),
        (
            "expired long ago",
            idp.sign(
                json!({ "alg": "ES256" }),
                claims(json!({ "exp": now - 3600 })),
            )
            .await,
            "jwt_expired",
        ),
        (
            "untrusted issuer",
            other_idp.client_credentials(IDP_AUDIENCE).await,
            "credential_invalid",
        ),
        (
            "trusted issuer's key, other iss",
            idp.sign(json!({}), claims(json!({ "iss": other_idp.issuer })))
                .await,
            "credential_invalid",
        ),
    ];
    // The one-second token from the provider has lapsed by now.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let cases = cases
        .into_iter()
        .chain([("expired token from the grant", short, "jwt_expired")]);

    for (case, token, reason) in cases {
        let response = get(
            gateway.public,
            &public_host("echo"),
            "/",
            &[("proxy-authorization", &bearer(&token))],
        )
        .await;
        assert_invalid_token(&response, case);
        let line = gateway.access_log_for(&response.request_id()).await;
        assert_eq!(line["reason"], reason, "{case}");
        assert_eq!(line["decision"], "deny", "{case}");
        assert!(line["identity"].is_null(), "{case}");
    }
    assert_eq!(echo.hits(), 0);

    // The same real token still passes, so the cases above failed on
    // their own defects.
    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[("proxy-authorization", &bearer(&valid))],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn key_rotation_needs_no_restart() {
    let (idp, gateway, echo) = gateway_trusting_idp("      jwks_min_refetch_interval: 2s\n").await;
    let send = |token: String| {
        let gate = gateway.public;
        async move {
            get(
                gate,
                &public_host("echo"),
                "/",
                &[("proxy-authorization", &bearer(&token))],
            )
            .await
        }
    };
    let old = idp.client_credentials(IDP_AUDIENCE).await;
    assert_eq!(send(old.clone()).await.status, 200);
    let fetched_at_start = idp.jwks_requests().await;
    assert_eq!(fetched_at_start, 1);

    // The provider drops its keys for new ones. Once the refetch interval
    // has passed, a token with the new kid makes the gateway refetch.
    idp.rotate(false).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let new = idp.client_credentials(IDP_AUDIENCE).await;
    let new_kid = b64_json(new.split('.').next().unwrap())["kid"].clone();
    let old_kid = b64_json(old.split('.').next().unwrap())["kid"].clone();
    assert_ne!(new_kid, old_kid);
    let response = send(new.clone()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(idp.jwks_requests().await, fetched_at_start + 1);

    // The old key is gone from the JWKS, so the old token, accepted
    // before, is rejected now.
    let response = send(old).await;
    assert_invalid_token(&response, "token of a removed key");

    // Tokens with unknown kids cause at most one fetch per interval.
    let before = idp.jwks_requests().await;
    for i in 0..20 {
        let token = idp
            .sign(
                json!({ "kid": format!("unknown-{i}") }),
                json!({
                    "iss": idp.issuer, "aud": IDP_AUDIENCE, "sub": "svc", "exp": now() + 300,
                }),
            )
            .await;
        assert_invalid_token(&send(token).await, "unknown kid");
    }
    let fetches = idp.jwks_requests().await - before;
    assert!(fetches <= 1, "{fetches} JWKS fetches for 20 unknown kids");
    assert_eq!(echo.hits(), 2);
}

#[tokio::test]
async fn not_ready_until_jwks_fetched() {
    // Reserve a port for the provider, which starts only later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = GatewaySpec::new().identities(&issuer_entry(
        "late",
        &format!("http://127.0.0.1:{port}"),
        "",
    ));
    let gateway = spec.start_unready(&spec.vars_yaml()).await;

    for _ in 0..3 {
        let ready = admin_get(gateway.admin, "/readyz").await.unwrap();
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert_eq!(ready.json()["error"], "jwks_not_loaded");
        assert!(ready.text().contains("late"), "{}", ready.text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let _idp = Idp::start_on(port).await;
    gateway.wait_ready().await;
}
