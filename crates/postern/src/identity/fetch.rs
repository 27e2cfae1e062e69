//! GET of small JSON documents (OIDC discovery, JWKS) over HTTPS, or HTTP
//! on loopback, with a timeout and a size cap.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Time one fetch may take, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Maximum size of a fetched document; real JWKS and discovery documents
/// are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Fetches `url` and parses the body as JSON.
pub async fn get_json(url: &str) -> Result<serde_json::Value, String> {
    // Messages show the URL without user info: a URL from a discovery
    // document is not checked for credentials.
    let shown = crate::redact::url_userinfo(url);
    let uri: http::Uri = url.parse().map_err(|_| format!("invalid URL {shown:?}"))?;
    let url = shown.as_ref();
    let client = client()?;
    let request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("postern/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request for {url}: {e}"))?;

    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("GET {url} failed: {}", error_chain(&e)))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("GET {url} returned {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading {url} failed: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("{url} is not valid JSON: {e}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET {url} timed out after {FETCH_TIMEOUT:?}"))?
}

/// The process's client: rustls with ring and the system's root
/// certificates. Plain HTTP is allowed by the connector; the config allows
/// it only for loopback URLs.
fn client() -> Result<&'static HttpsClient, String> {
    static CLIENT: OnceLock<Result<HttpsClient, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
                .https_or_http()
                .enable_http1()
                .build();
            Ok(Client::builder(TokioExecutor::new()).build(connector))
        })
        .as_ref()
        .map_err(Clone::clone)
}

pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
