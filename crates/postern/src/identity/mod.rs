//! Identities beyond static machine tokens: bearer JWTs from trusted
//! issuers (postern among them), and postern's own issuer endpoints.
//!
//! [`authenticate`] is the public gate's credential step. A bearer token
//! shaped like a JWT, when any issuer is trusted, is verified here; any
//! other token is a machine token, checked as before.

pub mod assertion;
pub mod attempts;
pub mod clients;
pub mod endpoints;
pub mod fetch;
pub mod jwks;
pub mod jwt;
pub mod password;
pub mod signing;
pub mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::auth::{self, AuthError, Identity, MachineTokens};
use crate::config::identity::{DEFAULT_LEEWAY, IdentityConfig, POSTERN_ISSUER_NAME};
use jwks::KeyStore;
use jwt::{KeySet, Policy, Rejection};

/// Verified tokens kept, so a client that sends the same JWT on every
/// request pays for the signature check once.
const VERIFIED_CACHE_CAPACITY: usize = 10_000;

/// The identity sources of one config.
pub struct Identities {
    issuers: Vec<Issuer>,
    /// postern's own issuer, when it has signing keys.
    pub local: Option<endpoints::LocalIssuer>,
    /// Signed `X-Postern-Assertion` values, used only with `local`.
    pub assertions: assertion::Assertions,
    /// People who sign in with a password on the login page.
    pub users: users::Users,
    /// Browser sessions, when `identities.sessions` is set.
    pub sessions: Option<Arc<crate::session::Sessions>>,
    /// Sign-in through upstream providers, when any are configured.
    pub signin: Option<crate::signin::SignIn>,
    /// `auth.<cluster hostname>`, when postern serves it.
    pub auth_host: Option<String>,
    verified: quick_cache::sync::Cache<[u8; 32], Arc<CachedVerdict>>,
}

/// A trusted issuer and where its keys come from.
struct Issuer {
    policy: Policy,
    /// `jwt:<name>`, for the access log.
    method: Arc<str>,
    keys: Keys,
}

enum Keys {
    /// postern's own keys, known without a fetch.
    Local(Arc<KeySet>),
    Remote(Arc<KeyStore>),
}

/// A verified token, valid until `valid_until` while its issuer's keys stay
/// at `generation`.
struct CachedVerdict {
    identity: Identity,
    issuer: usize,
    generation: u64,
    valid_until: u64,
}

// === impl Identities ===

impl Identities {
    /// Builds the identity sources of a config. Remote issuers share their
    /// key stores with earlier configs (see [`KeyStore::shared`]).
    pub fn new(config: &IdentityConfig, hostname: &str) -> Result<Self, String> {
        let mut issuers: Vec<Issuer> = config
            .issuers
            .iter()
            .map(|c| Issuer {
                policy: Policy::new(c),
                method: Arc::from(format!("jwt:{}", c.name)),
                keys: Keys::Remote(KeyStore::shared(c)),
            })
            .collect();
        let local = match &config.signing {
            Some(signing) => {
                let local = endpoints::LocalIssuer::new(signing, &config.clients, hostname)?;
                let signer = &local.signer;
                issuers.push(Issuer {
                    policy: Policy::with(
                        &signer.issuer,
                        std::slice::from_ref(&signer.audience),
                        &signer.algorithms(),
                        DEFAULT_LEEWAY.as_secs(),
                        "sub",
                    ),
                    method: Arc::from(format!("jwt:{POSTERN_ISSUER_NAME}")),
                    keys: Keys::Local(Arc::new(signer.key_set())),
                });
                Some(local)
            }
            None => None,
        };
        let sessions = match &config.sessions {
            Some(c) => Some(Arc::new(crate::session::Sessions::new(c)?)),
            None => None,
        };
        let signin = crate::signin::SignIn::new(config, sessions.as_ref(), hostname)?;
        Ok(Identities {
            issuers,
            local,
            assertions: assertion::Assertions::default(),
            users: users::Users::new(&config.users)?,
            sessions,
            signin,
            auth_host: config
                .serves_auth_host()
                .then(|| crate::signin::auth_host(hostname)),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_CAPACITY),
        })
    }

    /// Checks whether a browser without a credential can be sent to sign
    /// in.
    pub fn sign_in_configured(&self) -> bool {
        self.signin.is_some()
    }

    /// Names the issuers whose keys were never fetched; the public gate is
    /// not ready until this is empty.
    pub fn unloaded_issuers(&self) -> Vec<&str> {
        self.issuers
            .iter()
            .filter_map(|i| match &i.keys {
                Keys::Remote(store) if !store.is_loaded() => Some(store.config.name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Verifies a bearer JWT. `Ok(None)` means no trusted issuer claims the
    /// token, so it may be an app's own credential.
    async fn verify(&self, token: &str) -> Result<Option<Identity>, Rejection> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now();
        if let Some(hit) = self.verified.get(&digest)
            && now <= hit.valid_until
            && self.issuers[hit.issuer].keys.generation() == hit.generation
        {
            return Ok(Some(hit.identity.clone()));
        }

        let Some(iss) = jwt::peek_issuer(token) else {
            return Err(Rejection::Malformed);
        };
        let Some((index, issuer)) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.policy.issuer == iss)
        else {
            return Ok(None);
        };

        let generation = issuer.keys.generation();
        let mut result = jwt::verify(token, &issuer.policy, &issuer.keys.current(), now);
        if result == Err(Rejection::UnknownKey)
            && let Keys::Remote(store) = &issuer.keys
        {
            store.refetch_for_unknown_key().await;
            result = jwt::verify(token, &issuer.policy, &store.keys(), now);
        }
        let verified = result?;
        let identity = Identity::machine(verified.subject, issuer.method.clone());
        self.verified.insert(
            digest,
            Arc::new(CachedVerdict {
                identity: identity.clone(),
                issuer: index,
                generation,
                valid_until: verified
                    .expires_at
                    .saturating_add(issuer.policy.leeway_secs),
            }),
        );
        Ok(Some(identity))
    }
}

// === impl Keys ===

impl Keys {
    fn current(&self) -> Arc<KeySet> {
        match self {
            Keys::Local(set) => set.clone(),
            Keys::Remote(store) => store.keys().clone(),
        }
    }

    fn generation(&self) -> u64 {
        match self {
            Keys::Local(_) => 0,
            Keys::Remote(store) => store.generation(),
        }
    }
}

/// Authenticates a public-gate request by its bearer credential, a machine
/// token or a JWT, and removes the header that carried it.
pub async fn authenticate(
    headers: &mut HeaderMap,
    tokens: &MachineTokens,
    identities: &Identities,
) -> Result<Identity, AuthError> {
    let (source, token) = auth::bearer_credential(headers)?;
    let identity = if !identities.issuers.is_empty() && jwt::looks_like_jwt(token) {
        match identities.verify(token).await {
            Ok(Some(identity)) => identity,
            Ok(None) => return Err(source.rejection()),
            Err(rejection) => return Err(AuthError::Jwt(rejection)),
        }
    } else {
        tokens.verify(token).ok_or(source.rejection())?
    };
    auth::remove_credential(headers, source);
    Ok(identity)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
