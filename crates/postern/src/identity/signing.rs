//! postern as an issuer: its signing keys, the JWKS that publishes them,
//! and the access tokens its token endpoint issues.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::jwt::{KeySet, VerifyingKey};
use crate::config::identity::Signing;

/// A private key read from PEM, with the algorithm it signs with.
pub struct PrivateKey {
    pub algorithm: Algorithm,
    key: EncodingKey,
}

/// postern's keys: the active one signs, all are published.
pub struct Signer {
    pub issuer: String,
    pub audience: String,
    pub token_lifetime: Duration,
    active: (String, PrivateKey),
    /// Public JWKs of every key, with `kid`, `alg` and `use`.
    jwks: Vec<Jwk>,
}

/// Claims of an access token from the token endpoint (RFC 9068).
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

/// Parses a PKCS#8 PEM private key: P-256 for ES256 or Ed25519 for EdDSA.
/// Errors never contain key material.
pub fn parse_private_key(pem: &str) -> Result<PrivateKey, String> {
    let candidates = [
        (Algorithm::ES256, EncodingKey::from_ec_pem(pem.as_bytes())),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem.as_bytes())),
    ];
    for (algorithm, key) in candidates {
        let Ok(key) = key else { continue };
        // Deriving the public key proves the curve: a P-384 key fails here.
        if Jwk::from_encoding_key(&key, algorithm).is_ok() {
            return Ok(PrivateKey { algorithm, key });
        }
    }
    Err(
        "the private key is not a PKCS#8 PEM key for P-256 (ES256) or Ed25519 (EdDSA); \
         make one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
         -out signing.pem"
            .to_owned(),
    )
}

// === impl PrivateKey ===

impl PrivateKey {
    fn public_jwk(&self, kid: &str) -> Result<Jwk, String> {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm)
            .map_err(|e| format!("cannot derive the public key of {kid:?}: {e}"))?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match self.algorithm {
            Algorithm::EdDSA => KeyAlgorithm::EdDSA,
            _ => KeyAlgorithm::ES256,
        });
        Ok(jwk)
    }
}

// === impl Signer ===

impl Signer {
    /// Reads every key of the config. Fails if a key that validated a
    /// moment ago can no longer be read.
    pub fn new(config: &Signing) -> Result<Self, String> {
        let mut jwks = Vec::with_capacity(config.keys.len());
        let mut active = None;
        for (i, key) in config.keys.iter().enumerate() {
            let private = parse_private_key(&key.source.read()?)
                .map_err(|e| format!("signing key {:?}: {e}", key.id))?;
            jwks.push(private.public_jwk(&key.id)?);
            if i == config.active {
                active = Some((key.id.clone(), private));
            }
        }
        Ok(Signer {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            token_lifetime: config.token_lifetime,
            active: active.ok_or("identities.signing has no active key")?,
            jwks,
        })
    }

    /// Returns the JWKS document.
    pub fn jwks_document(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.jwks })
    }

    /// Returns the public keys, to verify postern's own tokens without a fetch.
    pub fn key_set(&self) -> KeySet {
        KeySet::from_keys(
            self.jwks
                .iter()
                .filter_map(VerifyingKey::from_jwk)
                .collect(),
        )
    }

    /// Returns the algorithms of all keys, each once.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut algorithms: Vec<Algorithm> = self
            .jwks
            .iter()
            .filter_map(|j| Algorithm::try_from(j.common.key_algorithm?).ok())
            .collect();
        algorithms.dedup();
        algorithms.sort_by_key(|a| format!("{a:?}"));
        algorithms.dedup();
        algorithms
    }

    /// Issues an access token for `client_id` at time `now` (seconds since
    /// the epoch).
    pub fn issue(&self, client_id: &str, now: u64) -> Result<Arc<str>, String> {
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: client_id,
            aud: &self.audience,
            client_id,
            iat: now,
            nbf: now,
            exp: now + self.token_lifetime.as_secs(),
            jti: hex::encode(rand::random::<[u8; 16]>()),
        };
        self.sign(&claims, "at+jwt").map(Arc::from)
    }

    /// Signs `claims` with the active key, with `typ` in the header.
    pub fn sign(&self, claims: &impl Serialize, typ: &str) -> Result<String, String> {
        let (kid, key) = &self.active;
        let mut header = Header::new(key.algorithm);
        header.kid = Some(kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &key.key).map_err(|e| format!("signing failed: {e}"))
    }
}
