//! Bearer JWT verification as a pure function: given a token, an issuer's
//! policy, its keys and the time, decide.
//!
//! jsonwebtoken checks the signature, `iss` and `aud`. The time claims are
//! checked here against the given clock, not the system's, so the decision
//! depends only on the arguments.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::config::identity::TrustedIssuer;

/// Maximum length of an identity claim value, which becomes a request header.
const MAX_IDENTITY_LEN: usize = 256;

/// The requirements that an issuer's tokens must meet.
pub struct Policy {
    pub issuer: String,
    pub leeway_secs: u64,
    pub identity_claim: String,
    /// One jsonwebtoken validation per accepted algorithm, because
    /// jsonwebtoken wants every listed algorithm in the key's family.
    validations: Vec<(Algorithm, Validation)>,
}

/// One public key of an issuer.
pub struct VerifyingKey {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    /// The JWK's `crv`, for elliptic-curve keys.
    curve: Option<EllipticCurve>,
    family: jsonwebtoken::AlgorithmFamily,
    key: DecodingKey,
}

/// An issuer's public keys, as of one fetch.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The identity claim's value.
    pub subject: Arc<str>,
    /// `exp` in seconds since the epoch.
    pub expires_at: u64,
}

/// Reason a token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a JWS compact token, or its header or claims do not parse.
    Malformed,
    /// The header's `alg` is not allowed for this issuer or this key.
    Algorithm,
    /// No key of the issuer has the header's `kid`.
    UnknownKey,
    Signature,
    Issuer,
    /// `aud` is missing or names none of the accepted audiences.
    Audience,
    /// `exp` is missing or has passed.
    Expired,
    NotYetValid,
    /// `iat` lies in the future.
    IssuedInFuture,
    /// The identity claim is missing, not a string, or unusable as a
    /// header value.
    Identity,
}

type Claims = serde_json::Map<String, serde_json::Value>;

/// Only `iss`, to pick the issuer before verifying.
#[derive(Deserialize)]
struct IssuerClaim<'a> {
    #[serde(borrow)]
    iss: Option<std::borrow::Cow<'a, str>>,
}

// === impl Policy ===

impl Policy {
    pub fn new(issuer: &TrustedIssuer) -> Self {
        Policy::with(
            &issuer.issuer,
            &issuer.audiences,
            &issuer.algorithms,
            issuer.leeway.as_secs(),
            &issuer.identity_claim,
        )
    }

    pub fn with(
        issuer: &str,
        audiences: &[String],
        algorithms: &[Algorithm],
        leeway_secs: u64,
        identity_claim: &str,
    ) -> Self {
        let validations = algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&[issuer]);
                v.set_audience(audiences);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                // Time claims are checked in `verify` against its clock.
                v.validate_exp = false;
                v.validate_nbf = false;
                v.leeway = 0;
                (alg, v)
            })
            .collect();
        Policy {
            issuer: issuer.to_owned(),
            leeway_secs,
            identity_claim: identity_claim.to_owned(),
            validations,
        }
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

// === impl KeySet ===

impl KeySet {
    /// Reads a JWKS document. Keys that cannot verify signatures (HMAC
    /// secrets, encryption keys, unknown types) are skipped and counted.
    pub fn from_jwks(document: &serde_json::Value) -> Result<(KeySet, usize), String> {
        let keys = document
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("the JWKS has no keys array")?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for value in keys {
            match serde_json::from_value::<Jwk>(value.clone())
                .ok()
                .and_then(|jwk| VerifyingKey::from_jwk(&jwk))
            {
                Some(key) => set.keys.push(key),
                None => skipped += 1,
            }
        }
        Ok((set, skipped))
    }

    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        KeySet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key for a header: by `kid`, or, for a token without one,
    /// the only key that fits the algorithm.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerifyingKey, Rejection> {
        let Some(kid) = kid else {
            let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
            return match (fitting.next(), fitting.next()) {
                (Some(key), None) => Ok(key),
                _ => Err(Rejection::UnknownKey),
            };
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(Rejection::UnknownKey)?;
        if key.fits(alg) {
            Ok(key)
        } else {
            Err(Rejection::Algorithm)
        }
    }
}

// === impl VerifyingKey ===

impl VerifyingKey {
    /// Converts a JWK to a key, or `None` for keys that must not verify
    /// signatures here.
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let curve = match &jwk.algorithm {
            // A symmetric key in a public JWKS is never trusted: anyone who
            // reads the JWKS could sign with it.
            AlgorithmParameters::EllipticCurve(ec) => Some(ec.curve.clone()),
            AlgorithmParameters::OctetKeyPair(okp) => Some(okp.curve.clone()),
            AlgorithmParameters::RSA(_) => None,
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(alg) => Some(Algorithm::try_from(alg).ok()?),
            None => None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            alg,
            curve,
            family: key.family(),
            key,
        })
    }

    /// Checks whether this key may verify a signature made with `alg`. The key's
    /// family decides, so an RSA or EC public key never verifies an HMAC.
    fn fits(&self, alg: Algorithm) -> bool {
        if self.family != alg.family() || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (alg, &self.curve) {
            (Algorithm::ES256, Some(c)) => *c == EllipticCurve::P256,
            (Algorithm::ES384, Some(c)) => *c == EllipticCurve::P384,
            (Algorithm::EdDSA, Some(c)) => *c == EllipticCurve::Ed25519,
            (Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA, None) => false,
            _ => true,
        }
    }
}

// === impl Rejection ===

impl Rejection {
    /// The access log's reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "jwt_malformed",
            Rejection::Algorithm => "jwt_algorithm_not_allowed",
            Rejection::UnknownKey => "jwt_unknown_key",
            Rejection::Signature => "jwt_bad_signature",
            Rejection::Issuer => "jwt_wrong_issuer",
            Rejection::Audience => "jwt_wrong_audience",
            Rejection::Expired => "jwt_expired",
            Rejection::NotYetValid => "jwt_not_yet_valid",
            Rejection::IssuedInFuture => "jwt_issued_in_future",
            Rejection::Identity => "jwt_identity_claim_invalid",
        }
    }
}

/// Checks whether a bearer token has the shape of a JWS compact token. Machine
/// tokens never contain a dot.
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// Reads the unverified `iss` claim, to choose the issuer whose keys
/// verify the token. Nothing else is trusted before verification.
pub fn peek_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claim: IssuerClaim<'_> = serde_json::from_slice(&bytes).ok()?;
    claim.iss.map(|c| c.into_owned())
}

/// Verifies `token` against an issuer's policy and keys at time `now`
/// (seconds since the epoch).
pub fn verify(
    token: &str,
    policy: &Policy,
    keys: &KeySet,
    now: u64,
) -> Result<Verified, Rejection> {
    // `alg: none` and unknown names fail to parse here.
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Malformed)?;
    let validation = policy.validation(header.alg).ok_or(Rejection::Algorithm)?;
    let key = keys.find(header.kid.as_deref(), header.alg)?;

    let claims = jsonwebtoken::decode::<Claims>(token, &key.key, validation)
        .map_err(|e| rejection(e.kind()))?
        .claims;
    let expires_at = check_times(&claims, now, policy.leeway_secs)?;

    let subject = claims
        .get(&policy.identity_claim)
        .and_then(|v| v.as_str())
        .filter(|s| is_header_safe(s))
        .ok_or(Rejection::Identity)?;
    Ok(Verified {
        subject: Arc::from(subject),
        expires_at,
    })
}

/// Checks `exp` (required), `nbf` and `iat` with `leeway` seconds of clock
/// skew, and returns `exp`.
fn check_times(claims: &Claims, now: u64, leeway: u64) -> Result<u64, Rejection> {
    // NumericDate allows fractions (RFC 7519 section 2); they are cut off.
    let seconds = |name: &str| -> Result<Option<u64>, Rejection> {
        let Some(value) = claims.get(name) else {
            return Ok(None);
        };
        let whole = value.as_u64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        });
        whole.map(Some).ok_or(Rejection::Malformed)
    };
    let exp = seconds("exp")?.ok_or(Rejection::Expired)?;
    if now > exp.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    if seconds("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(Rejection::NotYetValid);
    }
    if seconds("iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(Rejection::IssuedInFuture);
    }
    Ok(exp)
}

fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_IDENTITY_LEN
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn rejection(kind: &ErrorKind) -> Rejection {
    match kind {
        ErrorKind::InvalidSignature => Rejection::Signature,
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "aud" => Rejection::Audience,
            "iss" => Rejection::Issuer,
            _ => Rejection::Expired,
        },
        ErrorKind::InvalidClaimFormat(claim) if claim == "aud" => Rejection::Audience,
        ErrorKind::InvalidClaimFormat(claim) if claim == "iss" => Rejection::Issuer,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Rejection::Algorithm,
        // A key that does not parse for this algorithm cannot verify it.
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            Rejection::Signature
        }
        _ => Rejection::Malformed,
    }
}

#[cfg(test)]
mod tests;
