//! Decoding of `identities`: issuers, signing keys, clients and users.

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

/// A valid argon2id hash of `password`, made the way `postern passwd` does.
fn user_hash(password: &str) -> String {
    crate::identity::password::hash(password).unwrap()
}

#[test]
fn users_need_sessions() {
    let text = vars(&format!(
        "  users:\n    - name: alice\n      email: alice@example.test\n      groups: [admins]\n      password_argon2id: \"{}\"\n",
        user_hash("alice password")
    ));
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "identities.users");
    assert!(
        problems[0].message.contains("needs identities.sessions"),
        "{}",
        problems[0]
    );
}

#[test]
fn user_problems_name_line_and_key() {
    let argon2i = user_hash("a good password").replacen("$argon2id$", "$argon2i$", 1);
    let text = vars(&format!(
        "  machines:
    - name: build-bot
      token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f
  users:
    - name: alice
      email: Alice@example.test
      password_argon2id: \"{argon2i}\"
    - name: carol
      email: not-an-email
      groups: [\"with space\", \"a,b\"]
      password_argon2id: \"$2b$12$abcdefghijklmnopqrstuv\"
"
    ));
    let problems = problems_of(&text);
    let found: Vec<(u64, &str, &str)> = problems
        .iter()
        .map(|p| (p.line, p.path.as_str(), p.message.as_str()))
        .collect();
    let expect = |line: u64, path: &str, words: &str| {
        assert!(
            found
                .iter()
                .any(|(l, p, m)| *l == line && *p == path && m.contains(words)),
            "no problem at line {line} {path} containing {words:?} in {found:#?}"
        );
    };
    expect(
        11,
        "identities.users[0].password_argon2id",
        "argon2i, not argon2id",
    );
    expect(13, "identities.users[1].email", "invalid email");
    expect(14, "identities.users[1].groups[0]", "invalid group");
    expect(14, "identities.users[1].groups[1]", "invalid group");
    expect(
        15,
        "identities.users[1].password_argon2id",
        "invalid password hash",
    );
}

#[test]
fn user_duplicates_rejected() {
    let good = user_hash("a good password");
    let text = vars(&format!(
        "  machines:
    - name: build-bot
      token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f
  users:
    - name: alice
      email: Alice@example.test
      password_argon2id: \"{good}\"
    - name: bob
      email: alice@EXAMPLE.test
      password_argon2id: \"{good}\"
    - name: bob
      password_argon2id: \"{good}\"
"
    ));
    let problems = problems_of(&text);
    let at = |path: &str| {
        problems
            .iter()
            .find(|p| p.path == path)
            .unwrap_or_else(|| panic!("no problem at {path} in {problems:#?}"))
    };
    assert!(at("identities.users[1]").message.contains("same email"));
    assert_eq!(at("identities.users[1]").line, 12);
    assert!(
        at("identities.users[2]")
            .message
            .contains("duplicate user name")
    );

    let clash = vars(&format!(
        "  machines:
    - name: build-bot
      token_sha256: ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f
  users:
    - name: build-bot
      password_argon2id: \"{good}\"
"
    ));
    let problems = problems_of(&clash);
    let clash = problems
        .iter()
        .find(|p| p.path == "identities.users[0]")
        .unwrap_or_else(|| panic!("{problems:#?}"));
    assert!(clash.message.contains("also a machine name"), "{clash}");
}
