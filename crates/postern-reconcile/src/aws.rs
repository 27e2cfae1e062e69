//! AWS I/O: reading the PrivateLink side into an [`Observed`], and applying
//! a [`Plan`](crate::plan::Plan).
//!
//! Credentials, region and endpoint URLs come from the SDK's standard
//! sources (environment, profile files, web identity for IAM roles for
//! service accounts, the container credentials of EKS Pod Identity). The
//! region falls back to `cluster.region`. Throttling and transient errors
//! are retried by the SDK's standard retry mode: exponential backoff with
//! jitter, up to [`MAX_ATTEMPTS`] attempts per call.

mod apply;
mod read;

use std::fmt;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};

pub use apply::{Applied, apply};
pub use read::{read_connections, read_observed};

/// Attempts per call, the first included, before an error is final.
pub const MAX_ATTEMPTS: u32 = 6;
/// The first retry's delay; each later one doubles, with jitter, up to the
/// SDK's cap of 20 seconds.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Time one attempt of a call may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The two API clients a run needs.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// The region the clients call.
    pub region: String,
}

/// A failed AWS call, named with the resource it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The API action, such as `AcceptVpcEndpointConnections`.
    pub call: &'static str,
    /// The resource, such as a service id, or what was searched for.
    pub resource: String,
    pub kind: ErrorKind,
    /// The error code and message from AWS, or the SDK's description.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The credentials lack a permission.
    AccessDenied,
    /// The resource does not exist (any more).
    NotFound,
    /// Anything else, after the retries.
    Other,
}

// === impl Clients ===

impl Clients {
    /// Loads the SDK's configuration and builds both clients.
    pub async fn new(home_region: &str) -> Clients {
        let region =
            RegionProviderChain::default_provider().or_else(Region::new(home_region.to_owned()));
        let retry = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(INITIAL_BACKOFF);
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(retry)
            .timeout_config(timeouts)
            .load()
            .await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| home_region.to_owned());
        Clients {
            ec2: aws_sdk_ec2::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            region,
        }
    }
}

// === impl AwsError ===

impl AwsError {
    /// Classifies an SDK error from `call` on `resource`.
    pub fn from_sdk<E, R>(
        call: &'static str,
        resource: impl Into<String>,
        error: aws_sdk_ec2::error::SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let kind = classify(&code);
        let detail = match error.message() {
            Some(message) if !code.is_empty() => format!("{code}: {message}"),
            _ => DisplayErrorContext(&error).to_string(),
        };
        AwsError {
            call,
            resource: resource.into(),
            kind,
            detail,
        }
    }

    /// Builds an error for an item that a batch call reported as failed.
    pub fn unsuccessful(
        call: &'static str,
        resource: impl Into<String>,
        code: &str,
        message: &str,
    ) -> AwsError {
        AwsError {
            call,
            resource: resource.into(),
            kind: classify(code),
            detail: format!("{code}: {message}"),
        }
    }
}

/// Maps an AWS error code to the kind of failure.
fn classify(code: &str) -> ErrorKind {
    match code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthFailure" => {
            ErrorKind::AccessDenied
        }
        code if code.contains("NotFound") => ErrorKind::NotFound,
        _ => ErrorKind::Other,
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let AwsError {
            call,
            resource,
            detail,
            ..
        } = self;
        match self.kind {
            ErrorKind::AccessDenied => write!(
                f,
                "{call} on {resource} was denied ({detail}); allow {}:{call} for the \
                 credentials that postern reconcile uses",
                iam_service(call)
            ),
            ErrorKind::NotFound => write!(
                f,
                "{call} on {resource} failed because the resource was not found ({detail})"
            ),
            ErrorKind::Other => write!(f, "{call} on {resource} failed: {detail}"),
        }
    }
}

impl std::error::Error for AwsError {}

/// Returns the IAM service prefix of an API action.
fn iam_service(call: &str) -> &'static str {
    match call {
        "DescribeLoadBalancers" | "DescribeTags" => "elasticloadbalancing",
        _ => "ec2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classified() {
        assert_eq!(classify("UnauthorizedOperation"), ErrorKind::AccessDenied);
        assert_eq!(classify("AccessDenied"), ErrorKind::AccessDenied);
        assert_eq!(
            classify("InvalidVpcEndpointServiceId.NotFound"),
            ErrorKind::NotFound
        );
        assert_eq!(classify("LoadBalancerNotFound"), ErrorKind::NotFound);
        assert_eq!(classify("RequestLimitExceeded"), ErrorKind::Other);
    }

    #[test]
    fn denied_message_names_call_and_resource() {
        let error = AwsError::unsuccessful(
            "AcceptVpcEndpointConnections",
            "vpce-svc-0a1b2c3d",
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        );
        let message = error.to_string();
        assert!(message.contains("AcceptVpcEndpointConnections on vpce-svc-0a1b2c3d"));
        assert!(message.contains("allow ec2:AcceptVpcEndpointConnections"));
        assert_eq!(iam_service("DescribeTags"), "elasticloadbalancing");
        assert!(message.contains("not authorized"));
    }
}
