//! Upstream failures: how a failed exchange is classified, which status it
//! gets, and how it is logged.

use std::error::Error as _;

use super::pool::SendError;
use crate::http::body::BodyTimeout;

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

    pub fn classify(error: &SendError) -> Self {
        let error = match error {
            SendError::Connect(_) => return UpstreamFailure::Refused,
            SendError::ConnectTimeout => return UpstreamFailure::ConnectTimeout,
            SendError::Exchange(error) => error,
        };
        // hyper marks an error of the request body it was sending as a
        // user error; the body is the client's.
        let mut timed_out = false;
        let mut cause = error.source();
        while let Some(e) = cause {
            timed_out |= e.downcast_ref::<BodyTimeout>() == Some(&BodyTimeout::RequestIdle);
            cause = e.source();
        }
        if timed_out {
            UpstreamFailure::ClientBodyTimeout
        } else if error.is_user() {
            UpstreamFailure::ClientBody
        } else {
            UpstreamFailure::Reset
        }
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
pub fn describe(error: &SendError) -> String {
    let mut text = error.to_string();
    let mut cause = error.source().and_then(|e| e.source());
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
