//! Decoding of `identities.sessions` and `identities.providers`.

use std::path::Path;
use std::time::Duration;

use super::super::identity::SecretSource;
use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef-key";

/// A vars file with this `identities` section and the given `app_config`.
fn vars(identities: &str, apps: &str) -> String {
    format!(
        "cluster: {{hostname: example.test, region: us-east-1}}\n\
         gateways:\n  public: {{listen: 127.0.0.1:18080}}\n\
         identities:\n{identities}\
         app_config: {apps}\n"
    )
}

fn provider(extra: &str) -> String {
    format!(
        "  providers:\n    - name: dex\n      issuer: https://dex.example.com\n\
         \x20     client_id: postern\n      client_secret: {{insecure_inline: s3cret}}\n{extra}"
    )
}

fn sessions() -> String {
    format!("  sessions:\n    keys:\n      - insecure_inline: {KEY}\n")
}

fn problems_of(text: &str) -> Vec<Problem> {
    match Config::from_text(Path::new("vars.yaml"), text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(p) => p.0,
    }
}

#[test]
fn sessions_and_providers_decode_with_defaults() {
    let text = vars(&format!("{}{}", sessions(), provider("")), "{}");
    let config = Config::from_text(Path::new("vars.yaml"), &text).unwrap();
    let sessions = config.identity.sessions.as_ref().unwrap();
    assert_eq!(
        sessions.keys,
        [SecretSource::InsecureInline(KEY.to_owned())]
    );
    assert_eq!(sessions.lifetime, Duration::from_secs(12 * 3600));
    assert_eq!(sessions.cookie_name, "_postern");
    assert_eq!(sessions.domain, "example.test");
    assert!(!sessions.secure, "the public gate has no TLS");
    let dex = &config.identity.providers[0];
    assert_eq!(dex.scopes, ["openid", "email", "profile"]);
    assert_eq!(
        (
            dex.user_claim.as_str(),
            dex.email_claim.as_str(),
            dex.groups_claim.as_str()
        ),
        ("preferred_username", "email", "groups")
    );
}

#[test]
fn provider_settings_decode() {
    let extra = "      scopes: [openid, groups]\n      claims: {user: email, groups: roles}\n";
    let text = vars(
        &format!(
            "{}    lifetime: 1h\n    cookie_name: _gate\n{}",
            sessions(),
            provider(extra)
        ),
        "{}",
    );
    let config = Config::from_text(Path::new("vars.yaml"), &text).unwrap();
    let sessions = config.identity.sessions.as_ref().unwrap();
    assert_eq!(sessions.lifetime, Duration::from_secs(3600));
    assert_eq!(sessions.cookie_name, "_gate");
    let dex = &config.identity.providers[0];
    assert_eq!(dex.scopes, ["openid", "groups"]);
    assert_eq!(dex.user_claim, "email");
    assert_eq!(dex.groups_claim, "roles");
}

#[test]
fn providers_need_sessions() {
    let problems = problems_of(&vars(&provider(""), "{}"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "identities.providers");
    assert!(
        problems[0].message.contains("needs identities.sessions"),
        "{}",
        problems[0]
    );
}

#[test]
fn bad_session_and_provider_values() {
    let text = vars(
        "  sessions:\n    keys:\n      - insecure_inline: short\n    cookie_name: \"a b\"\n\
         \x20 providers:\n    - name: dex\n      issuer: http://dex.example.com\n\
         \x20     client_id: postern\n      client_secret: {env: POSTERN_TEST_UNSET_SECRET}\n\
         \x20     scopes: [email]\n",
        "{}",
    );
    let problems = problems_of(&text);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "identities.sessions.keys[0]",
            "identities.sessions.cookie_name",
            "identities.providers[0].issuer",
            "identities.providers[0].client_secret",
            "identities.providers[0].scopes",
        ]
    );
    assert!(
        problems[0].message.contains("at least 32"),
        "{}",
        problems[0]
    );
    assert!(problems[0].line > 0);
    assert!(problems[2].message.contains("loopback"), "{}", problems[2]);
    assert!(
        problems[3].message.contains("POSTERN_TEST_UNSET_SECRET"),
        "{}",
        problems[3]
    );
    assert!(problems[4].message.contains("openid"), "{}", problems[4]);
}

#[test]
fn auth_app_is_reserved_with_providers() {
    let apps = "\n  auth: {enabled: true, upstream: \"http://127.0.0.1:9000\"}";
    let problems = problems_of(&vars(&format!("{}{}", sessions(), provider("")), apps));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "app_config.auth");
    assert!(problems[0].message.contains("reserved"), "{}", problems[0]);
}
