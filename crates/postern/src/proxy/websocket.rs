//! WebSocket tunnels, opened only after the upstream responded with 101.

use http::Response;
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::http::Body;
use crate::http::headers;
use crate::http::responses::{empty, json_error};
use crate::telemetry::access::AccessRecord;

/// Sends the client the upstream's 101 and joins the two upgraded
/// connections in a background task.
pub(super) fn tunnel(
    client: Option<OnUpgrade>,
    mut upstream: Response<Incoming>,
    record: &AccessRecord,
) -> Response<Body> {
    let Some(client) = client else {
        // The upstream switched protocols on a request that did not ask to.
        return json_error(
            http::StatusCode::BAD_GATEWAY,
            "upstream_protocol_error",
            "the app switched protocols unexpectedly",
        );
    };
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    let request_id = record.request_id.clone();

    tokio::spawn(async move {
        let joined = tokio::try_join!(client, upstream_upgrade);
        let (client, upstream) = match joined {
            Ok(pair) => pair,
            Err(error) => {
                tracing::info!(%request_id, %error, "WebSocket upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => {
                tracing::debug!(%request_id, sent, received, "WebSocket tunnel closed")
            }
            Err(error) => tracing::debug!(%request_id, %error, "WebSocket tunnel ended"),
        }
    });

    let (mut parts, _) = upstream.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(UPGRADE, HeaderValue::from_static("websocket"));
    Response::from_parts(parts, empty())
}
