use std::time::Duration;

use http::HeaderValue;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};

use super::*;
use crate::config::identity::{SecretSource, Signing, SigningKey, TrustedIssuer};

const KEY: &str = include_str!("testdata/es256-a.pem");

fn signing() -> Signing {
    Signing {
        issuer: "https://auth.example.test".into(),
        keys: vec![SigningKey {
            id: "k1".into(),
            source: SecretSource::InsecureInline(KEY.into()),
        }],
        active: 0,
        audience: "example.test".into(),
        token_lifetime: Duration::from_secs(300),
    }
}

fn identities() -> Identities {
    let config = IdentityConfig {
        clients: Vec::new(),
        issuers: Vec::new(),
        signing: Some(signing()),
        ..IdentityConfig::default()
    };
    Identities::new(&config, "example.test").unwrap()
}

fn headers(name: http::HeaderName, token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        name,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

#[tokio::test]
async fn own_token_authenticates_and_is_cached() {
    let identities = identities();
    let signer = &identities.local.as_ref().unwrap().signer;
    let token = signer.issue("deployer", now()).unwrap();
    let tokens = MachineTokens::new(&[]);

    for round in 0..2 {
        let mut h = headers(PROXY_AUTHORIZATION, &token);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-app"));
        let identity = authenticate(&mut h, &tokens, &identities).await.unwrap();
        assert_eq!(&*identity.name, "deployer", "round {round}");
        assert_eq!(&*identity.method, "jwt:postern", "round {round}");
        assert!(!h.contains_key(PROXY_AUTHORIZATION), "round {round}");
        assert_eq!(h[AUTHORIZATION], "Bearer sk-app", "round {round}");
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    assert!(identities.verified.get(&digest).is_some());
}

#[tokio::test]
async fn expired_own_token_rejected() {
    let identities = identities();
    let signer = &identities.local.as_ref().unwrap().signer;
    let token = signer.issue("deployer", now() - 3600).unwrap();
    let mut h = headers(PROXY_AUTHORIZATION, &token);
    let result = authenticate(&mut h, &MachineTokens::new(&[]), &identities).await;
    assert_eq!(result, Err(AuthError::Jwt(Rejection::Expired)));
    assert!(h.contains_key(PROXY_AUTHORIZATION));
}

#[tokio::test]
async fn untrusted_jwt_in_authorization_is_app_key() {
    let identities = identities();
    // A JWT from an untrusted issuer, such as the app's own.
    let foreign = format!(
        "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"iss":"https://app.example.test"}"#
        )
    );
    let mut h = headers(AUTHORIZATION, &foreign);
    let result = authenticate(&mut h, &MachineTokens::new(&[]), &identities).await;
    assert_eq!(result, Err(AuthError::UnknownAuthorization));

    let mut h = headers(PROXY_AUTHORIZATION, &foreign);
    let result = authenticate(&mut h, &MachineTokens::new(&[]), &identities).await;
    assert_eq!(result, Err(AuthError::Invalid));
}

#[test]
fn key_store_shared_across_configs() {
    let issuer = TrustedIssuer {
        name: "dex".into(),
        issuer: "https://dex.example.test".into(),
        jwks_uri: None,
        audiences: vec!["postern".into()],
        algorithms: vec![jsonwebtoken::Algorithm::RS256],
        leeway: Duration::from_secs(30),
        identity_claim: "sub".into(),
        jwks_refresh_interval: Duration::from_secs(600),
        jwks_min_refetch_interval: Duration::from_secs(30),
    };
    let first = KeyStore::shared(&issuer);
    assert!(Arc::ptr_eq(&first, &KeyStore::shared(&issuer)));
    assert!(!first.is_loaded());

    let changed = TrustedIssuer {
        audiences: vec!["other".into()],
        ..issuer.clone()
    };
    assert!(!Arc::ptr_eq(&first, &KeyStore::shared(&changed)));
}
