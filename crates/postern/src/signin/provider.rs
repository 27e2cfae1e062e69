//! One upstream OpenID provider, used as a relying party: discovery,
//! the authorization URL with PKCE, state and nonce, the code exchange with
//! a fully verified ID token, refresh, and the end-session URL.
//!
//! The protocol work is the `openidconnect` crate's. postern adds caching
//! of the discovery document (fetched again, rate-limited, when an ID token
//! is signed by a key it does not know, so a key rotation at the provider
//! needs no restart) and the mapping of claims to a session.

use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ErrorResponse, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse,
};
use tokio::time::Instant;

use super::claims::map_claims;
use crate::config::identity::ProviderConfig;
use crate::identity::fetch::error_chain;

/// Time one call to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest time between two discoveries caused by an unknown signing key.
const MIN_REDISCOVERY: Duration = Duration::from_secs(5);
/// Maximum age of a discovery document before it is fetched again.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(3600);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A failed call to the provider, by what it means for the session or
/// sign-in that needed it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an OAuth error (such as `invalid_grant`),
    /// or its ID token failed verification: the grant is no good.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or its answer was not understood.
    #[error("{0}")]
    Unreachable(String),
    /// The provider did not answer in time.
    #[error("{0}")]
    TimedOut(String),
    /// The provider sent a JSON token response that postern cannot accept,
    /// such as an ID token whose `email_verified` is neither a boolean nor
    /// "true" or "false". A retry gets the same response.
    #[error("{0}")]
    Invalid(String),
}

/// A configured provider and what postern learned from it.
pub struct Provider {
    pub config: ProviderConfig,
    secret: String,
    http: reqwest::Client,
    /// The discovery document (with the JWKS) and when it was fetched.
    discovery: tokio::sync::Mutex<Option<(Arc<ProviderMetadataWithLogout>, Instant)>>,
    /// Refreshes in flight or just finished, by the refresh token's hash.
    pub refreshes: super::refresh::SingleFlight,
}

/// The authorization URL for the browser, and the values kept for the
/// callback.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A verified sign-in or refresh: the person and the provider's tokens.
#[derive(Debug, Clone)]
pub struct Grant {
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub refresh_token: Option<String>,
    pub access_expires_at: Option<u64>,
    pub id_token: Option<String>,
}

// === impl Provider ===

impl Provider {
    /// Returns the provider for `config`, shared with earlier configs that
    /// named it the same way, so a reload keeps discovery and refreshes.
    pub fn shared(config: &ProviderConfig) -> Result<Arc<Provider>, String> {
        static PROVIDERS: Mutex<Vec<Weak<Provider>>> = Mutex::new(Vec::new());
        let secret = config.client_secret.read()?;
        let mut providers = PROVIDERS.lock().unwrap_or_else(|e| e.into_inner());
        providers.retain(|p| p.strong_count() > 0);
        if let Some(found) = providers
            .iter()
            .filter_map(Weak::upgrade)
            .find(|p| p.config == *config && p.secret == secret)
        {
            return Ok(found);
        }
        // No redirects: a provider that responds with one gets an error, not
        // a request to wherever it points (openidconnect's advice against
        // server-side request forgery).
        // No pooled connections either, as a precaution: each worker thread
        // runs its own runtime, and a pooled connection is driven by the
        // runtime that opened it. Sign-ins and refreshes are rare enough to
        // connect anew.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .timeout(PROVIDER_TIMEOUT)
            .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let provider = Arc::new(Provider {
            config: config.clone(),
            secret,
            http,
            discovery: tokio::sync::Mutex::new(None),
            refreshes: super::refresh::SingleFlight::default(),
        });
        providers.push(Arc::downgrade(&provider));

        // Discover at once, so a misconfigured provider shows in the log at
        // start and the first sign-in does not wait; a failure is retried at
        // the first sign-in.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&provider);
            runtime.spawn(async move {
                let Some(provider) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = provider.metadata(false).await {
                    tracing::warn!(provider = %provider.config.name, %error, "Provider discovery failed");
                }
            });
        }
        Ok(provider)
    }

    /// Returns the `auth_method` of its sessions.
    pub fn method(&self) -> String {
        format!("oidc:{}", self.config.name)
    }

    /// Builds the authorization URL with a fresh state, nonce and PKCE
    /// (S256) verifier.
    pub async fn authorize(&self, redirect_uri: &str) -> Result<Authorization, ProviderError> {
        let client = self.client(Some(redirect_uri), false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges an authorization code and verifies the ID token: its
    /// signature, `iss`, `aud`, `exp` and `nonce`.
    pub async fn exchange(
        &self,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Grant, ProviderError> {
        let client = self.client(Some(redirect_uri), false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| refused(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("the code exchange failed", &e))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| refused("the provider's token response has no ID token".to_owned()))?
            .clone();
        let expected = Nonce::new(nonce.to_owned());
        self.verify(&client, |client| {
            id_token
                .claims(&client.id_token_verifier(), &expected)
                .map(|_| ())
                .map_err(|e| format!("the ID token failed verification: {e}"))
        })
        .await?;
        let mut grant = map_claims(&self.config, &id_token.to_string()).map_err(refused)?;
        grant.refresh_token = response.refresh_token().map(|t| t.secret().clone());
        grant.access_expires_at = response
            .expires_in()
            .map(|d| crate::identity::now() + d.as_secs());
        Ok(grant)
    }

    /// Refreshes with the provider's refresh token. A new ID token, when
    /// the provider sends one, is verified and updates the claims.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, ProviderError> {
        let client = self.client(None, false).await?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .map_err(|e| refused(format!("the provider has no token endpoint: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("the refresh failed", &e))?;
        let mut grant = match response.id_token() {
            Some(id_token) => {
                // A refreshed ID token carries no nonce (OpenID Connect
                // Core, section 12.2).
                self.verify(&client, |client| {
                    id_token
                        .claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                        .map(|_| ())
                        .map_err(|e| format!("the refreshed ID token failed verification: {e}"))
                })
                .await?;
                map_claims(&self.config, &id_token.to_string()).map_err(refused)?
            }
            None => Grant {
                user: String::new(),
                email: None,
                groups: Vec::new(),
                refresh_token: None,
                access_expires_at: None,
                id_token: None,
            },
        };
        // A provider that does not rotate refresh tokens keeps the old one.
        grant.refresh_token = Some(
            response
                .refresh_token()
                .map_or(refresh_token.to_owned(), |t| t.secret().clone()),
        );
        grant.access_expires_at = response
            .expires_in()
            .map(|d| crate::identity::now() + d.as_secs());
        Ok(grant)
    }

    /// Builds the provider's end-session URL for RP-initiated logout, when its
    /// discovery document names one.
    pub async fn end_session_url(
        &self,
        id_token: Option<&str>,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Option<String> {
        let metadata = self.metadata(false).await.ok()?;
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.config.client_id.clone()))
            .set_state(CsrfToken::new(state.to_owned()));
        if let Ok(uri) = PostLogoutRedirectUrl::new(post_logout_redirect_uri.to_owned()) {
            request = request.set_post_logout_redirect_uri(uri);
        }
        if let Some(token) = id_token.and_then(|t| CoreIdToken::from_str(t).ok()) {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url().to_string())
    }

    /// Runs an ID token check, and once more after a fresh discovery when
    /// it fails: the token may be signed with a key the provider published
    /// since the last one.
    async fn verify(
        &self,
        client: &Client,
        check: impl Fn(&Client) -> Result<(), String>,
    ) -> Result<(), ProviderError> {
        if check(client).is_ok() {
            return Ok(());
        }
        check(&self.client(None, true).await?).map_err(refused)
    }

    /// Builds a client on the current discovery document, fetched first when
    /// missing, old, or (`rediscover`) suspected stale.
    async fn client(
        &self,
        redirect_uri: Option<&str>,
        rediscover: bool,
    ) -> Result<Client, ProviderError> {
        let metadata = self.metadata(rediscover).await?;
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.secret.clone())),
        );
        let Some(uri) = redirect_uri else {
            return Ok(client);
        };
        let redirect = RedirectUrl::new(uri.to_owned())
            .map_err(|e| refused(format!("invalid redirect URI {uri:?}: {e}")))?;
        Ok(client.set_redirect_uri(redirect))
    }

    async fn metadata(
        &self,
        rediscover: bool,
    ) -> Result<Arc<ProviderMetadataWithLogout>, ProviderError> {
        let mut cached = self.discovery.lock().await;
        if let Some((metadata, fetched)) = cached.as_ref() {
            let age = fetched.elapsed();
            let fresh = age < DISCOVERY_MAX_AGE && !(rediscover && age >= MIN_REDISCOVERY);
            if fresh {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| {
            ProviderError::Unreachable(format!("invalid issuer {:?}: {e}", self.config.issuer))
        })?;
        let fetched = ProviderMetadataWithLogout::discover_async(issuer, &self.http).await;
        match fetched {
            Ok(metadata) => {
                tracing::info!(provider = %self.config.name, "Provider discovery loaded");
                let metadata = Arc::new(metadata);
                *cached = Some((metadata.clone(), Instant::now()));
                Ok(metadata)
            }
            // Keep using the old document when the provider is briefly down.
            Err(e) => match cached.as_ref() {
                Some((metadata, _)) if !rediscover => Ok(metadata.clone()),
                _ => Err(transport_error(
                    format!(
                        "discovery of {} failed: {}",
                        self.config.issuer,
                        error_chain(&e)
                    ),
                    &e,
                )),
            },
        }
    }
}

// === impl ProviderError ===

impl ProviderError {
    /// Checks whether the provider may answer later: it was unreachable or
    /// slow, rather than refusing.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProviderError::Refused(_) | ProviderError::Invalid(_))
    }
}

fn refused(message: String) -> ProviderError {
    ProviderError::Refused(message)
}

/// Classifies a failed token request. An OAuth error response is a
/// refusal, and a token response (a JSON object with `access_token`) that
/// does not parse is invalid. Anything else is transient: no connection,
/// no response in time, or another body, such as a proxy's error page.
fn token_error<RE, T>(what: &str, error: &RequestTokenError<RE, T>) -> ProviderError
where
    RE: std::error::Error + 'static,
    T: ErrorResponse + 'static,
{
    let message = format!("{what}: {}", error_chain(error));
    match error {
        RequestTokenError::ServerResponse(_) => ProviderError::Refused(message),
        RequestTokenError::Parse(_, body) if is_token_response(body) => {
            ProviderError::Invalid(message)
        }
        _ => transport_error(message, error),
    }
}

fn is_token_response(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|object| object.contains_key("access_token"))
}

/// Returns [`ProviderError::TimedOut`] when a timeout is among the
/// error's causes, else [`ProviderError::Unreachable`].
fn transport_error(message: String, error: &(dyn std::error::Error + 'static)) -> ProviderError {
    let mut cause = Some(error);
    while let Some(error) = cause {
        // The HTTP client's error arrives boxed in openidconnect's.
        let reqwest = error
            .downcast_ref::<reqwest::Error>()
            .or_else(|| error.downcast_ref::<Box<reqwest::Error>>().map(|b| &**b));
        let io_timeout = error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut);
        if io_timeout || reqwest.is_some_and(reqwest::Error::is_timeout) {
            return ProviderError::TimedOut(message);
        }
        cause = error.source();
    }
    ProviderError::Unreachable(message)
}
