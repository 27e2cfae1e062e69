//! One refresh per refresh token, however many requests of a session
//! arrive together.
//!
//! A browser sends several requests at once with the same session cookie.
//! Were each to refresh, a provider that rotates refresh tokens would see
//! the old token reused and revoke the whole grant. The first request
//! refreshes; the others wait for its result, and requests that still
//! carry the old cookie shortly after get the same result too.
//!
//! A refresh that failed because the provider was unreachable or slow is
//! remembered only for [`BACKOFF`]: the next request after it tries again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::provider::{Grant, ProviderError};

/// Time a finished refresh's result is reused for requests that carry
/// the old cookie, which covers requests the browser sent before it
/// received the new cookie.
const REMEMBER: Duration = Duration::from_secs(60);
/// Time a refresh that the provider could not answer is remembered, so
/// that an outage costs one wait per this period rather than per request.
pub const BACKOFF: Duration = Duration::from_secs(5);

type Outcome = Result<Grant, ProviderError>;
/// A refresh's outcome, once known, and when it started.
type Flight = (Arc<OnceCell<Outcome>>, Instant);

/// Refreshes in flight or recently finished, by refresh-token hash.
#[derive(Default)]
pub struct SingleFlight {
    flights: Mutex<HashMap<[u8; 32], Flight>>,
}

// === impl SingleFlight ===

impl SingleFlight {
    /// Runs `refresh` for `token` unless a run for it is in flight or
    /// recent, and returns that run's outcome.
    pub async fn run<F>(&self, token: &str, refresh: impl FnOnce() -> F) -> Outcome
    where
        F: Future<Output = Outcome>,
    {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights.retain(|_, (cell, started)| remembered(cell.get(), started.elapsed()));
            flights
                .entry(key)
                .or_insert_with(|| (Arc::new(OnceCell::new()), Instant::now()))
                .0
                .clone()
        };
        cell.get_or_init(refresh).await.clone()
    }
}

/// Checks whether the outcome of a refresh that started `age` ago is still
/// reused for its token. A refresh in flight or done is reused for
/// [`REMEMBER`], one that the provider did not respond to for [`BACKOFF`].
fn remembered(outcome: Option<&Outcome>, age: Duration) -> bool {
    let unanswered = outcome.is_some_and(|o| o.as_ref().is_err_and(ProviderError::is_transient));
    age < if unanswered { BACKOFF } else { REMEMBER }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_refreshes_of_one_token_run_once() {
        let flights = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (flights, runs) = (flights.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run("rt-1", || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Grant {
                            user: "alice".into(),
                            email: None,
                            groups: Vec::new(),
                            refresh_token: Some("rt-2".into()),
                            access_expires_at: Some(1),
                            id_token: None,
                        })
                    })
                    .await
            }));
        }
        for task in tasks {
            let grant = task.await.unwrap().unwrap();
            assert_eq!(grant.refresh_token.as_deref(), Some("rt-2"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        // Another token refreshes on its own.
        let other = flights
            .run("rt-9", || async {
                Err(ProviderError::Refused("revoked".to_owned()))
            })
            .await;
        assert_eq!(other.unwrap_err().to_string(), "revoked");
    }

    #[test]
    fn an_unanswered_refresh_is_forgotten_after_the_backoff() {
        let second = Duration::from_secs(1);
        let timed_out = Err(ProviderError::TimedOut("no answer".to_owned()));
        let unreachable = Err(ProviderError::Unreachable("refused".to_owned()));
        let refused = Err(ProviderError::Refused("invalid_grant".to_owned()));
        for outcome in [&timed_out, &unreachable] {
            assert!(remembered(Some(outcome), BACKOFF - second));
            assert!(!remembered(Some(outcome), BACKOFF));
        }
        assert!(remembered(Some(&refused), BACKOFF));
        assert!(!remembered(Some(&refused), REMEMBER));
        // In flight: kept.
        assert!(remembered(None, BACKOFF));
    }
}
