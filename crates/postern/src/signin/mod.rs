//! The auth host, `auth.<cluster hostname>` on the public gate: sign-in
//! through upstream OpenID providers, sign-out, and postern's issuer
//! endpoints. Served by postern itself, never proxied and never gated.
//!
//! | path | what |
//! |---|---|
//! | `/oauth2/start?rd=URL[&provider=NAME]` | to the provider, with PKCE, state and nonce |
//! | `/oauth2/callback` | code exchange, ID token check, session, back to `rd` |
//! | `/oauth2/sign_out?rd=URL` | session cleared, then the provider's end-session endpoint; a confirmation page for a sign-out from another site |
//! | `/oauth2/signed_out` | where the provider sends the browser back after sign-out |
//! | `/login` | the login page: provider buttons, and a password form for `identities.users` |
//! | anything else | postern's issuer endpoints, when it signs tokens |

mod claims;
pub mod credential;
pub mod csrf;
mod flow;
pub mod login;
pub mod login_page;
mod pages;
pub mod provider;
pub mod redirect;
pub mod refresh;
mod sign_out;

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Response, StatusCode};

use crate::config::AUTH_APP_NAME;
use crate::config::identity::IdentityConfig;
use crate::http::Body;
use crate::identity::Identities;
use crate::session::Sessions;
use crate::telemetry::access::AccessRecord;
use provider::Provider;

/// Sign-in through upstream providers, built from one config.
pub struct SignIn {
    pub providers: Vec<Arc<Provider>>,
    /// Whether `identities.users` is set, so the login page has a
    /// password form.
    pub password_users: bool,
    pub sessions: Arc<Sessions>,
    /// The cluster hostname, for return-address checks.
    pub hostname: String,
}

/// The facts about one request that the auth host needs.
pub struct AuthRequest<'a> {
    pub identities: &'a Identities,
    /// `http` or `https`: the public gate's scheme in the browser's URLs.
    pub scheme: &'static str,
    pub body_idle: Duration,
    /// Failed password sign-ins, kept across reloads.
    pub attempts: &'a crate::identity::attempts::Attempts,
    /// The client address, as in the access log.
    pub client: std::net::IpAddr,
}

// === impl SignIn ===

impl SignIn {
    /// Builds sign-in when providers or users are configured; `sessions`
    /// is set whenever they are (the config requires it).
    pub fn new(
        config: &IdentityConfig,
        sessions: Option<&Arc<Sessions>>,
        hostname: &str,
    ) -> Result<Option<Self>, String> {
        let Some(sessions) = sessions else {
            return Ok(None);
        };
        if config.providers.is_empty() && config.users.is_empty() {
            return Ok(None);
        }
        let providers = config
            .providers
            .iter()
            .map(Provider::shared)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(SignIn {
            providers,
            password_users: !config.users.is_empty(),
            sessions: sessions.clone(),
            hostname: hostname.to_owned(),
        }))
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.config.name == name)
    }
}

/// Returns the auth host's name for a cluster hostname.
pub fn auth_host(hostname: &str) -> String {
    format!("{AUTH_APP_NAME}.{hostname}")
}

/// Builds the auth host's origin as the browser reaches it: the request's scheme
/// and port, and the auth host's name (never the client's Host text).
pub fn auth_origin(parts: &http::request::Parts, hostname: &str, scheme: &str) -> String {
    match request_port(parts) {
        Some(port) => format!("{scheme}://{}:{port}", auth_host(hostname)),
        None => format!("{scheme}://{}", auth_host(hostname)),
    }
}

/// Returns the port the client named in its Host (or HTTP/2 authority).
pub fn request_port(parts: &http::request::Parts) -> Option<u16> {
    if let Some(port) = parts.uri.port_u16() {
        return Some(port);
    }
    let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
    let (_, port) = host.rsplit_once(':')?;
    port.parse().ok()
}

/// Serves one request to the auth host.
pub async fn serve(
    request: AuthRequest<'_>,
    parts: http::request::Parts,
    body: hyper::body::Incoming,
    record: &mut AccessRecord,
) -> Response<Body> {
    let mut response = route(request, parts, body, record).await;
    harden(response.headers_mut());
    response
}

/// Adds the headers every auth-host response carries: no framing, so the
/// sign-out button cannot be clickjacked, and no MIME sniffing. A page
/// that set no Content-Security-Policy or Cache-Control of its own gets a
/// strict one. `form-action` stays open, because browsers apply it to the
/// redirect to the provider that follows a sign-out form.
fn harden(headers: &mut http::HeaderMap) {
    use http::header::{
        CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
    };
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Sends a request to the handler of its path.
async fn route(
    request: AuthRequest<'_>,
    parts: http::request::Parts,
    body: hyper::body::Incoming,
    record: &mut AccessRecord,
) -> Response<Body> {
    let identities = request.identities;
    let signin = identities.signin.as_ref();
    let path = parts.uri.path();
    match (path, signin) {
        ("/oauth2/start", Some(signin)) => flow::start(signin, &request, &parts, record).await,
        ("/oauth2/callback", Some(signin)) => {
            flow::callback(signin, &request, &parts, record).await
        }
        ("/oauth2/sign_out", Some(signin)) => {
            sign_out::serve(signin, &request, &parts, record).await
        }
        ("/oauth2/signed_out", Some(signin)) => {
            record.decision = "allow";
            record.reason = "signed_out";
            let state = query_param(&parts, "state");
            found(&redirect::safe_return(state.as_deref(), &signin.hostname))
        }
        ("/login", Some(signin)) => {
            let providers: Vec<String> = signin
                .providers
                .iter()
                .map(|p| p.config.name.clone())
                .collect();
            let login = login::Login {
                users: &identities.users,
                attempts: request.attempts,
                sessions: &signin.sessions,
                providers: &providers,
                hostname: &signin.hostname,
                client: request.client,
                body_idle: request.body_idle,
            };
            login.serve(parts, body, record).await
        }
        ("/", Some(signin)) => pages::index(signin, &parts, record).await,
        _ => match &identities.local {
            Some(local) => local.serve(parts, body, request.body_idle, record).await,
            None => {
                record.reason = "unknown_auth_path";
                crate::http::responses::json_error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such path on the auth host",
                )
            }
        },
    }
}

/// Returns a 405 response unless the method is `GET` or `HEAD`.
fn only_get(parts: &http::request::Parts, record: &mut AccessRecord) -> Option<Response<Body>> {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return None;
    }
    record.reason = "method_not_allowed";
    let mut response = pages::page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This address answers GET only.",
    );
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}

/// Builds a 405 JSON response whose `Allow` lists `allow`.
fn method_not_allowed(
    allow: &'static str,
    message: &str,
    record: &mut AccessRecord,
) -> Response<Body> {
    record.reason = "method_not_allowed";
    let mut response = crate::http::responses::json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    );
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Returns the first value of a query parameter, decoded.
fn query_param(parts: &http::request::Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Builds a 302 to `location`, never cached.
pub fn found(location: &str) -> Response<Body> {
    let mut response = Response::new(crate::http::responses::empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Adds Set-Cookie values to a response.
pub fn set_cookies(response: &mut Response<Body>, cookies: impl IntoIterator<Item = HeaderValue>) {
    for cookie in cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
}
