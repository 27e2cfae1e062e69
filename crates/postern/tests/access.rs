//! Per-app access rules, the identity headers an app gets, the signed
//! `X-Postern-Assertion` checked against postern's published JWKS, and
//! `postern explain` agreeing with the running server.

mod support;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::*;

/// Test-only signing key, made with `openssl genpkey`.
const KEY_ES256: &str = include_str!("../src/identity/testdata/es256-a.pem");
const ISSUER: &str = "https://auth.example.test";
/// A second machine, which no rule names.
const OTHER_TOKEN: &str = "pst_example_other_bot_token_0002";

/// Starts a gateway with signing keys, two machines and three apps on one
/// echo upstream: `open` (no rules, also on the private gate), `bots`
/// (only build-bot) and `people` (only the group `admins`).
async fn gateway_with_rules() -> (Gateway, EchoServer) {
    let echo = EchoServer::start().await;
    let other_hash = hex::encode(Sha256::digest(OTHER_TOKEN.as_bytes()));
    let spec = GatewaySpec::new()
        .file("k1.pem", KEY_ES256)
        .identities(&format!(
            "    - name: other-bot\n      token_sha256: {other_hash}\n\
             \x20 signing:\n    keys:\n      - id: k1\n        private_key: {{file: k1.pem}}\n"
        ));
    let upstream = echo.addr;
    let vars = format!(
        "{}  open:\n    enabled: true\n    upstream: http://{upstream}\n    settings:\n\
         \x20     allow_private_gateway: true\n\
         \x20 bots:\n    enabled: true\n    upstream: http://{upstream}\n    settings:\n\
         \x20     allowed_machines: [build-bot]\n\
         \x20 people:\n    enabled: true\n    upstream: http://{upstream}\n    settings:\n\
         \x20     allowed_groups: [admins]\n      allowed_email_domains: [example.com]\n",
        spec.vars_yaml()
    );
    (spec.start_with_vars(&vars).await, echo)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Verifies an assertion with the JWKS that the running gateway publishes
/// and returns its claims.
async fn verify_assertion(gateway: &Gateway, token: &str, audience: &str) -> Value {
    let jwks = get(
        gateway.public,
        &public_host("auth"),
        "/.well-known/jwks.json",
        &[],
    )
    .await;
    assert_eq!(jwks.status, 200, "{}", jwks.text());
    let set: JwkSet = serde_json::from_slice(&jwks.body).expect("a JWKS document");
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    let kid = header.kid.expect("the assertion names its key");
    let jwk = set.find(&kid).expect("the key is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("a usable public key");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("the assertion does not verify: {e}"))
        .claims
}

#[tokio::test]
async fn access_rules_deny_with_403() {
    let (gateway, echo) = gateway_with_rules().await;

    let cases = [
        ("build-bot to bots", "bots", TOKEN, None, 200),
        ("other-bot to bots", "bots", OTHER_TOKEN, None, 403),
        ("other-bot to open", "open", OTHER_TOKEN, None, 200),
        ("machine to people", "people", TOKEN, None, 403),
        (
            "browser denied",
            "bots",
            OTHER_TOKEN,
            Some("text/html"),
            403,
        ),
    ];
    for (case, app, token, accept, status) in cases {
        let credential = bearer(token);
        let mut headers = vec![("proxy-authorization", credential.as_str())];
        if let Some(accept) = accept {
            headers.push(("accept", accept));
        }
        let response = get(gateway.public, &public_host(app), "/", &headers).await;
        assert_eq!(response.status, status, "{case}: {}", response.text());

        let line = gateway.access_log_for(&response.request_id()).await;
        if status == 403 {
            assert_eq!(line["decision"], "deny", "{case}");
            assert_eq!(line["reason"], "access_rule", "{case}");
            assert_eq!(line["app"], app, "{case}");
            let content_type = response.header("content-type").unwrap_or_default();
            if accept.is_some() {
                assert!(content_type.starts_with("text/html"), "{case}");
                assert!(response.text().contains("Access denied"), "{case}");
            } else {
                assert_eq!(content_type, "application/json", "{case}");
                assert_eq!(response.json()["error"], "forbidden", "{case}");
            }
        } else {
            assert_eq!(line["reason"], "authorized", "{case}");
        }
    }
    assert_eq!(echo.hits(), 2, "only the allowed requests reach the app");

    let denied = gateway
        .metric(
            "postern_requests_total",
            &[("app", "bots"), ("status_class", "4xx")],
        )
        .await;
    assert_eq!(denied, 2.0);
}

#[tokio::test]
async fn assertion_verifies_with_jwks() {
    let (gateway, echo) = gateway_with_rules().await;

    let credential = bearer(TOKEN);
    let response = get(
        gateway.public,
        &public_host("open"),
        "/",
        &[
            ("proxy-authorization", &credential),
            ("x-auth-request-user", "admin"),
            ("x-auth-request-email", "root@example.com"),
            ("x-auth-request-groups", "admins"),
            ("x-postern-assertion", "forged"),
            ("X_Auth_Request_Groups", "admins"),
        ],
    )
    .await;
    let seen = response.echo();
    assert_eq!(seen.header("x-auth-request-user").as_deref(), Some(MACHINE));
    assert_eq!(seen.header("x-auth-request-email"), None);
    assert_eq!(seen.header("x-auth-request-groups"), None);
    assert!(seen.headers_named("x_auth_request_groups").is_empty());
    let assertions = seen.headers_named("x-postern-assertion");
    assert_eq!(assertions.len(), 1, "exactly postern's own assertion");

    let claims = verify_assertion(&gateway, &assertions[0], "https://open.example.test").await;
    assert_eq!(claims["sub"], MACHINE);
    assert_eq!(claims["gate"], "public");
    assert_eq!(claims["kind"], "machine");
    assert_eq!(claims["auth_method"], "machine_token");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 60);

    // A second request within the reuse window gets the same signed value.
    let again = get(
        gateway.public,
        &public_host("open"),
        "/",
        &[("proxy-authorization", &credential)],
    )
    .await;
    assert_eq!(
        again.echo().header("x-postern-assertion").as_deref(),
        Some(assertions[0].as_str())
    );

    // The assertion for one app does not verify for another.
    let other = get(
        gateway.public,
        &public_host("bots"),
        "/",
        &[("proxy-authorization", &credential)],
    )
    .await;
    let bots_assertion = other.echo().header("x-postern-assertion").unwrap();
    assert_ne!(bots_assertion, assertions[0]);
    let set: JwkSet = serde_json::from_slice(
        &get(
            gateway.public,
            &public_host("auth"),
            "/.well-known/jwks.json",
            &[],
        )
        .await
        .body,
    )
    .unwrap();
    let key = DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://open.example.test"]);
    assert!(jsonwebtoken::decode::<Value>(&bots_assertion, &key, &validation).is_err());

    // On the private gate the assertion names the network admission.
    let private = get_from(
        VPC_PEER,
        gateway.private_gate(),
        &private_host("open"),
        "/",
        &[("x-postern-assertion", "forged")],
    )
    .await;
    let private_assertion = private.echo().header("x-postern-assertion").unwrap();
    let claims = verify_assertion(&gateway, &private_assertion, "https://open.example.test").await;
    assert_eq!(claims["gate"], "private");
    assert_eq!(claims["admission"], "vpc");
    assert_eq!(claims["client_addr"], VPC_PEER.to_string());
    assert_eq!(echo.hits(), 4);
}

/// One request of the agreement table.
struct Row {
    case: &'static str,
    gate: &'static str,
    app: &'static str,
    headers: Vec<(&'static str, String)>,
    source: std::net::IpAddr,
}

#[tokio::test]
async fn explain_matches_server() {
    let (gateway, _echo) = gateway_with_rules().await;
    let row = |case, gate, app, headers: Vec<(&'static str, String)>, source| Row {
        case,
        gate,
        app,
        headers,
        source,
    };
    let token = |t: &str| vec![("proxy-authorization", bearer(t))];
    let rows = [
        row("allowed machine", "public", "bots", token(TOKEN), LOCALHOST),
        row(
            "denied machine",
            "public",
            "bots",
            token(OTHER_TOKEN),
            LOCALHOST,
        ),
        row("no rules", "public", "open", token(OTHER_TOKEN), LOCALHOST),
        row(
            "group rule, machine",
            "public",
            "people",
            token(TOKEN),
            LOCALHOST,
        ),
        row("no credential", "public", "open", vec![], LOCALHOST),
        row(
            "wrong token",
            "public",
            "open",
            token("pst_wrong"),
            LOCALHOST,
        ),
        row("unknown app", "public", "nope", token(TOKEN), LOCALHOST),
        row(
            "app key in Authorization",
            "public",
            "open",
            vec![("authorization", bearer("sk-app-key"))],
            LOCALHOST,
        ),
        row("private, VPC peer", "private", "open", vec![], VPC_PEER),
        row("private, not opted in", "private", "bots", vec![], VPC_PEER),
    ];

    for row in &rows {
        let host = match row.gate {
            "public" => public_host(row.app),
            _ => private_host(row.app),
        };
        let gate_addr = match row.gate {
            "public" => gateway.public,
            _ => gateway.private_gate(),
        };
        let headers: Vec<(&str, &str)> =
            row.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = get_from(row.source, gate_addr, &host, "/", &headers).await;
        let line = gateway.access_log_for(&response.request_id()).await;
        let server_reason = line["reason"].as_str().unwrap().to_owned();

        let vars = gateway.vars_path();
        let peer = row.source.to_string();
        let mut args = vec![
            "explain",
            "--config",
            vars.to_str().unwrap(),
            "--gate",
            row.gate,
            "--host",
            &host,
            "--peer",
            &peer,
        ];
        let header_args: Vec<String> = row
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        for header in &header_args {
            args.push("-H");
            args.push(header);
        }
        let output = postern(&args);
        let printed = text(&output.stdout);
        assert!(
            output.status.success(),
            "{}: {}",
            row.case,
            text(&output.stderr)
        );
        let outcome = printed
            .lines()
            .find_map(|l| l.strip_prefix("outcome: "))
            .unwrap_or_else(|| panic!("{}: no outcome line in {printed}", row.case));
        let words: Vec<&str> = outcome.split(' ').collect();

        let case = row.case;
        if response.status == 200 {
            assert_eq!(words[0], "allow", "{case}: {printed}");
            assert_eq!(words[1], server_reason, "{case}: {printed}");
        } else {
            assert_eq!(words[0], "deny", "{case}: {printed}");
            assert_eq!(words[1], response.status.as_str(), "{case}: {printed}");
            assert_eq!(words[2], server_reason, "{case}: {printed}");
        }
        for step in ["admission:", "host:", "route:", "credential:"] {
            let shown = printed.lines().any(|l| l.starts_with(step));
            let skipped = response.status == 400 && step != "admission:";
            assert!(shown || skipped, "{case}: no {step} line in {printed}");
        }
    }

    // A described identity: a person in the allowed group.
    let vars = gateway.vars_path();
    let output = postern(&[
        "explain",
        "--config",
        vars.to_str().unwrap(),
        "--gate",
        "public",
        "--host",
        &public_host("people"),
        "--identity",
        "alice",
        "--email",
        "alice@example.org",
        "--group",
        "admins",
    ]);
    let printed = text(&output.stdout);
    assert!(
        printed.contains("access rule: allowed: allowed_groups contains \"admins\""),
        "{printed}"
    );
    assert!(printed.contains("outcome: allow authorized"), "{printed}");
    assert!(
        printed.contains(
            "assertion: X-Postern-Assertion signed by postern, aud https://people.example.test"
        ),
        "{printed}"
    );
}
