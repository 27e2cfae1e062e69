//! Demo upstreams for the quickstart: an echo app and a slow event stream.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::http::Body;
use crate::http::responses::full;

/// How many events the event stream sends, and the pause between them.
const EVENT_COUNT: u32 = 10;
const EVENT_PAUSE: Duration = Duration::from_millis(500);

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, app: DemoApp) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(app, request));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug, Clone, Copy)]
pub enum DemoApp {
    /// Returns the request it received as JSON.
    Echo,
    /// Streams server-sent events slowly.
    Events,
}

async fn respond(app: DemoApp, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match app {
        DemoApp::Echo => echo(request).await,
        DemoApp::Events => events(),
    })
}

async fn echo(request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value.into())
        })
        .collect();
    let reply = serde_json::json!({
        "app": "echo",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(full(format!("{reply:#}\n")));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn events() -> Response<Body> {
    let stream = futures_util::stream::unfold(0u32, |n| async move {
        if n == EVENT_COUNT {
            return None;
        }
        if n > 0 {
            tokio::time::sleep(EVENT_PAUSE).await;
        }
        let event = format!(
            "id: {n}\nevent: tick\ndata: tick {} of {EVENT_COUNT}\n\n",
            n + 1
        );
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), n + 1))
    });
    let body = StreamBody::new(stream)
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}
