//! The session cookie as a public-gate credential, with the provider's
//! refresh when its access token is about to lapse.

use http::{HeaderMap, HeaderValue};

use crate::auth::Identity;
use crate::identity::{Identities, now};
use crate::session::Session;

/// Refresh this long before the provider's access token lapses.
const REFRESH_MARGIN_SECS: u64 = 10;

/// The outcome of reading a request's session cookie.
pub enum SessionCredential {
    /// A valid session, and the Set-Cookie values of a refreshed one.
    Valid {
        identity: Identity,
        set_cookies: Vec<HeaderValue>,
    },
    /// No valid session; Set-Cookie values that clear one that ended.
    None { clear: Vec<HeaderValue> },
    /// The session store cannot be reached, so the request gets 503.
    Unavailable,
}

/// Reads the session cookie and refreshes the provider's grant when due.
/// A failed refresh ends the session.
pub async fn session(identities: &Identities, headers: &HeaderMap) -> SessionCredential {
    let none = SessionCredential::None { clear: Vec::new() };
    let Some(sessions) = &identities.sessions else {
        return none;
    };
    let session = match sessions.load(headers).await {
        Ok(Some(session)) => session,
        Ok(None) => return none,
        Err(crate::session::SessionError::Unavailable(_)) => return SessionCredential::Unavailable,
        Err(_) => return none,
    };
    if !refresh_due(&session) {
        return SessionCredential::Valid {
            identity: session.identity(),
            set_cookies: Vec::new(),
        };
    }
    match refresh(identities, session).await {
        Ok(session) => match sessions.save(headers, &session).await {
            Ok(set_cookies) => SessionCredential::Valid {
                identity: session.identity(),
                set_cookies,
            },
            Err(error) => {
                tracing::warn!(user = %session.user, %error, "Refreshed session could not be saved");
                SessionCredential::None {
                    clear: sessions.end(headers).await,
                }
            }
        },
        Err(error) => {
            tracing::info!(%error, "Session ended: the provider refused the refresh");
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
async fn refresh(identities: &Identities, mut session: Session) -> Result<Session, String> {
    let grant = session.provider.as_mut().ok_or("no provider grant")?;
    let provider = identities
        .signin
        .as_ref()
        .and_then(|s| s.provider(&grant.provider))
        .ok_or_else(|| format!("the provider {:?} is no longer configured", grant.provider))?;
    let token = grant.refresh_token.clone().ok_or("no refresh token")?;
    let fresh = provider
        .refreshes
        .run(&token, || provider.refresh(&token))
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
