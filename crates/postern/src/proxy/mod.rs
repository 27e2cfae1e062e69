//! The per-request pipeline, the same on both gates:
//!
//! ```text
//! health check? -> method -> host -> framing -> route -> credential (public)
//!   -> upstream request (headers cleaned, forwarded, identity set)
//!   -> response (headers cleaned, body streamed with deadlines) -> access log
//! ```

pub mod decision;
mod forward;
pub mod pool;
pub mod upstream;
pub mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::auth::Identity;
use crate::http::Body;
use crate::http::body::BodyEnd;
use crate::http::headers;
use crate::http::responses::{json, json_error};
use crate::http::send_clock::SendClock;
use crate::identity::assertion::Caller;
use crate::policy::admission::{Admission, AdmissionKind, EndpointIdentity, Gate, Refusal};
use crate::routing::{Route, request_host};
use crate::runtime::state::{Snapshot, State};
use crate::telemetry::access::AccessRecord;
use decision::Next;

/// Facts about a client connection, fixed at admission.
#[derive(Clone)]
pub struct ConnectionInfo {
    pub gate: Gate,
    pub admission: Admission,
    pub peer: SocketAddr,
    pub endpoint: Option<EndpointIdentity>,
    pub tls: bool,
    /// Whether the client's X-Forwarded-* and X-Request-Id are believed.
    pub forwarded_trusted: bool,
    /// The number of the first request on this connection whose head had
    /// both Content-Length and Transfer-Encoding, or 0 (see
    /// [`crate::net::framing`]).
    pub ambiguous_framing: Arc<AtomicU64>,
    /// Requests seen on this connection, to match against
    /// `ambiguous_framing`.
    pub requests: Arc<AtomicU64>,
    /// Maximum silence inside a request body (`limits.header_read_timeout`).
    pub request_body_idle: std::time::Duration,
    /// The client and peer addresses as the access log writes them.
    pub client_text: Arc<str>,
    pub peer_text: Arc<str>,
    /// The client's IP address for X-Forwarded-For.
    pub forwarded_for: http::HeaderValue,
    /// The connection's slot, which a WebSocket tunnel keeps until it ends.
    pub guard: Arc<crate::server::listener::ConnectionGuard>,
    /// The hand-over slot of an HTTP/1.1 connection upgraded to a WebSocket.
    pub upgrade: Arc<websocket::UpgradeSlot>,
    /// Tracker of WebSocket tunnel tasks, so the drain waits for them.
    pub tunnels: tokio_util::task::TaskTracker,
    /// Set when the client accepted no bytes for `limits.send_timeout` and
    /// its connection was closed (see [`crate::net::send_timeout`]).
    pub send_timed_out: Arc<AtomicBool>,
}

/// A request on its way through the pipeline.
struct Exchange {
    started: Instant,
    record: AccessRecord,
    bytes_in: Arc<AtomicU64>,
    /// The request id as a header value, made once for the upstream request
    /// and the response.
    request_id: Option<HeaderValue>,
}

/// Serves one request.
/// `done` runs once the response body has ended or been dropped. A request
/// abandoned before its response head drops `done` without running it, so
/// a caller that counts requests ends them on drop (see `InFlight` in
/// server::protocol).
pub async fn handle(
    state: Arc<State>,
    conn: Arc<ConnectionInfo>,
    request: Request<Incoming>,
    done: impl FnOnce() + Send + Sync + Unpin + 'static,
) -> Result<Response<Body>, Infallible> {
    let clock = request.extensions().get::<Arc<SendClock>>().cloned();
    let (parts, body) = request.into_parts();
    let mut pending = Pending {
        exchange: Some(Exchange::new(&conn, &parts)),
        state: state.clone(),
        send_timed_out: conn.send_timed_out.clone(),
    };
    let exchange = pending.exchange.as_mut().expect("set above");
    let (response, timeouts) = respond(&state, &conn, parts, body, exchange).await;
    let exchange = pending.answered();
    let sending = Sending {
        connection_timed_out: conn.send_timed_out.clone(),
        clock,
    };
    Ok(exchange.finish(response, timeouts.as_ref(), state, sending, done))
}

/// Produces the response head: from the pipeline, the auth host or the
/// app. Returns the app's timeouts for a response body that streams from
/// an app.
async fn respond(
    state: &Arc<State>,
    conn: &ConnectionInfo,
    mut parts: http::request::Parts,
    body: Incoming,
    exchange: &mut Exchange,
) -> (Response<Body>, Option<crate::config::AppTimeouts>) {
    let snapshot = state.snapshot();
    let route = match decide(state, &snapshot, conn, &mut parts, &mut exchange.record).await {
        Ok(Next::Forward(route)) => route,
        Ok(Next::AuthHost) => {
            let request = crate::signin::AuthRequest {
                identities: &snapshot.identities,
                scheme: public_scheme(conn, &parts),
                body_idle: conn.request_body_idle,
                attempts: &state.sign_in_attempts,
                client: conn.admission.client.ip(),
            };
            // Boxed: the sign-in flow's state is kilobytes that every app
            // request would carry otherwise.
            let serving = crate::signin::serve(request, parts, body, &mut exchange.record);
            let response = Box::pin(serving).await;
            return (response, None);
        }
        Err(response) => return (*response, None),
    };

    let assertion = match assertion(&snapshot, conn, &route, &parts) {
        Ok(assertion) => assertion,
        Err(error) => {
            tracing::error!(app = %route.app, %error, "X-Postern-Assertion could not be signed");
            exchange.record.decision = "error";
            exchange.record.reason = "assertion_failed";
            let response = json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the gateway could not sign the identity assertion",
            );
            return (response, None);
        }
    };
    // A refreshed session's cookies go out with the app's response.
    let refreshed = parts.extensions.remove::<decision::SessionCookies>();
    let mut response = forward::forward(conn, &route, parts, body, assertion, exchange).await;
    if let Some(sessions) = &snapshot.identities.sessions {
        let dropped = sessions.strip_set_cookies(response.headers_mut());
        if dropped > 0 {
            tracing::info!(app = %route.app, request_id = %exchange.record.request_id, dropped,
                "Dropped the app's Set-Cookie for postern's own cookies");
        }
    }
    if let Some(decision::SessionCookies(cookies)) = refreshed {
        crate::signin::set_cookies(&mut response, cookies);
    }
    let timeouts = (response.status() != StatusCode::SWITCHING_PROTOCOLS).then_some(route.timeouts);
    (response, timeouts)
}

/// A request whose response head is not ready yet. hyper drops the
/// handler when the client closes its connection or resets its stream
/// first. The request is then logged as abandoned, with status 499 as
/// nginx logs it.
struct Pending {
    exchange: Option<Exchange>,
    state: Arc<State>,
    send_timed_out: Arc<AtomicBool>,
}

impl Pending {
    /// Returns the exchange once the response head is ready, so that
    /// dropping `self` logs nothing.
    fn answered(mut self) -> Exchange {
        self.exchange
            .take()
            .expect("the exchange is taken only here")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            let mut record = exchange.record;
            record.status = CLIENT_CLOSED_REQUEST;
            record.bytes_in = exchange.bytes_in.load(Ordering::Relaxed);
            record.duration_ms = crate::telemetry::access::millis(exchange.started.elapsed());
            let timed_out = self.send_timed_out.load(Ordering::Relaxed);
            let cause = drop_cause(&self.state, timed_out);
            forward::note_body_end(&mut record, BodyEnd::Dropped, cause);
            record.emit();
        }
    }
}

/// The flags that show whether the send timeout ended a response: the
/// connection's, and on HTTP/2 the stream's clock.
struct Sending {
    connection_timed_out: Arc<AtomicBool>,
    clock: Option<Arc<SendClock>>,
}

impl Sending {
    fn timed_out(&self) -> bool {
        self.connection_timed_out.load(Ordering::Relaxed)
            || self.clock.as_ref().is_some_and(|clock| clock.timed_out())
    }
}

/// Returns the cause of a request's drop before its end. The send timeout
/// and the end of a drain close connections on purpose. Any other drop
/// means the client went away.
fn drop_cause(state: &State, send_timed_out: bool) -> forward::DropCause {
    if send_timed_out {
        forward::DropCause::SendTimeout
    } else if state.is_draining() {
        forward::DropCause::Shutdown
    } else {
        forward::DropCause::ClientClosed
    }
}

/// The status nginx logs for a request whose client left before the
/// response: no response was sent, so the number appears only in the log.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Runs every check that comes before the upstream, and returns where the
/// request goes or the response that ends the request here.
async fn decide(
    state: &State,
    snapshot: &Snapshot,
    conn: &ConnectionInfo,
    parts: &mut http::request::Parts,
    record: &mut AccessRecord,
) -> Result<Next, Box<Response<Body>>> {
    if conn.admission.kind == AdmissionKind::HealthCheck {
        return Err(Box::new(health_check(state, parts, record)));
    }

    let number = conn.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if parts.version < http::Version::HTTP_2
        && conn.ambiguous_framing.load(Ordering::SeqCst) == number
    {
        record.host = request_host(parts).ok();
        record.deny("ambiguous_framing");
        let mut response = json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request has both Content-Length and Transfer-Encoding",
        );
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return Err(Box::new(response));
    }

    // Admission was decided when the connection opened; a reload since may
    // have revoked it.
    // The public gate admits everyone, so only the private gate needs the
    // endpoints list on every request.
    let still = match snapshot.rules(conn.gate) {
        Some(_) if conn.gate == Gate::Public => Ok(()),
        Some(rules) => {
            rules.still_admits(&conn.admission, conn.endpoint.as_ref(), &state.endpoints())
        }
        None => Err(Refusal::GateDisabled),
    };
    if let Err(refusal) = still {
        record.host = request_host(parts).ok();
        record.deny(refusal.as_str());
        let mut response = json_error(
            StatusCode::FORBIDDEN,
            "admission_revoked",
            "a config change revoked this connection's admission: its VPC endpoint, account or \
             source network is no longer allowed, so reconnecting does not help; check the \
             endpoints file, allowed_principals and vpc_cidrs",
        );
        // HTTP/2 has no Connection header; its streams just keep failing.
        if parts.version < http::Version::HTTP_2 {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        return Err(Box::new(response));
    }

    let (facts, result) = decision::evaluate(
        snapshot,
        conn.gate,
        public_scheme(conn, parts),
        parts,
        None,
        crate::signin::credential::Mode::Serve,
        &mut decision::NoTrace,
    )
    .await;
    record.host = facts.host;
    if let Some(route) = &facts.route {
        record.app = Some(route.app.clone());
        record.metrics = route.metrics(conn.gate).cloned();
    }
    if let Some(identity) = facts.identity {
        record.set_identity(&identity);
        parts.extensions.insert(identity);
    }
    match result {
        Ok(next) => {
            if matches!(next, Next::Forward(_)) {
                record.decision = "allow";
                record.reason = "authorized";
            }
            Ok(next)
        }
        Err(denial) => {
            record.deny(denial.reason);
            Err(Box::new(denial.response(parts)))
        }
    }
}

/// Returns the `X-Postern-Assertion` for a request that goes to `route`,
/// or `None` when postern has no signing keys or the caller has nothing to
/// assert.
fn assertion(
    snapshot: &Snapshot,
    conn: &ConnectionInfo,
    route: &Route,
    parts: &http::request::Parts,
) -> Result<Option<HeaderValue>, String> {
    let Some(local) = &snapshot.identities.local else {
        return Ok(None);
    };
    let identity = parts.extensions.get::<Identity>();
    let Some(caller) = Caller::new(conn.gate, identity, &conn.admission, conn.endpoint.as_ref())
    else {
        return Ok(None);
    };
    let now = crate::identity::now();
    snapshot
        .identities
        .assertions
        .get(&local.signer, &caller, &route.audience, now)
        .map(Some)
}

/// Returns the public gate's scheme in the browser's URLs: `https` with TLS here
/// or, from a trusted forwarder, with `X-Forwarded-Proto: https`.
pub(crate) fn public_scheme(conn: &ConnectionInfo, parts: &http::request::Parts) -> &'static str {
    let forwarded_https = conn.forwarded_trusted
        && parts
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    if conn.tls || forwarded_https {
        "https"
    } else {
        "http"
    }
}

/// Responds to the balancer's health check on a LOCAL connection:
/// `/healthz` only, and never an app.
fn health_check(
    state: &State,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
) -> Response<Body> {
    record.host = request_host(parts).ok();
    if parts.uri.path() != "/healthz" {
        record.deny("health_check_only");
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this connection may only reach /healthz",
        );
    }
    record.decision = "allow";
    record.reason = "health_check";
    if state.is_draining() {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the gateway is shutting down",
        )
    } else {
        json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
    }
}

// === impl Exchange ===

impl Exchange {
    fn new(conn: &ConnectionInfo, parts: &http::request::Parts) -> Self {
        let request_id = conn
            .forwarded_trusted
            .then(|| headers::trusted_request_id(&parts.headers).map(str::to_owned))
            .flatten()
            .unwrap_or_else(new_request_id);
        let record = AccessRecord {
            time: SystemTime::now(),
            gate: conn.gate,
            app: None,
            method: parts.method.clone(),
            host: None,
            path: parts.uri.path().to_owned(),
            protocol: protocol(parts.version),
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            upstream_ms: None,
            client_addr: conn.client_text.clone(),
            peer_addr: conn.peer_text.clone(),
            endpoint_id: conn.endpoint.as_ref().map(|e| e.id.clone()),
            endpoint_owner: conn.endpoint.as_ref().map(|e| e.owner.clone()),
            identity: None,
            auth_method: None,
            request_id,
            decision: "deny",
            reason: "",
            metrics: None,
        };
        Exchange {
            started: Instant::now(),
            request_id: HeaderValue::from_str(&record.request_id).ok(),
            record,
            bytes_in: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Wraps the response body so that the access log line is written when
    /// the body ends, with the final byte counts and duration.
    fn finish(
        self,
        mut response: Response<Body>,
        timeouts: Option<&crate::config::AppTimeouts>,
        state: Arc<State>,
        sending: Sending,
        done: impl FnOnce() + Send + Sync + Unpin + 'static,
    ) -> Response<Body> {
        let Exchange {
            started,
            mut record,
            bytes_in,
            request_id,
        } = self;
        record.status = response.status().as_u16();
        if let Some(value) = request_id {
            response.headers_mut().insert(headers::X_REQUEST_ID, value);
        }

        let idle = timeouts.map(|t| t.body_idle);
        let deadline = timeouts
            .and_then(|t| t.total)
            .map(|total| crate::deadline::after(started, total));
        let http2 = record.protocol == protocol(http::Version::HTTP_2);
        let clock = sending.clock.clone();
        forward::log_on_end(
            response,
            idle,
            deadline,
            http2,
            clock,
            move |bytes_out, end| {
                record.bytes_out = bytes_out;
                record.bytes_in = bytes_in.load(Ordering::Relaxed);
                record.duration_ms = crate::telemetry::access::millis(started.elapsed());
                let cause = drop_cause(&state, sending.timed_out());
                forward::note_body_end(&mut record, end, cause);
                record.emit();
                done();
            },
        )
    }
}

// === impl AccessRecord ===

impl AccessRecord {
    fn deny(&mut self, reason: &'static str) {
        self.decision = "deny";
        self.reason = reason;
    }

    fn set_identity(&mut self, identity: &Identity) {
        self.identity = Some(identity.name.clone());
        self.auth_method = Some(identity.method.clone());
    }
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Generates a random 128-bit request id in hex.
fn new_request_id() -> String {
    let mut text = [0u8; 32];
    hex::encode_to_slice(rand::random::<[u8; 16]>(), &mut text).expect("32 bytes hold 16 in hex");
    String::from_utf8_lossy(&text).into_owned()
}
