//! The upstream client: one pooled HTTP/1.1 client per app.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::AppTimeouts;
use crate::http::Body;
use crate::http::body::BodyTimeout;

/// How long an idle pooled upstream connection is kept. Shorter than the
/// 5-second keep-alive timeout of uvicorn and Node.js servers, so the gateway
/// seldom picks a connection that the upstream is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

pub type Client = LegacyClient<HttpConnector, Body>;

/// Failure of an upstream exchange before response headers arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The connection was refused or could not be opened.
    Refused,
    ConnectTimeout,
    /// The upstream reset or closed the connection mid-exchange.
    Reset,
    /// No response headers within the app's timeout.
    HeaderTimeout,
    /// The client's request body was malformed or cut off, so the fault is
    /// the client's, not the upstream's.
    ClientBody,
    /// The client stopped sending its request body.
    ClientBodyTimeout,
}

impl UpstreamFailure {
    pub fn status(self) -> http::StatusCode {
        match self {
            UpstreamFailure::Refused | UpstreamFailure::Reset => http::StatusCode::BAD_GATEWAY,
            UpstreamFailure::ConnectTimeout | UpstreamFailure::HeaderTimeout => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamFailure::ClientBody => http::StatusCode::BAD_REQUEST,
            UpstreamFailure::ClientBodyTimeout => http::StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Returns a fixed code for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Refused => "upstream_connect_failed",
            UpstreamFailure::ConnectTimeout => "upstream_connect_timeout",
            UpstreamFailure::Reset => "upstream_reset",
            UpstreamFailure::HeaderTimeout => "upstream_response_timeout",
            UpstreamFailure::ClientBody => "client_body_invalid",
            UpstreamFailure::ClientBodyTimeout => "client_body_timeout",
        }
    }

    pub fn classify(error: &hyper_util::client::legacy::Error) -> Self {
        if error.is_connect() {
            let mut timed_out = false;
            let mut cause = error.source();
            while let Some(e) = cause {
                if let Some(io) = e.downcast_ref::<io::Error>() {
                    timed_out |= io.kind() == io::ErrorKind::TimedOut;
                }
                cause = e.source();
            }
            return if timed_out {
                UpstreamFailure::ConnectTimeout
            } else {
                UpstreamFailure::Refused
            };
        }
        // hyper marks an error of the request body it was sending as a
        // user error; the body is the client's.
        let mut cause = error.source();
        while let Some(e) = cause {
            if e.downcast_ref::<BodyTimeout>() == Some(&BodyTimeout::RequestIdle) {
                return UpstreamFailure::ClientBodyTimeout;
            }
            if e.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_user())
            {
                return UpstreamFailure::ClientBody;
            }
            cause = e.source();
        }
        UpstreamFailure::Reset
    }

    /// Checks whether the upstream, not the client, is at fault.
    pub fn is_upstream(self) -> bool {
        !matches!(
            self,
            UpstreamFailure::ClientBody | UpstreamFailure::ClientBodyTimeout
        )
    }
}

/// Describes an upstream error with its causes, for a diagnostic log line.
pub fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

pub fn client(timeouts: &AppTimeouts) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeouts.connect));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    LegacyClient::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}
