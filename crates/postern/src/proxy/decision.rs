//! The request decision after admission: method and target, host
//! normalization, route, credential and access rule. `serve` and
//! `postern explain` both run [`evaluate`], so the command's account of a
//! request is the server's own decision. A [`Trace`] receives one line per
//! step; the server's trace does nothing.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};

use crate::auth::{AuthError, Identity};
use crate::http::Body;
use crate::http::headers::{self, check_framing};
use crate::http::negotiate::{accepts_html, is_browser_navigation};
use crate::http::responses::{
    forbidden_by_access_rule, json_error, session_conflict, unauthorized,
};
use crate::identity;
use crate::policy::admission::Gate;
use crate::routing::{Route, request_host};
use crate::runtime::state::Snapshot;
use crate::signin::{
    self,
    credential::{Mode, Refresh, SessionCredential},
};

/// The destination of a request that passed every check.
pub enum Next {
    Forward(Arc<Route>),
    /// postern's own endpoints on `auth.<cluster hostname>`: sign-in,
    /// sign-out and the issuer.
    AuthHost,
}

/// Set-Cookie values of a session refreshed during the credential step,
/// for the response. The step leaves them in the request's extensions.
#[derive(Clone)]
pub struct SessionCookies(pub Vec<HeaderValue>);

/// The facts the steps found, whether or not the request passed.
#[derive(Default)]
pub struct Facts {
    /// The normalized host.
    pub host: Option<String>,
    pub route: Option<Arc<Route>>,
    pub identity: Option<Identity>,
}

/// A request that ends at the gateway, with the access log's reason.
#[derive(Debug)]
pub struct Denial {
    pub status: StatusCode,
    pub reason: &'static str,
    kind: DenialKind,
    /// Set-Cookie values that clear a session that ended.
    clear_cookies: Vec<HeaderValue>,
}

#[derive(Debug)]
enum DenialKind {
    Error {
        code: &'static str,
        message: Cow<'static, str>,
    },
    Unauthorized(AuthError),
    /// Two different session cookies and no other credential.
    SessionConflict,
    /// A browser navigation without a credential: a redirect to sign in.
    SignIn(String),
    AccessRule,
}

/// Receives one line per decision step.
pub trait Trace {
    fn step(&mut self, step: &'static str, detail: fmt::Arguments<'_>);
}

/// The server's trace, which records nothing.
pub struct NoTrace;

// === impl Denial ===

impl Denial {
    fn error(
        status: StatusCode,
        reason: &'static str,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Denial {
            status,
            reason,
            kind: DenialKind::Error {
                code,
                message: message.into(),
            },
            clear_cookies: Vec::new(),
        }
    }

    /// Returns where a browser navigation without a credential is sent to
    /// sign in, when this denial is that redirect.
    pub fn sign_in_location(&self) -> Option<&str> {
        match &self.kind {
            DenialKind::SignIn(location) => Some(location),
            _ => None,
        }
    }

    /// Builds the response the client gets.
    pub fn response(self, parts: &Parts) -> Response<Body> {
        let mut response = match &self.kind {
            DenialKind::Error { code, message } => json_error(self.status, code, message),
            DenialKind::Unauthorized(error) => unauthorized(*error),
            DenialKind::SessionConflict => session_conflict(),
            DenialKind::SignIn(location) => signin::found(location),
            DenialKind::AccessRule => forbidden_by_access_rule(accepts_html(parts)),
        };
        signin::set_cookies(&mut response, self.clear_cookies);
        response
    }
}

// === impl NoTrace ===

impl Trace for NoTrace {
    #[inline]
    fn step(&mut self, _step: &'static str, _detail: fmt::Arguments<'_>) {}
}

/// Runs the steps for one request on `gate` and returns what they found
/// with the outcome. On the public gate, client-sent identity headers and
/// the header that carried the credential are removed from `parts`.
/// `described` replaces the credential step: `postern explain` passes
/// an identity that the user described instead of a credential.
/// `scheme` is the scheme of the public gate's URLs in the browser, for
/// the return address of a sign-in. `mode` is [`Mode::ReadOnly`] for
/// `postern explain`, which must change no session.
pub async fn evaluate(
    snapshot: &Snapshot,
    gate: Gate,
    scheme: &'static str,
    parts: &mut Parts,
    described: Option<Identity>,
    mode: Mode,
    trace: &mut impl Trace,
) -> (Facts, Result<Next, Denial>) {
    let mut facts = Facts::default();
    let request = Request {
        gate,
        scheme,
        described,
        mode,
    };
    let result = steps(snapshot, request, parts, trace, &mut facts).await;
    (facts, result)
}

/// The facts about a request that the steps need beyond its head.
struct Request {
    gate: Gate,
    scheme: &'static str,
    described: Option<Identity>,
    mode: Mode,
}

async fn steps(
    snapshot: &Snapshot,
    request: Request,
    parts: &mut Parts,
    trace: &mut impl Trace,
    facts: &mut Facts,
) -> Result<Next, Denial> {
    let gate = request.gate;
    check_target(parts)?;

    let host = request_host(parts).map_err(|e| {
        trace.step("host", format_args!("rejected: {e}"));
        Denial::error(
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "bad_request",
            e.to_string(),
        )
    })?;
    trace.step("host", format_args!("normalized to {host}"));
    facts.host = Some(host.clone());

    check_framing(&parts.headers).map_err(|e| {
        Denial::error(
            StatusCode::BAD_REQUEST,
            "ambiguous_framing",
            "bad_request",
            e.to_string(),
        )
    })?;

    // The auth host takes no gateway credential: people sign in there and
    // machines get their tokens there.
    if gate == Gate::Public && snapshot.identities.auth_host.as_deref() == Some(host.as_str()) {
        trace.step(
            "route",
            format_args!("{host} is postern's sign-in and issuer host; no credential needed"),
        );
        return Ok(Next::AuthHost);
    }

    let route = snapshot.routes.lookup(gate, &host);
    match route {
        Some(route) => trace.step(
            "route",
            format_args!("app {} (upstream {})", route.app, route.upstream),
        ),
        None => trace.step(
            "route",
            format_args!("no app on the {} gate at {host}", gate.as_str()),
        ),
    }
    facts.route = route.cloned();

    // On the public gate the credential is checked before the host is
    // looked up in a response, so that a caller without one learns
    // nothing, not even which apps exist.
    headers::strip_identity_headers(&mut parts.headers);
    if gate == Gate::Public {
        let identity = credential(snapshot, request, parts, trace).await?;
        facts.identity = Some(identity);
    } else {
        trace.step(
            "credential",
            format_args!("none needed: the private gate admits by network"),
        );
    }
    // The session cookie is sent to every host under the cluster hostname,
    // the private gate's included, so it is removed before any app.
    if let Some(sessions) = &snapshot.identities.sessions {
        sessions.strip_cookies(&mut parts.headers);
    }

    let Some(route) = route else {
        return Err(Denial::error(
            StatusCode::NOT_FOUND,
            "unknown_host",
            "not_found",
            "no app is served at this host",
        ));
    };

    if let Some(identity) = &facts.identity {
        match route.access.check(identity) {
            Ok(grant) => trace.step("access rule", format_args!("allowed: {grant}")),
            Err(_) => {
                trace.step(
                    "access rule",
                    format_args!("denied: {} matches none of the app's rules", identity.name),
                );
                return Err(Denial {
                    status: StatusCode::FORBIDDEN,
                    reason: "access_rule",
                    kind: DenialKind::AccessRule,
                    clear_cookies: Vec::new(),
                });
            }
        }
    } else {
        trace.step(
            "access rule",
            format_args!("not applied: the private gate has no identities"),
        );
    }
    Ok(Next::Forward(route.clone()))
}

/// Rejects CONNECT and targets that are not a path.
fn check_target(parts: &Parts) -> Result<(), Denial> {
    if parts.method == Method::CONNECT {
        return Err(Denial::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method_not_allowed",
            "CONNECT is not supported",
        ));
    }
    // Only origin-form targets are forwarded: `*` (asterisk-form) has no
    // path to send and would not survive being joined to the upstream.
    if !parts.uri.path().starts_with('/') {
        return Err(Denial::error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "bad_request",
            "the request target must be a path starting with /",
        ));
    }
    Ok(())
}

/// Runs the public gate's credential step: a bearer token when one is
/// sent, else the session cookie, or the identity `postern explain` was
/// given. A browser navigation without a credential is sent to sign in
/// when sign-in is configured. Anything else gets 401.
async fn credential(
    snapshot: &Snapshot,
    request: Request,
    parts: &mut Parts,
    trace: &mut impl Trace,
) -> Result<Identity, Denial> {
    if let Some(identity) = request.described {
        trace.step(
            "credential",
            format_args!(
                "described identity {} ({}, {}), taken as proven",
                identity.name, identity.kind, identity.method
            ),
        );
        return Ok(identity);
    }
    let identities = &snapshot.identities;
    let error = match identity::authenticate(&mut parts.headers, &snapshot.tokens, identities).await
    {
        Ok(identity) => {
            trace.step(
                "credential",
                format_args!("{} proven by {}", identity.name, identity.method),
            );
            return Ok(identity);
        }
        Err(error) => error,
    };

    // No bearer, or one in Authorization that is the app's own key: the
    // session cookie may prove who is calling.
    let mut clear_cookies = Vec::new();
    let mut conflict = false;
    if matches!(error, AuthError::Missing | AuthError::UnknownAuthorization) {
        // Boxed: a session may need a refresh at the provider, whose state
        // is kilobytes that a request without a session cookie would carry.
        match Box::pin(signin::credential::session(
            identities,
            &parts.headers,
            request.mode,
        ))
        .await
        {
            SessionCredential::Valid {
                identity,
                set_cookies,
                refresh,
            } => {
                trace.step(
                    "credential",
                    format_args!(
                        "{} proven by a session ({})",
                        identity.name, identity.method
                    ),
                );
                trace.step("session", format_args!("{}", refresh_note(refresh)));
                if !set_cookies.is_empty() {
                    parts.extensions.insert(SessionCookies(set_cookies));
                }
                return Ok(identity);
            }
            SessionCredential::None { clear } => clear_cookies = clear,
            SessionCredential::Conflict => {
                trace.step(
                    "session",
                    format_args!("two different session cookies: neither counts"),
                );
                if let Some(sessions) = &identities.sessions {
                    let path = parts.uri.path();
                    clear_cookies = sessions.codec().clear_conflict(&parts.headers, path);
                }
                conflict = true;
            }
            SessionCredential::Unavailable => {
                trace.step(
                    "credential",
                    format_args!("the session store is unavailable"),
                );
                return Err(Denial::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session_store_unavailable",
                    "session_store_unavailable",
                    "sessions cannot be checked right now; try again in a moment",
                ));
            }
        }
    }

    trace.step("credential", format_args!("rejected: {}", error.as_str()));
    let sign_in = error == AuthError::Missing
        && identities.sign_in_configured()
        && is_browser_navigation(parts);
    let (status, kind) = if sign_in {
        let location = sign_in_location(snapshot, request.scheme, parts);
        trace.step(
            "sign-in",
            format_args!("a browser navigation: redirected to {location}"),
        );
        (StatusCode::FOUND, DenialKind::SignIn(location))
    } else if conflict && error == AuthError::Missing {
        (StatusCode::UNAUTHORIZED, DenialKind::SessionConflict)
    } else {
        (StatusCode::UNAUTHORIZED, DenialKind::Unauthorized(error))
    };
    let reason = if conflict {
        "session_cookie_conflict"
    } else {
        error.as_str()
    };
    Err(Denial {
        status,
        reason,
        kind,
        clear_cookies,
    })
}

fn refresh_note(refresh: Refresh) -> &'static str {
    match refresh {
        Refresh::NotDue => "session valid",
        Refresh::Refreshed => "session valid; refreshed at the provider",
        Refresh::Deferred => {
            "session valid; the provider could not be reached for its refresh, so the session is \
             served until its own end"
        }
        Refresh::DueNotRun => {
            "session valid; provider refresh due, the server would refresh it now"
        }
    }
}

/// Builds the sign-in address for a browser navigation, with the address
/// the browser asked for as `rd`. The sign-in validates `rd` again before
/// it redirects there.
fn sign_in_location(snapshot: &Snapshot, scheme: &str, parts: &Parts) -> String {
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let here = format!("{scheme}://{authority}{target}");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", &here)
        .finish();
    let hostname = &snapshot.config.cluster.hostname;
    format!(
        "{}/oauth2/start?{query}",
        signin::auth_origin(parts, hostname, scheme)
    )
}
