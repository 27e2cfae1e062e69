//! Browser sessions: who signed in, until when, and the upstream
//! provider's tokens for refresh.
//!
//! [`Sessions`] hides where a session lives. The cookie backend keeps the
//! whole session in the browser, sealed (encrypted and authenticated) in
//! the session cookie, split into numbered cookies when it would pass
//! 4 KB. Any replica can open it, and a tampered, truncated, mixed or
//! expired cookie is simply no session. The Redis backend ([`redis`])
//! keeps the session in Redis and only a random id, sealed the same way,
//! in the cookie, so that ending a session takes effect on every replica.

pub mod cookie;
pub mod redis;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::auth::{Identity, IdentityKind};
use crate::config::identity::SessionsConfig;
use cookie::CookieCodec;

/// Someone signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Becomes [`Identity::name`].
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    /// The sign-in method: `oidc:<provider name>` or `password`.
    pub method: String,
    /// Seconds since the epoch.
    pub issued_at: u64,
    /// The session's own end (`identities.sessions.lifetime` after sign-in).
    pub expires_at: u64,
    /// The upstream provider's tokens, for refresh and sign-out.
    pub provider: Option<ProviderGrant>,
}

/// The tokens an upstream OIDC provider granted at sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderGrant {
    /// The provider's name in `identities.providers`.
    pub provider: String,
    pub refresh_token: Option<String>,
    /// When the provider's access token lapses, in seconds since the epoch.
    pub access_expires_at: Option<u64>,
    /// The last ID token, for `id_token_hint` at sign-out.
    pub id_token: Option<String>,
}

/// The session store, built from `identities.sessions`.
pub struct Sessions {
    backend: Backend,
    codec: Arc<CookieCodec>,
    lifetime_secs: u64,
}

/// The session stores. The Redis backend keeps only an opaque id in the
/// cookie.
enum Backend {
    /// The whole session is sealed into the cookie.
    Cookie,
    /// The session is in Redis under the id the cookie carries.
    Redis(Box<redis::RedisStore>),
}

/// A session that could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The request carries session cookies of different sessions, so it
    /// counts as signed out (see [`CookieCodec::open_session`]).
    #[error("the request carries two different session cookies")]
    Conflict,
    #[error("the session is too large for its cookies ({0} bytes sealed)")]
    TooLarge(usize),
    #[error("the session could not be encoded: {0}")]
    Encode(String),
    /// The session store cannot be reached; requests that need a session
    /// get 503.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
}

// === impl Session ===

impl Session {
    /// Returns the identity the session proves, as a person.
    pub fn identity(&self) -> Identity {
        Identity {
            name: Arc::from(self.user.as_str()),
            method: Arc::from(self.method.as_str()),
            kind: IdentityKind::Person,
            email: self.email.as_deref().map(Arc::from),
            groups: self.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
        }
    }

    /// Checks whether the session has ended at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

// === impl Sessions ===

impl Sessions {
    /// Builds the store. Fails only when a key that validated a moment ago
    /// can no longer be read.
    pub fn new(config: &SessionsConfig) -> Result<Self, String> {
        let backend = match &config.redis {
            Some(redis) => Backend::Redis(Box::new(redis::RedisStore::new(redis)?)),
            None => Backend::Cookie,
        };
        Ok(Sessions {
            backend,
            codec: Arc::new(CookieCodec::new(config)?),
            lifetime_secs: config.lifetime.as_secs(),
        })
    }

    /// Returns the session lifetime in seconds, for new sessions' `expires_at`.
    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_secs
    }

    /// Returns the cookie codec, for the sign-in flow's own short-lived cookie.
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    /// Returns the session the request's cookies carry, if any and valid.
    pub async fn load(&self, headers: &HeaderMap) -> Result<Option<Session>, SessionError> {
        let sealed = match self.codec.open_session(headers) {
            cookie::Opened::One(sealed) => sealed,
            cookie::Opened::Absent => return Ok(None),
            cookie::Opened::Conflict => return Err(SessionError::Conflict),
        };
        let text = match &self.backend {
            Backend::Cookie => sealed,
            Backend::Redis(store) => {
                let Some(id) = redis_id(&sealed) else {
                    return Ok(None);
                };
                match store.get(id).await?.map(String::from_utf8) {
                    Some(Ok(text)) => text,
                    _ => return Ok(None),
                }
            }
        };
        let session: Option<Session> = serde_json::from_str(&text).ok();
        Ok(session.filter(|s| !s.is_expired(crate::identity::now())))
    }

    /// Starts a session, at sign-in: the Set-Cookie values to send. With
    /// Redis the session gets a new id and the request's old one is deleted.
    pub async fn save(
        &self,
        headers: &HeaderMap,
        session: &Session,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let text =
            serde_json::to_string(session).map_err(|e| SessionError::Encode(e.to_string()))?;
        let max_age = session.expires_at.saturating_sub(crate::identity::now());
        match &self.backend {
            Backend::Cookie => self.codec.seal_session(headers, &text, max_age),
            Backend::Redis(store) => {
                // A new id on every save, so an id seen before a sign-in
                // (session fixation) never carries the signed-in session.
                let id = redis::new_id();
                store.set(&id, text.as_bytes(), max_age).await?;
                if let Some(old) = self.codec.open_session(headers).single()
                    && let Some(old) = redis_id(&old)
                {
                    store.delete(old).await?;
                }
                self.codec.seal_session(headers, &id, max_age)
            }
        }
    }

    /// Replaces the session the request carries with its refreshed
    /// version: the Set-Cookie values to send, if any.
    ///
    /// With Redis the session keeps its id and is overwritten in place, so
    /// the cookie does not change and requests that a browser sent with it
    /// in parallel all keep working. The id still changes at every sign-in
    /// ([`Sessions::save`]), which is what defeats session fixation. A
    /// session that was ended in the meantime stays ended.
    pub async fn update(
        &self,
        headers: &HeaderMap,
        session: &Session,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let Backend::Redis(store) = &self.backend else {
            return self.save(headers, session).await;
        };
        let Some(sealed) = self.codec.open_session(headers).single() else {
            return Ok(Vec::new());
        };
        let Some(id) = redis_id(&sealed) else {
            return Ok(Vec::new());
        };
        let text =
            serde_json::to_string(session).map_err(|e| SessionError::Encode(e.to_string()))?;
        let max_age = session.expires_at.saturating_sub(crate::identity::now());
        store.replace(id, text.as_bytes(), max_age).await?;
        Ok(Vec::new())
    }

    /// Ends the session the request carries: the Set-Cookie values that
    /// clear it.
    pub async fn end(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        if let Backend::Redis(store) = &self.backend
            && let Some(sealed) = self.codec.open_session(headers).single()
            && let Some(id) = redis_id(&sealed)
        {
            // The store logs the failure. The browser's cookies are cleared
            // all the same, but the id stays valid in Redis until it expires.
            let _ = store.delete(id).await;
        }
        self.codec.clear_session(headers)
    }

    /// Removes postern's own cookies from a request before it goes
    /// upstream; the app's cookies stay byte for byte.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        self.codec.strip(headers);
    }

    /// Removes an app's Set-Cookie lines for postern's own cookies from its
    /// response, so that no app can sign people out or plant a session;
    /// returns how many.
    pub fn strip_set_cookies(&self, headers: &mut HeaderMap) -> usize {
        self.codec.strip_set_cookies(headers)
    }
}

/// Reads the Redis id from an opened session cookie: 64 hex digits, or
/// `None` for anything else, such as a cookie sealed by the cookie backend
/// before a switch to Redis.
fn redis_id(sealed: &str) -> Option<&str> {
    (sealed.len() == 64 && sealed.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sealed)
}

#[cfg(test)]
mod tests;
