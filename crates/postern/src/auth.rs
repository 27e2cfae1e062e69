//! Public-gate credentials.
//!
//! A machine proves itself with a static token, sent as
//! `Proxy-Authorization: Bearer <token>` (which leaves `Authorization` free
//! for the app's own key) or `Authorization: Bearer <token>`. postern stores
//! only each token's SHA-256. Bearer JWTs take the same headers and are
//! verified in [`crate::identity`].

use std::sync::Arc;

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName, PROXY_AUTHORIZATION};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Machine;

/// The machine tokens of a config.
#[derive(Debug)]
pub struct MachineTokens {
    machines: Vec<(Arc<str>, [u8; 32])>,
    /// `machine_token`, shared so that an identity costs no allocation.
    method: Arc<str>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub name: Arc<str>,
    /// Proof method of the identity for the access log, such as
    /// `machine_token` or `jwt:<issuer>`.
    pub method: Arc<str>,
    pub kind: IdentityKind,
    /// A person's email address, when the identity source gives one.
    pub email: Option<Arc<str>>,
    /// Group names, for per-app access rules and `X-Auth-Request-Groups`.
    pub groups: Arc<[Arc<str>]>,
}

/// Whether a person or a machine is calling: per-app rules name machines
/// and people differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// A machine token, a client-credentials token or a bearer JWT from a
    /// trusted issuer.
    Machine,
    /// Someone signed in through a browser: a session.
    Person,
}

/// The header that carried the gateway credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    ProxyAuthorization,
    Authorization,
}

/// Reason a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No gateway credential was sent.
    Missing,
    /// A credential was sent and is not valid.
    Invalid,
    /// `Proxy-Authorization` was sent without the `Bearer` scheme, such as a
    /// bare token.
    NotBearer,
    /// A bearer JWT from a trusted issuer failed verification.
    Jwt(crate::identity::jwt::Rejection),
    /// `Authorization: Bearer` held a token that is no gateway credential,
    /// most likely an app's own API key sent without a gateway token.
    UnknownAuthorization,
}

// === impl MachineTokens ===

impl MachineTokens {
    pub fn new(machines: &[Machine]) -> Self {
        MachineTokens {
            machines: machines
                .iter()
                .map(|m| (Arc::from(m.name.as_str()), m.token_sha256))
                .collect(),
            method: Arc::from("machine_token"),
        }
    }

    /// Finds the machine whose token is `token`. Every configured hash is
    /// compared in constant time, so the time taken does not depend on
    /// which machine matched or how much of a hash did.
    pub fn verify(&self, token: &str) -> Option<Identity> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, hash) in &self.machines {
            if bool::from(hash.ct_eq(&digest)) {
                found = Some(name);
            }
        }
        found.map(|name| Identity::machine(name.clone(), self.method.clone()))
    }
}

// === impl Identity ===

impl Identity {
    /// A machine identity, which has no email and no groups.
    pub fn machine(name: Arc<str>, method: Arc<str>) -> Self {
        Identity {
            name,
            method,
            kind: IdentityKind::Machine,
            email: None,
            groups: Arc::from([]),
        }
    }
}

// === impl IdentityKind ===

impl IdentityKind {
    /// Returns `person` or `machine`, as the assertion's `kind` claim and
    /// `postern explain` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Person => "person",
            IdentityKind::Machine => "machine",
        }
    }
}

impl std::fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl AuthError ===

impl AuthError {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthError::Missing => "credential_missing",
            AuthError::Invalid | AuthError::NotBearer | AuthError::UnknownAuthorization => {
                "credential_invalid"
            }
            AuthError::Jwt(rejection) => rejection.as_str(),
        }
    }
}

// === impl CredentialSource ===

impl CredentialSource {
    fn header(self) -> &'static HeaderName {
        match self {
            CredentialSource::ProxyAuthorization => &PROXY_AUTHORIZATION,
            CredentialSource::Authorization => &AUTHORIZATION,
        }
    }

    /// The error for a credential from this header that nothing accepts.
    pub fn rejection(self) -> AuthError {
        match self {
            CredentialSource::ProxyAuthorization => AuthError::Invalid,
            CredentialSource::Authorization => AuthError::UnknownAuthorization,
        }
    }
}

/// Finds the gateway credential: `Proxy-Authorization` when present (and
/// then it must be one Bearer token), else a Bearer `Authorization`.
pub fn bearer_credential(headers: &HeaderMap) -> Result<(CredentialSource, &str), AuthError> {
    if headers.contains_key(PROXY_AUTHORIZATION) {
        let token = bearer(headers, &PROXY_AUTHORIZATION)
            .ok_or_else(|| proxy_authorization_error(headers))?;
        return Ok((CredentialSource::ProxyAuthorization, token));
    }
    match bearer(headers, &AUTHORIZATION) {
        Some(token) => Ok((CredentialSource::Authorization, token)),
        None => Err(AuthError::Missing),
    }
}

/// Removes the header that carried the gateway credential.
pub fn remove_credential(headers: &mut HeaderMap, source: CredentialSource) {
    headers.remove(source.header());
}

/// Authenticates a request by its machine token and removes the header
/// that carried it. Any other `Authorization` stays as sent.
pub fn authenticate(
    headers: &mut HeaderMap,
    tokens: &MachineTokens,
) -> Result<Identity, AuthError> {
    let (source, token) = bearer_credential(headers)?;
    let identity = tokens.verify(token).ok_or(source.rejection())?;
    remove_credential(headers, source);
    Ok(identity)
}

/// Tells a single `Proxy-Authorization` without the `Bearer` scheme apart
/// from other unusable ones, so the client learns what to fix.
fn proxy_authorization_error(headers: &HeaderMap) -> AuthError {
    let mut values = headers.get_all(PROXY_AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return AuthError::Invalid;
    };
    let scheme = value
        .as_bytes()
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        AuthError::Invalid
    } else {
        AuthError::NotBearer
    }
}

/// Returns the token of a single `Bearer` header, if that is what it contains.
fn bearer<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "pst_example_build_bot_token_0001";

    fn tokens() -> MachineTokens {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(
            "ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f",
            &mut hash,
        )
        .unwrap();
        MachineTokens::new(&[Machine {
            name: "build-bot".into(),
            token_sha256: hash,
        }])
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn proxy_authorization_keeps_app_key() {
        let mut h = headers(&[
            (PROXY_AUTHORIZATION, &format!("Bearer {TOKEN}")),
            (AUTHORIZATION, "Bearer sk-app-key"),
        ]);
        let id = authenticate(&mut h, &tokens()).unwrap();
        assert_eq!(&*id.name, "build-bot");
        assert!(!h.contains_key(PROXY_AUTHORIZATION));
        assert_eq!(h[AUTHORIZATION], "Bearer sk-app-key");
    }

    #[test]
    fn authorization_bearer_is_removed() {
        let mut h = headers(&[(AUTHORIZATION, &format!("bearer {TOKEN}"))]);
        authenticate(&mut h, &tokens()).unwrap();
        assert!(!h.contains_key(AUTHORIZATION));
    }

    #[test]
    fn missing_and_invalid() {
        let cases = [
            (headers(&[]), AuthError::Missing),
            (
                headers(&[(AUTHORIZATION, "Basic dXNlcjpwYXNz")]),
                AuthError::Missing,
            ),
            (
                headers(&[(AUTHORIZATION, "Bearer sk-app-key")]),
                AuthError::UnknownAuthorization,
            ),
            (
                headers(&[(PROXY_AUTHORIZATION, "Bearer wrong")]),
                AuthError::Invalid,
            ),
            (
                headers(&[(PROXY_AUTHORIZATION, TOKEN)]),
                AuthError::NotBearer,
            ),
            (
                headers(&[(PROXY_AUTHORIZATION, "Basic dXNlcjpwYXNz")]),
                AuthError::NotBearer,
            ),
            (
                headers(&[(PROXY_AUTHORIZATION, "Bearer ")]),
                AuthError::Invalid,
            ),
            (
                headers(&[
                    (PROXY_AUTHORIZATION, &format!("Bearer {TOKEN}")),
                    (PROXY_AUTHORIZATION, &format!("Bearer {TOKEN}")),
                ]),
                AuthError::Invalid,
            ),
            (
                headers(&[
                    (PROXY_AUTHORIZATION, "Bearer wrong"),
                    (AUTHORIZATION, &format!("Bearer {TOKEN}")),
                ]),
                AuthError::Invalid,
            ),
        ];
        for (mut h, expected) in cases {
            assert_eq!(authenticate(&mut h, &tokens()), Err(expected), "{h:?}");
        }
    }
}
