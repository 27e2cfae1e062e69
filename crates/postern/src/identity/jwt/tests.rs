use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const ES256_A: &str = include_str!("../testdata/es256-a.pem");
const ES256_B: &str = include_str!("../testdata/es256-b.pem");
const ED25519: &str = include_str!("../testdata/ed25519.pem");
const RS256: &str = include_str!("../testdata/rs256.pem");
const ES384: &str = include_str!("../testdata/es384.pem");

const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "postern";
const NOW: u64 = 1_800_000_000;
const LEEWAY: u64 = 30;

fn encoding_key(alg: Algorithm, pem: &str) -> EncodingKey {
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    }
}

fn public_jwk(alg: Algorithm, pem: &str, kid: &str) -> serde_json::Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, pem), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

/// The issuer's keys: an ES256 key `a`, an RS256 key `r` and an EdDSA key
/// `e`.
fn keys() -> KeySet {
    let document = json!({ "keys": [
        public_jwk(Algorithm::ES256, ES256_A, "a"),
        public_jwk(Algorithm::RS256, RS256, "r"),
        public_jwk(Algorithm::EdDSA, ED25519, "e"),
    ]});
    let (set, skipped) = KeySet::from_jwks(&document).unwrap();
    assert_eq!((set.len(), skipped), (3, 0));
    set
}

fn policy() -> Policy {
    Policy::with(
        ISSUER,
        &[AUDIENCE.to_owned()],
        &[Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA],
        LEEWAY,
        "sub",
    )
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ci-runner",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
    })
}

fn sign(alg: Algorithm, pem: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, pem)).unwrap()
}

fn es256(claims: &serde_json::Value) -> String {
    sign(Algorithm::ES256, ES256_A, Some("a"), claims)
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    c[key] = value;
    c
}

fn without(key: &str) -> serde_json::Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(key);
    c
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn valid_tokens_each_algorithm() {
    for (alg, pem, kid) in [
        (Algorithm::ES256, ES256_A, "a"),
        (Algorithm::RS256, RS256, "r"),
        (Algorithm::EdDSA, ED25519, "e"),
    ] {
        let token = sign(alg, pem, Some(kid), &claims());
        let verified = verify(&token, &policy(), &keys(), NOW).unwrap();
        assert_eq!(&*verified.subject, "ci-runner", "{alg:?}");
        assert_eq!(verified.expires_at, NOW + 300, "{alg:?}");
    }
}

#[test]
fn time_claims_with_leeway() {
    let cases = [
        (
            "expired long ago",
            with("exp", json!(NOW - LEEWAY - 1)),
            Err(Rejection::Expired),
        ),
        (
            "expired within leeway",
            with("exp", json!(NOW - LEEWAY)),
            Ok(()),
        ),
        ("exp missing", without("exp"), Err(Rejection::Expired)),
        // jsonwebtoken reports an `exp` that is not a number as missing.
        (
            "exp not a number",
            with("exp", json!("soon")),
            Err(Rejection::Expired),
        ),
        (
            "nbf not a number",
            with("nbf", json!("now")),
            Err(Rejection::Malformed),
        ),
        (
            "not yet valid",
            with("nbf", json!(NOW + LEEWAY + 1)),
            Err(Rejection::NotYetValid),
        ),
        (
            "nbf within leeway",
            with("nbf", json!(NOW + LEEWAY)),
            Ok(()),
        ),
        (
            "issued in the future",
            with("iat", json!(NOW + LEEWAY + 1)),
            Err(Rejection::IssuedInFuture),
        ),
        ("iat absent", without("iat"), Ok(())),
    ];
    for (case, claims, expected) in cases {
        let result = verify(&es256(&claims), &policy(), &keys(), NOW).map(|_| ());
        assert_eq!(result, expected, "{case}");
    }
}

#[test]
fn issuer_and_audience() {
    let cases = [
        (
            "wrong audience",
            with("aud", json!("other-api")),
            Rejection::Audience,
        ),
        ("audience missing", without("aud"), Rejection::Audience),
        (
            "audience list without ours",
            with("aud", json!(["a", "b"])),
            Rejection::Audience,
        ),
        (
            "wrong issuer",
            with("iss", json!("https://evil.example.test")),
            Rejection::Issuer,
        ),
        ("issuer missing", without("iss"), Rejection::Issuer),
    ];
    for (case, claims, expected) in cases {
        assert_eq!(
            verify(&es256(&claims), &policy(), &keys(), NOW),
            Err(expected),
            "{case}"
        );
    }
    let listed = with("aud", json!(["other", AUDIENCE]));
    assert!(verify(&es256(&listed), &policy(), &keys(), NOW).is_ok());
}

#[test]
fn alg_none_rejected() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims().to_string().as_bytes());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        assert_eq!(
            verify(&token, &policy(), &keys(), NOW),
            Err(Rejection::Malformed),
            "{token}"
        );
    }
}

#[test]
fn hmac_with_public_key_rejected() {
    // The classic confusion: sign HS256 with the bytes of the issuer's
    // public key, hoping the verifier uses them as an HMAC secret.
    let jwk = public_jwk(Algorithm::RS256, RS256, "r");
    let modulus = jwk["n"].as_str().unwrap();
    let secret = EncodingKey::from_secret(modulus.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("r".into());
    let token = jsonwebtoken::encode(&header, &claims(), &secret).unwrap();
    assert_eq!(
        verify(&token, &policy(), &keys(), NOW),
        Err(Rejection::Algorithm)
    );

    // Even a policy that listed HS256 could not use an RSA key for it.
    let lax = Policy::with(
        ISSUER,
        &[AUDIENCE.to_owned()],
        &[Algorithm::HS256, Algorithm::RS256],
        LEEWAY,
        "sub",
    );
    assert_eq!(
        verify(&token, &lax, &keys(), NOW),
        Err(Rejection::Algorithm)
    );
}

#[test]
fn tampered_tokens_rejected() {
    let token = es256(&claims());
    let (head, signature) = token.rsplit_once('.').unwrap();

    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .unwrap();
    bytes[5] ^= 0x01;
    let flipped = format!("{head}.{}", b64(&bytes));
    assert_eq!(
        verify(&flipped, &policy(), &keys(), NOW),
        Err(Rejection::Signature)
    );

    let (header, _) = head.split_once('.').unwrap();
    let forged = with("sub", json!("admin"));
    let swapped = format!(
        "{header}.{}.{signature}",
        b64(forged.to_string().as_bytes())
    );
    assert_eq!(
        verify(&swapped, &policy(), &keys(), NOW),
        Err(Rejection::Signature)
    );

    let other_key = sign(Algorithm::ES256, ES256_B, Some("a"), &claims());
    assert_eq!(
        verify(&other_key, &policy(), &keys(), NOW),
        Err(Rejection::Signature)
    );
}

#[test]
fn key_selection() {
    let unknown = sign(Algorithm::ES256, ES256_B, Some("b"), &claims());
    assert_eq!(
        verify(&unknown, &policy(), &keys(), NOW),
        Err(Rejection::UnknownKey)
    );

    // The kid of the RSA key with an ES256 header.
    let mismatched = sign(Algorithm::ES256, ES256_A, Some("r"), &claims());
    assert_eq!(
        verify(&mismatched, &policy(), &keys(), NOW),
        Err(Rejection::Algorithm)
    );

    // Without a kid, the only key that fits the algorithm is used.
    let no_kid = sign(Algorithm::ES256, ES256_A, None, &claims());
    assert!(verify(&no_kid, &policy(), &keys(), NOW).is_ok());

    // A P-384 key never verifies ES256.
    let document = json!({ "keys": [public_jwk(Algorithm::ES384, ES384, "p384")] });
    let (p384, _) = KeySet::from_jwks(&document).unwrap();
    let token = sign(Algorithm::ES256, ES256_A, Some("p384"), &claims());
    assert_eq!(
        verify(&token, &policy(), &p384, NOW),
        Err(Rejection::Algorithm)
    );
}

#[test]
fn algorithm_outside_policy_rejected() {
    let only_es256 = Policy::with(
        ISSUER,
        &[AUDIENCE.to_owned()],
        &[Algorithm::ES256],
        LEEWAY,
        "sub",
    );
    let token = sign(Algorithm::RS256, RS256, Some("r"), &claims());
    assert_eq!(
        verify(&token, &only_es256, &keys(), NOW),
        Err(Rejection::Algorithm)
    );
}

#[test]
fn identity_claim() {
    let custom = Policy::with(
        ISSUER,
        &[AUDIENCE.to_owned()],
        &[Algorithm::ES256],
        LEEWAY,
        "client_id",
    );
    let token = es256(&with("client_id", json!("deployer")));
    assert_eq!(
        &*verify(&token, &custom, &keys(), NOW).unwrap().subject,
        "deployer"
    );

    for (case, claims) in [
        ("missing", claims()),
        ("not a string", with("client_id", json!(42))),
        ("control character", with("client_id", json!("a\nb"))),
        ("empty", with("client_id", json!(""))),
    ] {
        assert_eq!(
            verify(&es256(&claims), &custom, &keys(), NOW),
            Err(Rejection::Identity),
            "{case}"
        );
    }
}

#[test]
fn unusable_jwks_entries_skipped() {
    let document = json!({ "keys": [
        { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" },
        { "kty": "RSA", "use": "enc", "n": public_jwk(Algorithm::RS256, RS256, "x")["n"], "e": "AQAB", "kid": "enc" },
        { "kty": "unknown" },
        public_jwk(Algorithm::ES256, ES256_A, "a"),
    ]});
    let (set, skipped) = KeySet::from_jwks(&document).unwrap();
    assert_eq!((set.len(), skipped), (1, 3));
    assert!(KeySet::from_jwks(&json!({})).is_err());
}

#[test]
fn issuer_peeked_before_verification() {
    assert_eq!(peek_issuer(&es256(&claims())).as_deref(), Some(ISSUER));
    assert_eq!(peek_issuer("not.a.jwt"), None);
    assert!(looks_like_jwt(&es256(&claims())));
    assert!(!looks_like_jwt("pst_0123"));
}
