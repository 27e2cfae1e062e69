//! The keys of a trusted issuer: found by OIDC discovery, fetched, cached,
//! refreshed on a schedule and refetched when a token names an unknown
//! `kid`, at most once per `jwks_min_refetch_interval`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use super::fetch;
use super::jwt::KeySet;
use crate::config::identity::TrustedIssuer;

/// First wait after a failed fetch; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The cached keys of one issuer.
pub struct KeyStore {
    pub config: TrustedIssuer,
    keys: ArcSwap<KeySet>,
    /// Bumped whenever the keys change, so verdicts cached under older keys
    /// are not reused.
    generation: AtomicU64,
    loaded: AtomicBool,
    /// Time of the last fetch attempt, for the refetch rate limit; also
    /// serializes refetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    jwks_uri: OnceLock<String>,
}

// === impl KeyStore ===

impl KeyStore {
    /// Returns the store of an issuer, shared with earlier configs that
    /// named the same issuer the same way, so a reload keeps the fetched
    /// keys and readiness. A new store starts fetching at once when a Tokio
    /// runtime is running.
    pub fn shared(config: &TrustedIssuer) -> Arc<KeyStore> {
        // A process-wide list, because the keys outlive any one config
        // snapshot; entries die with the last snapshot that used them.
        static STORES: Mutex<Vec<Weak<KeyStore>>> = Mutex::new(Vec::new());
        let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
        stores.retain(|s| s.strong_count() > 0);
        if let Some(store) = stores
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| s.config == *config)
        {
            return store;
        }
        let store = Arc::new(KeyStore {
            config: config.clone(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            generation: AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            last_fetch: tokio::sync::Mutex::new(None),
            jwks_uri: OnceLock::new(),
        });
        stores.push(Arc::downgrade(&store));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(refresh(Arc::downgrade(&store)));
        }
        store
    }

    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Checks whether the keys were fetched at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Refetches the keys after a token named an unknown `kid`, unless a
    /// fetch happened within `jwks_min_refetch_interval`. Concurrent callers
    /// wait for one fetch.
    pub async fn refetch_for_unknown_key(&self) {
        let generation = self.generation();
        let mut last = self.last_fetch.lock().await;
        // Another request refetched while this one waited for the lock.
        if self.generation() != generation {
            return;
        }
        if last.is_some_and(|t| t.elapsed() < self.config.jwks_min_refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch().await {
            tracing::warn!(issuer = %self.config.name, %error, "JWKS refetch for an unknown key id failed");
        }
    }

    /// Fetches the JWKS (after discovery, the first time) and installs it.
    async fn fetch(&self) -> Result<(), String> {
        let uri = self.jwks_uri().await?;
        let document = fetch::get_json(&uri).await?;
        let (set, skipped) = KeySet::from_jwks(&document).map_err(|e| format!("{uri}: {e}"))?;
        if set.is_empty() {
            return Err(format!("{uri} has no usable signing key"));
        }
        tracing::info!(issuer = %self.config.name, keys = set.len(), skipped, jwks_uri = %uri, "JWKS loaded");
        self.keys.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Returns the configured `jwks_uri`, or the one OIDC discovery names.
    async fn jwks_uri(&self) -> Result<String, String> {
        if let Some(uri) = self.config.jwks_uri.as_ref().or(self.jwks_uri.get()) {
            return Ok(uri.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let document = fetch::get_json(&url).await?;
        // OpenID Connect Discovery 1.0, section 4.3: the document's issuer
        // must be the issuer it was fetched for.
        if document.get("issuer").and_then(|v| v.as_str()) != Some(&self.config.issuer) {
            return Err(format!(
                "{url} names another issuer than {:?}; check identities.jwt_issuers[].issuer",
                self.config.issuer
            ));
        }
        let uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{url} has no jwks_uri"))?;
        if !(uri.starts_with("https://") || same_origin(uri, &self.config.issuer)) {
            return Err(format!(
                "{url} names the jwks_uri {:?}, which is not https; set jwks_uri in the config",
                crate::redact::url_userinfo(uri)
            ));
        }
        Ok(self.jwks_uri.get_or_init(|| uri.to_owned()).clone())
    }
}

/// Fetches until the first success, retrying with backoff, then refreshes
/// on schedule until the store is dropped.
async fn refresh(store: Weak<KeyStore>) {
    let mut retry = FIRST_RETRY;
    loop {
        let Some(strong) = store.upgrade() else {
            return;
        };
        let wait = {
            let mut last = strong.last_fetch.lock().await;
            *last = Some(Instant::now());
            match strong.fetch().await {
                Ok(()) => {
                    retry = FIRST_RETRY;
                    strong.config.jwks_refresh_interval
                }
                Err(error) => {
                    tracing::warn!(issuer = %strong.config.name, %error, retry_in = ?retry, "JWKS fetch failed");
                    let wait = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    wait
                }
            }
        };
        drop(strong);
        tokio::time::sleep(wait).await;
    }
}

/// Checks whether two URLs share scheme, host and port (an `http` jwks_uri is
/// accepted only beside an `http` loopback issuer that the config allowed).
fn same_origin(a: &str, b: &str) -> bool {
    let origin = |u: &str| {
        let uri: http::Uri = u.parse().ok()?;
        Some((
            uri.scheme_str()?.to_owned(),
            uri.authority()?.as_str().to_owned(),
        ))
    };
    origin(a).is_some_and(|o| Some(o) == origin(b))
}
