//! Sending a request upstream and shaping the response.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, HOST, HeaderValue, UPGRADE};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::pool::PooledBody;
use super::upstream::{UpstreamFailure, describe};
use super::{ConnectionInfo, Exchange, websocket};
use crate::auth::Identity;
use crate::http::body::{BodyEnd, BodyTimeout, CountingBody, ResponseBody};
use crate::http::headers::{self, Origin};
use crate::http::responses::json_error;
use crate::http::send_clock::SendClock;
use crate::http::{Body, BoxError};
use crate::routing::Route;
use crate::telemetry::access::{AccessRecord, millis};
use crate::telemetry::metrics;

/// Sends the request to the route's upstream and returns its response, or a
/// 502 or 504 that names the failure.
pub(super) async fn forward(
    conn: &ConnectionInfo,
    route: &Arc<Route>,
    mut parts: http::request::Parts,
    body: Incoming,
    assertion: Option<HeaderValue>,
    exchange: &mut Exchange,
) -> Response<Body> {
    // A server must ignore Upgrade in an HTTP/1.0 request (RFC 9110 section
    // 7.8), and HTTP/2 has no Upgrade: such a request is forwarded as a plain
    // one, without its hop-by-hop Upgrade header.
    let websocket =
        headers::is_websocket_upgrade(&parts.headers) && parts.version == Version::HTTP_11;

    let request = match upstream_request(conn, &mut parts, body, exchange, websocket) {
        Ok(mut request) => {
            if let Some(assertion) = assertion {
                request
                    .headers_mut()
                    .insert(headers::X_POSTERN_ASSERTION, assertion);
            }
            Ok(request)
        }
        Err(response) => Err(response),
    };
    let request = match request {
        Ok(request) => request,
        Err(response) => return *response,
    };

    // Wait for response headers, within both the header timeout and what is
    // left of the total timeout.
    let mut wait = route.timeouts.response_headers;
    if let Some(total) = route.timeouts.total {
        wait = wait.min(total.saturating_sub(exchange.started.elapsed()));
    }
    let sent = Instant::now();
    let outcome = tokio::time::timeout(wait, route.client().send(request)).await;
    exchange.record.upstream_ms = Some(millis(sent.elapsed()));

    let response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let failure = UpstreamFailure::classify(&error);
            if !failure.is_upstream() {
                tracing::info!(
                    app = %route.app,
                    request_id = %exchange.record.request_id,
                    reason = failure.as_str(),
                    error = %describe(&error),
                    "Client request body failed"
                );
                return upstream_failed(conn, route, exchange, failure);
            }
            tracing::warn!(
                app = %route.app,
                upstream = %route.upstream,
                request_id = %exchange.record.request_id,
                reason = failure.as_str(),
                error = %describe(&error),
                "Upstream request failed"
            );
            return upstream_failed(conn, route, exchange, failure);
        }
        Err(_elapsed) => {
            tracing::warn!(
                app = %route.app,
                upstream = %route.upstream,
                request_id = %exchange.record.request_id,
                timeout = ?wait,
                "Upstream sent no response headers in time"
            );
            return upstream_failed(conn, route, exchange, UpstreamFailure::HeaderTimeout);
        }
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return websocket::tunnel(conn, route, websocket, response, &exchange.record);
    }
    shape_response(response)
}

/// Builds the upstream request: the route's origin, the normalized host,
/// cleaned headers and the gateway's own forwarding and identity headers.
fn upstream_request(
    conn: &ConnectionInfo,
    parts: &mut http::request::Parts,
    body: Incoming,
    exchange: &Exchange,
    websocket: bool,
) -> Result<Request<Body>, Box<Response<Body>>> {
    let host = exchange.record.host.as_deref().unwrap_or_default();
    // Origin-form (RFC 9112 section 3.2.1): the pool connects to the
    // route's upstream itself, and the Host header names the app.
    let mut target = http::uri::Parts::default();
    target.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    let uri = Uri::from_parts(target).map_err(|_| {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid request target",
        )
    })?;

    let mut h = std::mem::take(&mut parts.headers);
    // Client-sent identity headers are already gone: `decide` removes them
    // before the credential check.
    headers::strip_hop_by_hop(&mut h);
    headers::set_forwarded(
        &mut h,
        &Origin {
            client: &conn.forwarded_for,
            trusted: conn.forwarded_trusted,
            tls: conn.tls,
            host,
        },
    );
    if let Some(value) = &exchange.request_id {
        h.insert(headers::X_REQUEST_ID, value.clone());
    }
    if let Some(identity) = parts.extensions.get::<Identity>() {
        set_identity_headers(&mut h, identity);
    }
    if let Ok(value) = HeaderValue::from_str(host) {
        h.insert(HOST, value);
    }
    if websocket {
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }

    let body = CountingBody::new(body, exchange.bytes_in.clone(), conn.request_body_idle).boxed();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = h;
    Ok(request)
}

/// Sets `X-Auth-Request-User`, `-Email` and `-Groups` from the identity.
/// The user name is sent as is (a name that is no valid header value is
/// left out); email and groups are percent-encoded.
fn set_identity_headers(h: &mut http::HeaderMap, identity: &Identity) {
    if let Ok(value) = HeaderValue::from_str(&identity.name) {
        h.insert(headers::X_AUTH_REQUEST_USER, value);
    }
    if let Some(email) = &identity.email
        && let Ok(value) = HeaderValue::try_from(headers::identity_value(email))
    {
        h.insert(headers::X_AUTH_REQUEST_EMAIL, value);
    }
    if let Some(value) = headers::groups_value(&identity.groups) {
        h.insert(headers::X_AUTH_REQUEST_GROUPS, value);
    }
}

fn upstream_failed(
    conn: &ConnectionInfo,
    route: &Route,
    exchange: &mut Exchange,
    failure: UpstreamFailure,
) -> Response<Body> {
    if failure.is_upstream() {
        metrics::record_upstream_error(conn.gate, &route.app, failure.as_str());
        exchange.record.decision = "error";
    } else {
        exchange.record.decision = "deny";
    }
    exchange.record.reason = failure.as_str();
    let message = match failure {
        UpstreamFailure::ClientBody => "the request body is malformed or incomplete",
        UpstreamFailure::ClientBodyTimeout => "the request body stalled",
        _ if failure.status() == StatusCode::GATEWAY_TIMEOUT => "the app did not respond in time",
        _ => "the app could not be reached",
    };
    json_error(failure.status(), failure.as_str(), message)
}

/// Removes hop-by-hop headers from an upstream response.
fn shape_response(response: Response<PooledBody>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    // `TE: trailers` is kept for requests (gRPC); in a response TE means
    // nothing and crosses no hop.
    parts.headers.remove(http::header::TE);
    // The client's protocol is the gateway's own, whatever the upstream
    // spoke (hyper would otherwise respond to an HTTP/1.1 client in HTTP/1.0).
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, body.map_err(BoxError::from).boxed())
}

/// Wraps a response body so that `on_end` runs once when it ends.
pub(super) fn log_on_end(
    response: Response<Body>,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    http2: bool,
    clock: Option<Arc<SendClock>>,
    on_end: impl FnOnce(u64, BodyEnd) + Send + Sync + Unpin + 'static,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let body = ResponseBody::new(body, idle, deadline, http2, clock, on_end);
    Response::from_parts(parts, body.boxed())
}

/// The cause of a body's drop before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DropCause {
    /// The client closed its connection or reset its stream.
    ClientClosed,
    /// The client accepted no bytes for `limits.send_timeout`, so postern
    /// closed its connection.
    SendTimeout,
    /// The gateway is shutting down and its grace period ran out.
    Shutdown,
}

/// Records in the access log how a streamed body ended, when it did not end
/// normally. `dropped` is the cause of a drop.
pub(super) fn note_body_end(record: &mut AccessRecord, end: BodyEnd, dropped: DropCause) {
    let reason = match end {
        BodyEnd::Complete => return,
        BodyEnd::Timeout(BodyTimeout::Idle) => "upstream_body_idle_timeout",
        BodyEnd::Timeout(BodyTimeout::Total) => "total_timeout",
        BodyEnd::Timeout(BodyTimeout::RequestIdle) => "client_body_timeout",
        BodyEnd::UpstreamError => "upstream_body_error",
        BodyEnd::Dropped => match dropped {
            DropCause::ClientClosed => "client_closed",
            DropCause::SendTimeout => "client_send_timeout",
            // At exit the runtime drops the bodies the grace period cut short.
            DropCause::Shutdown => "gateway_shutdown",
        },
    };
    if record.decision == "allow" {
        record.decision = "error";
    }
    record.reason = reason;
    if let (Some(app), BodyEnd::Timeout(_) | BodyEnd::UpstreamError) = (&record.app, end) {
        metrics::record_upstream_error(record.gate, app, reason);
    }
}
