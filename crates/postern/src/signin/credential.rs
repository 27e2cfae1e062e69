//! The session cookie as a public-gate credential, with the provider's
//! refresh when its access token is about to lapse.
//!
//! Only a refusal from the provider (an OAuth error response such as
//! `invalid_grant`, or an ID token that fails verification) ends a
//! session at refresh. When the provider cannot be reached or does not
//! answer in time, the session is served until its own end: the person's
//! identity was proven at sign-in, and the access token's lapse is the
//! provider's clock, not the session's. The refresh is tried again after
//! [`super::refresh::BACKOFF`].

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::provider::ProviderError;
use crate::auth::Identity;
use crate::identity::{Identities, now};
use crate::session::{Session, SessionError, Sessions};

/// Refresh this long before the provider's access token lapses.
const REFRESH_MARGIN_SECS: u64 = 10;
/// Time a request waits for the provider's refresh before it is served
/// with the session as it is; shorter than the provider's own timeout
/// because a person's page load waits for it.
const REFRESH_WAIT: Duration = Duration::from_secs(3);

/// Whether the credential step may change a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The server: refreshes a due session and ends a refused one.
    Serve,
    /// `postern explain`: reads the session and changes nothing, neither
    /// at the provider nor in the session store.
    ReadOnly,
}

/// The outcome for the provider's grant while a session is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Not due yet, or the session has no refresh token.
    NotDue,
    /// Refreshed now.
    Refreshed,
    /// Due, but the provider could not answer; the session is served as is.
    Deferred,
    /// Due, and left alone because the mode is [`Mode::ReadOnly`].
    DueNotRun,
}

/// The outcome of reading a request's session cookie.
pub enum SessionCredential {
    /// A valid session, and the Set-Cookie values of a refreshed one.
    Valid {
        identity: Identity,
        set_cookies: Vec<HeaderValue>,
        refresh: Refresh,
    },
    /// No valid session; Set-Cookie values that clear one that ended.
    None { clear: Vec<HeaderValue> },
    /// Session cookies of two different sessions, so neither counts.
    Conflict,
    /// The session store cannot be reached, so the request gets 503.
    Unavailable,
}

/// Reads the session cookie and, in [`Mode::Serve`], refreshes the
/// provider's grant when due. A refused refresh ends the session.
pub async fn session(
    identities: &Identities,
    headers: &HeaderMap,
    mode: Mode,
) -> SessionCredential {
    let none = SessionCredential::None { clear: Vec::new() };
    let Some(sessions) = &identities.sessions else {
        return none;
    };
    let session = match sessions.load(headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return none,
        Err(SessionError::Unavailable(_)) => return SessionCredential::Unavailable,
        Err(SessionError::Conflict) => {
            tracing::info!(
                reason = "session_cookie_conflict",
                "The request carries two different session cookies; it counts as signed out"
            );
            return SessionCredential::Conflict;
        }
        Err(_) => return none,
    };
    let valid = |session: &Session, set_cookies, refresh| SessionCredential::Valid {
        identity: session.identity(),
        set_cookies,
        refresh,
    };
    if !refresh_due(&session) {
        return valid(&session, Vec::new(), Refresh::NotDue);
    }
    if mode == Mode::ReadOnly {
        return valid(&session, Vec::new(), Refresh::DueNotRun);
    }
    match refresh(identities, session.clone()).await {
        Ok(fresh) => saved(sessions, headers, fresh).await,
        Err(error) if error.is_transient() => valid(&session, Vec::new(), Refresh::Deferred),
        Err(error) => {
            tracing::info!(user = %session.user, %error, "Session ended: the provider refused the refresh");
            SessionCredential::None {
                clear: sessions.end(headers).await,
            }
        }
    }
}

/// Stores a refreshed session in place of the old one.
async fn saved(sessions: &Sessions, headers: &HeaderMap, session: Session) -> SessionCredential {
    match sessions.update(headers, &session).await {
        Ok(set_cookies) => SessionCredential::Valid {
            identity: session.identity(),
            set_cookies,
            refresh: Refresh::Refreshed,
        },
        Err(SessionError::Unavailable(_)) => SessionCredential::Unavailable,
        Err(error) => {
            tracing::warn!(user = %session.user, %error, "Refreshed session could not be saved");
            SessionCredential::None {
                clear: sessions.end(headers).await,
            }
        }
    }
}

fn refresh_due(session: &Session) -> bool {
    session.provider.as_ref().is_some_and(|grant| {
        grant.refresh_token.is_some()
            && grant
                .access_expires_at
                .is_some_and(|at| now() + REFRESH_MARGIN_SECS >= at)
    })
}

/// Refreshes once per refresh token, however many requests wait for it.
async fn refresh(identities: &Identities, mut session: Session) -> Result<Session, ProviderError> {
    let refused = ProviderError::Refused;
    let grant = session
        .provider
        .as_mut()
        .ok_or_else(|| refused("no provider grant".to_owned()))?;
    let provider = identities
        .signin
        .as_ref()
        .and_then(|s| s.provider(&grant.provider))
        .ok_or_else(|| {
            refused(format!(
                "the provider {:?} is no longer configured",
                grant.provider
            ))
        })?;
    let token = grant
        .refresh_token
        .clone()
        .ok_or_else(|| refused("no refresh token".to_owned()))?;
    let user = session.user.clone();
    let fresh = provider
        .refreshes
        .run(&token, || async {
            let outcome = match tokio::time::timeout(REFRESH_WAIT, provider.refresh(&token)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ProviderError::TimedOut(format!(
                    "the provider did not respond to the refresh within {REFRESH_WAIT:?}"
                ))),
            };
            // Logged once per attempt, not once per waiting request.
            if let Err(error) = &outcome
                && error.is_transient()
            {
                tracing::warn!(provider = %provider.config.name, %user, %error,
                    "Refresh not possible now; the session is served until its own end");
            }
            outcome
        })
        .await?;

    grant.refresh_token = fresh.refresh_token;
    grant.access_expires_at = fresh.access_expires_at;
    if fresh.id_token.is_some() {
        grant.id_token = fresh.id_token;
        session.email = fresh.email;
        session.groups = fresh.groups;
    }
    Ok(session)
}
