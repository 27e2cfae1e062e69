//! The upstream client: one pooled HTTP/1.1 client per app.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::AppTimeouts;
use crate::http::Body;

/// How long an idle pooled upstream connection is kept. Shorter than the
/// 5-second keep-alive timeout of uvicorn and Node.js servers, so the gateway
/// seldom picks a connection that the upstream is about to close.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

pub type Client = LegacyClient<HttpConnector, Body>;

/// Why an upstream exchange failed before response headers arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The connection was refused or could not be opened.
    Refused,
    ConnectTimeout,
    /// The upstream reset or closed the connection mid-exchange.
    Reset,
    /// No response headers within the app's timeout.
    HeaderTimeout,
}

impl UpstreamFailure {
    pub fn status(self) -> http::StatusCode {
        match self {
            UpstreamFailure::Refused | UpstreamFailure::Reset => http::StatusCode::BAD_GATEWAY,
            UpstreamFailure::ConnectTimeout | UpstreamFailure::HeaderTimeout => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// A fixed code for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Refused => "upstream_connect_failed",
            UpstreamFailure::ConnectTimeout => "upstream_connect_timeout",
            UpstreamFailure::Reset => "upstream_reset",
            UpstreamFailure::HeaderTimeout => "upstream_response_timeout",
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
        UpstreamFailure::Reset
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
