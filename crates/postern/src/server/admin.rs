//! The admin listener: `/metrics`, `/healthz` and `/readyz`.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::Body;
use crate::http::responses::{full, json, json_error};
use crate::runtime::state::State;
use crate::telemetry::metrics;

/// Serves admin requests until `shutdown` turns true.
pub async fn run(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(state.clone(), request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the admin endpoints accept GET only",
        ));
    }
    let response = match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(full(metrics::render()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => json(StatusCode::OK, serde_json::json!({ "status": "ok" })),
        "/readyz" if state.is_draining() => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the gateway is shutting down",
        ),
        "/readyz" => readiness(&state),
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "try /metrics, /healthz or /readyz",
        ),
    };
    Ok(response)
}

/// Reports ready once every trusted JWT issuer's keys were fetched.
fn readiness(state: &State) -> Response<Body> {
    let snapshot = state.snapshot();
    let unloaded = snapshot.identities.unloaded_issuers();
    if unloaded.is_empty() {
        return json(StatusCode::OK, serde_json::json!({ "status": "ready" }));
    }
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "jwks_not_loaded",
        &format!(
            "the keys of these JWT issuers were not fetched yet: {}",
            unloaded.join(", ")
        ),
    )
}
