//! Decoding of `identities`: issuers, signing keys, clients, and the
//! sources that are not supported yet.

use std::path::Path;
use std::time::Duration;

use super::super::identity::{Algorithm, SecretSource};
use super::*;

const KEY_A: &str = include_str!("../../identity/testdata/es256-a.pem");
const KEY_RSA: &str = include_str!("../../identity/testdata/rs256.pem");

/// A vars file whose `identities` section is `identities` (indented by two).
fn vars(identities: &str) -> String {
    format!(
        "cluster: {{hostname: example.test, region: us-east-1}}\n\
         gateways:\n  public: {{listen: 127.0.0.1:18080}}\n\
         identities:\n{identities}\
         app_config: {{}}\n"
    )
}

/// Writes a `private_key` entry for an item of `signing.keys`, with the PEM
/// key as a block scalar.
fn inline_key(pem: &str) -> String {
    let body: String = pem.lines().map(|l| format!("            {l}\n")).collect();
    format!("        private_key:\n          insecure_inline: |\n{body}")
}

fn problems_of(text: &str) -> Vec<Problem> {
    match Config::from_text(Path::new("vars.yaml"), text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(p) => p.0,
    }
}

#[test]
fn issuers_signing_and_clients_decode() {
    let text = vars(&format!(
        "  jwt_issuers:
    - name: dex
      issuer: http://127.0.0.1:5556/dex
      audiences: [postern]
  signing:
    keys:
      - id: k1
{}  clients:
    - id: deployer
      secret_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f
",
        inline_key(KEY_A)
    ));
    let config = Config::from_text(Path::new("vars.yaml"), &text).unwrap();
    let issuer = &config.identity.issuers[0];
    assert_eq!(issuer.issuer, "http://127.0.0.1:5556/dex");
    assert_eq!(issuer.algorithms, [Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(issuer.leeway, Duration::from_secs(30));
    assert_eq!(issuer.identity_claim, "sub");
    let signing = config.identity.signing.as_ref().unwrap();
    assert_eq!(signing.issuer, "https://auth.example.test");
    assert_eq!(signing.audience, "example.test");
    assert!(matches!(
        signing.keys[0].source,
        SecretSource::InsecureInline(_)
    ));
    assert!(!format!("{:?}", signing.keys[0].source).contains("PRIVATE"));
    assert_eq!(config.identity.clients[0].id, "deployer");
}

#[test]
fn unsafe_issuer_settings_rejected() {
    let text = vars(
        "  jwt_issuers:
    - name: a
      issuer: http://idp.example.com
      audiences: []
      algorithms: [none, HS256, ES512]
      leeway: 10m
",
    );
    let problems = problems_of(&text);
    let found: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        found,
        [
            "identities.jwt_issuers[0].issuer",
            "identities.jwt_issuers[0].audiences",
            "identities.jwt_issuers[0].algorithms[0]",
            "identities.jwt_issuers[0].algorithms[1]",
            "identities.jwt_issuers[0].algorithms[2]",
            "identities.jwt_issuers[0].leeway",
        ]
    );
    assert!(problems[0].message.contains("loopback"), "{}", problems[0]);
    assert!(
        problems[2].message.contains("never accepted"),
        "{}",
        problems[2]
    );
    assert!(problems[3].message.contains("HMAC"), "{}", problems[3]);
    assert!(
        problems[5].message.contains("at most 5m"),
        "{}",
        problems[5]
    );
}

#[test]
fn later_sources_not_supported_yet() {
    let text = vars("  users: []\n");
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1);
    for (problem, key) in problems.iter().zip(["users"]) {
        assert_eq!(problem.path, format!("identities.{key}"));
        assert!(problem.message.contains("not supported yet"), "{problem}");
    }
}

#[test]
fn signing_key_problems() {
    let rsa = vars(&format!(
        "  signing:\n    keys:\n      - id: k1\n{}",
        inline_key(KEY_RSA)
    ));
    let problems = problems_of(&rsa);
    assert_eq!(problems[0].path, "identities.signing.keys[0].private_key");
    assert!(problems[0].message.contains("P-256"), "{}", problems[0]);
    assert!(!problems[0].message.contains("PRIVATE KEY"));

    let missing = vars(
        "  signing:\n    keys:\n      - id: k1\n        private_key: {env: POSTERN_TEST_UNSET_KEY}\n",
    );
    let problems = problems_of(&missing);
    assert!(
        problems[0].message.contains("POSTERN_TEST_UNSET_KEY"),
        "{}",
        problems[0]
    );

    let two =
        vars("  signing:\n    keys:\n      - id: k1\n        private_key: {file: a.pem, env: B}\n");
    assert!(problems_of(&two)[0].message.contains("exactly one"));

    let unknown_active = vars(&format!(
        "  signing:\n    active_key: k9\n    keys:\n      - id: k1\n{}",
        inline_key(KEY_A)
    ));
    assert_eq!(
        problems_of(&unknown_active)[0].path,
        "identities.signing.active_key"
    );
}

#[test]
fn clients_need_signing_and_own_names() {
    let text = vars(
        "  machines:
    - {name: bot, token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f}
  clients:
    - {id: bot, secret_sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}
",
    );
    let problems = problems_of(&text);
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("needs identities.signing")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("also a machine name")),
        "{messages:?}"
    );
}

#[test]
fn auth_app_reserved_with_signing() {
    let text = format!(
        "cluster: {{hostname: example.test, region: us-east-1}}\n\
         gateways:\n  public: {{listen: 127.0.0.1:18080}}\n\
         identities:\n  signing:\n    keys:\n      - id: k1\n{}\
         app_config:\n  auth:\n    enabled: true\n    upstream: http://127.0.0.1:3000\n",
        inline_key(KEY_A)
    );
    let problems = problems_of(&text);
    assert_eq!(problems[0].path, "app_config.auth");
    assert!(problems[0].message.contains("reserved"));
}
