//! HTTP hygiene: header rules, framing checks, bodies and synthetic
//! responses.

pub mod body;
pub mod headers;
pub mod negotiate;
pub mod responses;
pub mod send_clock;

/// The error type of every body the gateway sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the gateway forwards.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
