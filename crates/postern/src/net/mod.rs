//! Byte-level connection handling that comes before HTTP.

pub mod framing;
pub mod prefixed;
pub mod proxy_header;
