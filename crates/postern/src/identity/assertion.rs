//! `X-Postern-Assertion`: a short-lived JWT, signed with postern's active
//! key, that states to an app who called and through which gate. An app
//! verifies it with postern's JWKS, so it need not trust the plain
//! `X-Auth-Request-*` headers or the network path.
//!
//! Signing costs far more than the rest of a request's handling, so a
//! signed assertion is kept per caller and app and sent again until half of
//! its lifetime has passed.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use serde::Serialize;

use super::signing::Signer;
use crate::auth::Identity;
use crate::policy::admission::{Admission, AdmissionKind, EndpointIdentity, Gate};

/// Lifetime of an assertion: long enough for an app to check it on
/// arrival, short enough that a leaked one is soon useless.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// Age after which a cached assertion is signed again, so every assertion
/// an app receives has at least half of its lifetime left.
const REUSE_SECS: u64 = ASSERTION_LIFETIME_SECS / 2;
/// Callers and apps whose assertions are kept.
const CACHE_CAPACITY: usize = 10_000;
/// The JWT `typ` header of an assertion.
const ASSERTION_TYPE: &str = "JWT";

/// The caller of a request, as an assertion names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An authenticated identity on the public gate.
    Identity(Identity),
    /// A client VPC through an AWS PrivateLink endpoint (private gate).
    Endpoint { id: String, owner: String },
    /// A workload in the cluster's VPC (private gate).
    Vpc { client: IpAddr },
}

/// Signed assertions, cached by caller and app.
pub struct Assertions {
    cache: quick_cache::sync::Cache<(Caller, Arc<str>), Cached>,
}

#[derive(Clone)]
struct Cached {
    value: HeaderValue,
    issued_at: u64,
}

/// The claims of an assertion. Claims that do not apply are left out.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    /// `public` or `private`.
    gate: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [Arc<str>]>,
    /// `privatelink` or `vpc`.
    #[serde(skip_serializing_if = "Option::is_none")]
    admission: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_addr: Option<String>,
}

// === impl Caller ===

impl Caller {
    /// Describes the caller of a forwarded request: the identity on the
    /// public gate, the network admission on the private gate.
    pub fn new(
        gate: Gate,
        identity: Option<&Identity>,
        admission: &Admission,
        endpoint: Option<&EndpointIdentity>,
    ) -> Option<Caller> {
        match (gate, identity, endpoint) {
            (Gate::Public, Some(identity), _) => Some(Caller::Identity(identity.clone())),
            (Gate::Public, None, _) => None,
            (Gate::Private, _, Some(endpoint)) => Some(Caller::Endpoint {
                id: endpoint.id.clone(),
                owner: endpoint.owner.clone(),
            }),
            (Gate::Private, _, None) => match admission.kind {
                AdmissionKind::VpcWorkload | AdmissionKind::ProxiedVpc => Some(Caller::Vpc {
                    client: crate::policy::admission::canonical(admission.client.ip()),
                }),
                _ => None,
            },
        }
    }

    fn claims<'a>(&'a self, signer: &'a Signer, audience: &'a str, now: u64) -> Claims<'a> {
        let mut claims = Claims {
            iss: &signer.issuer,
            aud: audience,
            sub: "",
            iat: now,
            nbf: now,
            exp: now + ASSERTION_LIFETIME_SECS,
            gate: "private",
            kind: None,
            auth_method: None,
            email: None,
            groups: None,
            admission: None,
            endpoint_id: None,
            endpoint_owner: None,
            client_addr: None,
        };
        match self {
            Caller::Identity(identity) => {
                claims.gate = "public";
                claims.sub = &identity.name;
                claims.kind = Some(identity.kind.as_str());
                claims.auth_method = Some(&identity.method);
                claims.email = identity.email.as_deref();
                claims.groups = Some(&identity.groups);
            }
            Caller::Endpoint { id, owner } => {
                claims.sub = id;
                claims.admission = Some("privatelink");
                claims.endpoint_id = Some(id);
                claims.endpoint_owner = Some(owner);
            }
            Caller::Vpc { client } => {
                claims.admission = Some("vpc");
                claims.client_addr = Some(client.to_string());
            }
        }
        claims
    }
}

// === impl Assertions ===

impl Default for Assertions {
    fn default() -> Self {
        Assertions {
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
        }
    }
}

impl Assertions {
    /// Returns the assertion for `caller` at the app whose audience is
    /// `audience`, signing a new one when none is cached or the cached one
    /// is older than half its lifetime. `now` is in seconds since the epoch.
    pub fn get(
        &self,
        signer: &Signer,
        caller: &Caller,
        audience: &Arc<str>,
        now: u64,
    ) -> Result<HeaderValue, String> {
        let key = (caller.clone(), audience.clone());
        if let Some(cached) = self.cache.get(&key)
            && now.saturating_sub(cached.issued_at) < REUSE_SECS
        {
            return Ok(cached.value);
        }
        let mut claims = caller.claims(signer, audience, now);
        // The VPC caller's subject is its address, which `claims` formats.
        let vpc_subject = claims.client_addr.clone();
        if let Some(subject) = &vpc_subject {
            claims.sub = subject;
        }
        let token = signer.sign(&claims, ASSERTION_TYPE)?;
        let value = HeaderValue::try_from(token).map_err(|e| e.to_string())?;
        self.cache.insert(
            key,
            Cached {
                value: value.clone(),
                issued_at: now,
            },
        );
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::identity::{SecretSource, Signing, SigningKey};

    fn signer() -> Signer {
        Signer::new(&Signing {
            issuer: "https://auth.example.test".into(),
            keys: vec![SigningKey {
                id: "k1".into(),
                source: SecretSource::InsecureInline(include_str!("testdata/es256-a.pem").into()),
            }],
            active: 0,
            audience: "example.test".into(),
            token_lifetime: Duration::from_secs(300),
        })
        .unwrap()
    }

    fn caller() -> Caller {
        Caller::Identity(Identity::machine(
            "build-bot".into(),
            "machine_token".into(),
        ))
    }

    #[test]
    fn cached_until_half_life() {
        let (signer, assertions) = (signer(), Assertions::default());
        let audience: Arc<str> = "https://echo.example.test".into();
        let first = assertions.get(&signer, &caller(), &audience, 1000).unwrap();
        let reused = assertions.get(&signer, &caller(), &audience, 1029).unwrap();
        let renewed = assertions.get(&signer, &caller(), &audience, 1030).unwrap();
        assert_eq!(first, reused);
        assert_ne!(first, renewed);
        let other_app: Arc<str> = "https://web.example.test".into();
        assert_ne!(
            assertions
                .get(&signer, &caller(), &other_app, 1030)
                .unwrap(),
            renewed
        );
    }

    /// Compares signing with a cache hit. Run with
    /// `cargo test --release -p postern --lib assertion_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, not a check"]
    fn assertion_cost() {
        let (signer, assertions) = (signer(), Assertions::default());
        let audience: Arc<str> = "https://echo.example.test".into();
        let rounds = 2000u32;
        let caller = caller();
        let started = Instant::now();
        for now in 0..u64::from(rounds) {
            let claims = caller.claims(&signer, &audience, now);
            signer.sign(&claims, ASSERTION_TYPE).unwrap();
        }
        let sign = started.elapsed() / rounds;
        let started = Instant::now();
        for _ in 0..rounds {
            assertions.get(&signer, &caller, &audience, 5).unwrap();
        }
        let hit = started.elapsed() / rounds;
        println!("ES256 sign: {sign:?} per assertion; cache hit: {hit:?}");
    }
}
