//! postern as an issuer: its discovery document and JWKS on
//! `auth.<cluster hostname>`, the client-credentials token endpoint, and
//! its tokens accepted as bearers on the public gate.

mod support;

use serde_json::Value;
use support::*;

/// Test-only signing keys, made with `openssl genpkey`.
const KEY_ES256: &str = include_str!("../src/identity/testdata/es256-a.pem");
const KEY_ED25519: &str = include_str!("../src/identity/testdata/ed25519.pem");

const ISSUER: &str = "https://auth.example.test";

/// A client made by `postern client new`: its id, secret and vars entry.
struct NewClient {
    id: String,
    secret: String,
    entry: String,
}

fn new_client(id: &str) -> NewClient {
    let output = postern(&["client", "new", id]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    let secret = printed
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("a client_secret line")
        .to_owned();
    // The lines below `clients:` are the entry to paste.
    let entry: String = printed
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("clients:"))
        .map(|l| format!("{l}\n"))
        .collect();
    NewClient {
        id: id.to_owned(),
        secret,
        entry,
    }
}

/// Starts a gateway with two signing keys (the second active), one
/// client, and the app `echo`.
async fn gateway_as_issuer(client: &NewClient) -> (Gateway, EchoServer) {
    let echo = EchoServer::start().await;
    let identities = format!(
        "  signing:\n    active_key: k2\n    keys:\n\
         \x20     - id: k1\n        private_key: {{file: k1.pem}}\n\
         \x20     - id: k2\n        private_key: {{file: k2.pem}}\n{}",
        client.entry
    );
    let gateway = GatewaySpec::new()
        .app(AppSpec::new("echo", echo.addr))
        .file("k1.pem", KEY_ED25519)
        .file("k2.pem", KEY_ES256)
        .identities(&identities)
        .start()
        .await;
    (gateway, echo)
}

async fn token_request(gateway: &Gateway, basic: Option<(&str, &str)>, body: &str) -> HttpResponse {
    post_form(
        gateway.public,
        &public_host("auth"),
        "/oauth2/token",
        basic,
        body,
    )
    .await
}

#[tokio::test]
async fn discovery_and_jwks_ungated() {
    let client = new_client("deployer");
    let (gateway, echo) = gateway_as_issuer(&client).await;

    let discovery = get(
        gateway.public,
        &public_host("auth"),
        "/.well-known/openid-configuration",
        &[],
    )
    .await;
    assert_eq!(discovery.status, 200, "{}", discovery.text());
    let document = discovery.json();
    assert_eq!(document["issuer"], ISSUER);
    assert_eq!(
        document["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert_eq!(document["token_endpoint"], format!("{ISSUER}/oauth2/token"));
    assert_eq!(
        document["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );

    let jwks = get(
        gateway.public,
        &public_host("auth"),
        "/.well-known/jwks.json",
        &[],
    )
    .await;
    assert_eq!(jwks.status, 200);
    let keys = jwks.json()["keys"].as_array().unwrap().clone();
    let described: Vec<(String, String)> = keys
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().into(),
                k["alg"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [("k1".into(), "EdDSA".into()), ("k2".into(), "ES256".into())]
    );
    for key in &keys {
        assert!(
            key.get("d").is_none(),
            "the JWKS leaks a private key: {key}"
        );
    }

    let unknown = get(gateway.public, &public_host("auth"), "/admin", &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn client_credentials_token_accepted() {
    let client = new_client("deployer");
    let (gateway, echo) = gateway_as_issuer(&client).await;

    let basic = token_request(
        &gateway,
        Some((&client.id, &client.secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(basic.status, 200, "{}", basic.text());
    assert_eq!(basic.header("cache-control"), Some("no-store"));
    let body = basic.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let token = body["access_token"].as_str().unwrap().to_owned();

    // The token verifies against the published JWKS with an independent
    // verifier, and carries the client as its subject.
    let jwks = get(
        gateway.public,
        &public_host("auth"),
        "/.well-known/jwks.json",
        &[],
    )
    .await;
    let claims = verify_with_jwks(&token, &jwks.json());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "deployer");
    assert_eq!(claims["aud"], "example.test");

    let in_body = token_request(
        &gateway,
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            client.id, client.secret
        ),
    )
    .await;
    assert_eq!(in_body.status, 200, "{}", in_body.text());

    let response = get(
        gateway.public,
        &public_host("echo"),
        "/",
        &[
            ("proxy-authorization", &format!("Bearer {token}")),
            ("x-auth-request-user", "root"),
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.echo().headers_named("x-auth-request-user"),
        ["deployer"]
    );
    let line = gateway.access_log_for(&response.request_id()).await;
    assert_eq!(line["auth_method"], "jwt:postern");
    assert_eq!(line["identity"], "deployer");
    assert_eq!(echo.hits(), 1);

    for text in [gateway.stdout_text(), gateway.stderr_text()] {
        assert!(!text.contains(&token), "the token was logged");
        assert!(
            !text.contains(&client.secret),
            "the client secret was logged"
        );
    }
}

/// A token request case: name, Basic credentials, body, expected status
/// and `error`.
type TokenCase<'a> = (&'a str, Option<(&'a str, &'a str)>, String, u16, &'a str);

#[tokio::test]
async fn wrong_client_credentials_rejected() {
    let client = new_client("deployer");
    let (gateway, _echo) = gateway_as_issuer(&client).await;
    let grant = "grant_type=client_credentials";

    let cases: [TokenCase<'_>; 5] = [
        (
            "wrong secret",
            Some(("deployer", "pcs_wrong")),
            grant.into(),
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            Some(("intruder", &client.secret)),
            grant.into(),
            401,
            "invalid_client",
        ),
        (
            "no client authentication",
            None,
            grant.into(),
            401,
            "invalid_client",
        ),
        (
            "other grant type",
            Some(("deployer", &client.secret)),
            "grant_type=password&username=a&password=b".into(),
            400,
            "unsupported_grant_type",
        ),
        (
            "credentials twice",
            Some(("deployer", &client.secret)),
            format!("{grant}&client_id=deployer&client_secret={}", client.secret),
            400,
            "invalid_request",
        ),
    ];
    for (case, basic, body, status, error) in cases {
        let response = token_request(&gateway, basic, &body).await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{case}: {}",
            response.text()
        );
        assert_eq!(response.json()["error"], error, "{case}");
        assert!(response.json().get("access_token").is_none(), "{case}");
        if status == 401 {
            assert_eq!(
                response.header("www-authenticate"),
                Some("Basic realm=\"postern\""),
                "{case}"
            );
        }
    }

    let get_token = get(gateway.public, &public_host("auth"), "/oauth2/token", &[]).await;
    assert_eq!(get_token.status, 405);
}

/// Verifies `token` with the key of its `kid` from `jwks`, and returns its
/// claims.
fn verify_with_jwks(token: &str, jwks: &Value) -> Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("k2"), "the active key signs");
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["example.test"]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}
