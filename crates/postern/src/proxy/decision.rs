//! The request decision after admission: method and target, host
//! normalization, route, credential and access rule. `serve` and
//! `postern explain` both run [`evaluate`], so the command's account of a
//! request is the server's own decision. A [`Trace`] receives one line per
//! step; the server's trace does nothing.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::auth::{AuthError, Identity};
use crate::http::Body;
use crate::http::headers::{self, check_framing};
use crate::http::negotiate::accepts_html;
use crate::http::responses::{forbidden_by_access_rule, json_error, unauthorized};
use crate::identity;
use crate::identity::endpoints::LocalIssuer;
use crate::policy::admission::Gate;
use crate::routing::{Route, request_host};
use crate::runtime::state::Snapshot;

/// The destination of a request that passed every check.
pub enum Next<'a> {
    Forward(Arc<Route>),
    /// postern's own issuer endpoints, on `auth.<cluster hostname>`.
    Issuer(&'a LocalIssuer),
}

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
}

#[derive(Debug)]
enum DenialKind {
    Error {
        code: &'static str,
        message: Cow<'static, str>,
    },
    Unauthorized(AuthError),
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
        }
    }

    /// Builds the response the client gets.
    pub fn response(&self, parts: &Parts) -> Response<Body> {
        match &self.kind {
            DenialKind::Error { code, message } => json_error(self.status, code, message),
            DenialKind::Unauthorized(error) => unauthorized(*error),
            DenialKind::AccessRule => forbidden_by_access_rule(accepts_html(parts)),
        }
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
pub async fn evaluate<'a>(
    snapshot: &'a Snapshot,
    gate: Gate,
    parts: &mut Parts,
    described: Option<Identity>,
    trace: &mut impl Trace,
) -> (Facts, Result<Next<'a>, Denial>) {
    let mut facts = Facts::default();
    let result = steps(snapshot, gate, parts, described, trace, &mut facts).await;
    (facts, result)
}

async fn steps<'a>(
    snapshot: &'a Snapshot,
    gate: Gate,
    parts: &mut Parts,
    described: Option<Identity>,
    trace: &mut impl Trace,
    facts: &mut Facts,
) -> Result<Next<'a>, Denial> {
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

    // The issuer endpoints take no gateway credential: a machine gets its
    // token there.
    if gate == Gate::Public
        && let Some(local) = &snapshot.identities.local
        && local.host == host
    {
        trace.step(
            "route",
            format_args!("{host} is postern's issuer; no credential needed"),
        );
        return Ok(Next::Issuer(local));
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
        let identity = credential(snapshot, parts, described, trace).await?;
        facts.identity = Some(identity);
    } else {
        trace.step(
            "credential",
            format_args!("none needed: the private gate admits by network"),
        );
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

/// Runs the public gate's credential step: verifies the bearer
/// credential, or takes the identity `postern explain` was given.
async fn credential(
    snapshot: &Snapshot,
    parts: &mut Parts,
    described: Option<Identity>,
    trace: &mut impl Trace,
) -> Result<Identity, Denial> {
    if let Some(identity) = described {
        trace.step(
            "credential",
            format_args!(
                "described identity {} ({:?}, {}), taken as proven",
                identity.name, identity.kind, identity.method
            ),
        );
        return Ok(identity);
    }
    match identity::authenticate(&mut parts.headers, &snapshot.tokens, &snapshot.identities).await {
        Ok(identity) => {
            trace.step(
                "credential",
                format_args!("{} proven by {}", identity.name, identity.method),
            );
            Ok(identity)
        }
        Err(error) => {
            trace.step("credential", format_args!("rejected: {}", error.as_str()));
            Err(Denial {
                status: StatusCode::UNAUTHORIZED,
                reason: error.as_str(),
                kind: DenialKind::Unauthorized(error),
            })
        }
    }
}
