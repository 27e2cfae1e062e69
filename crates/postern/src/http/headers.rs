//! Which headers cross the gateway.
//!
//! Hop-by-hop headers describe one connection and never cross. Headers that
//! assert an identity or a client address are removed when a client sends
//! them, because only the gateway may set them; X-Forwarded-* and
//! X-Request-Id are kept only from configured trusted sources.

use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

/// Standard headers that apply to one connection only (RFC 9110 section
/// 7.6.1). Standard names compare by their tag, not their text.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Checks whether `name` is hop-by-hop: a standard one, or the
/// non-standard Keep-Alive and Proxy-Connection.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// Client-address headers that only a trusted source may send, besides
/// every `X-Forwarded-*` header (such as -Port and -Prefix, which some
/// frameworks read).
const FORWARDED: [&str; 2] = ["x-real-ip", "forwarded"];
const FORWARDED_PREFIX: &str = "x-forwarded-";

/// Identity header prefixes that only the gateway sets.
const IDENTITY_PREFIXES: [&str; 2] = ["x-auth-request-", "x-postern-"];

/// Compares a header name with `_` read as `-`, because CGI-style servers
/// (and so many app frameworks) treat `X_Auth_Request_User` and
/// `X-Auth-Request-User` as the same header.
fn normalized(name: &HeaderName) -> std::borrow::Cow<'_, str> {
    let name = name.as_str();
    if name.contains('_') {
        std::borrow::Cow::Owned(name.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

fn is_forwarded(name: &HeaderName) -> bool {
    // Every such name starts with x- or f; most headers are skipped here
    // without building a normalized copy.
    if !name.as_str().starts_with(['x', 'f']) {
        return false;
    }
    let name = normalized(name);
    name.starts_with(FORWARDED_PREFIX) || FORWARDED.contains(&name.as_ref())
}

fn is_identity(name: &HeaderName) -> bool {
    if !name.as_str().starts_with('x') {
        return false;
    }
    let name = normalized(name);
    IDENTITY_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Removes every header whose name matches, in one pass over the names.
/// Requests carry few headers, so a scan costs less than one lookup per
/// name that might be present.
fn remove_matching(headers: &mut HeaderMap, matches: impl Fn(&HeaderName) -> bool) {
    let mut found: Option<Vec<HeaderName>> = None;
    for name in headers.keys() {
        if matches(name) {
            found.get_or_insert_with(Vec::new).push(name.clone());
        }
    }
    for name in found.into_iter().flatten() {
        headers.remove(name);
    }
}

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
pub const X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
pub const X_AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
pub const X_POSTERN_ASSERTION: HeaderName = HeaderName::from_static("x-postern-assertion");

/// Bytes percent-encoded in `X-Auth-Request-Email` and each group of
/// `X-Auth-Request-Groups`: controls, space, `,` (the list separator) and
/// `%` itself. Every byte outside ASCII is encoded too, so any name gives a
/// valid header value and a decoded value is the exact UTF-8 name.
const IDENTITY_VALUE_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b',').add(b'%');

/// Percent-encodes an email or a group name for an identity header.
pub fn identity_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, IDENTITY_VALUE_ESCAPES).to_string()
}

/// Builds `X-Auth-Request-Groups`: each group percent-encoded, joined by
/// `,`. `None` for no groups.
pub fn groups_value(groups: &[std::sync::Arc<str>]) -> Option<HeaderValue> {
    if groups.is_empty() {
        return None;
    }
    let list: Vec<String> = groups.iter().map(|g| identity_value(g)).collect();
    HeaderValue::try_from(list.join(",")).ok()
}

/// Framing problems of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("the request has both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("the request has conflicting Content-Length values")]
    ConflictingLengths,
    #[error("the request has an invalid Content-Length")]
    InvalidLength,
}

/// Rejects ambiguous framing, which two parsers could read as different
/// requests (request smuggling). hyper already refuses some of these; the
/// check is repeated here so the rule stays true whatever hyper's version does.
pub fn check_framing(headers: &HeaderMap) -> Result<(), FramingError> {
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        return Err(FramingError::LengthAndChunked);
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter().flat_map(|v| {
        v.to_str()
            .map(|s| s.split(',').map(str::trim).collect::<Vec<_>>())
            .unwrap_or_else(|_| vec!["invalid"])
    });
    if let Some(first) = lengths.next() {
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FramingError::InvalidLength);
        }
        if lengths.any(|other| other != first) {
            return Err(FramingError::ConflictingLengths);
        }
    }
    Ok(())
}

/// Checks whether the request is a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    upgrade && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those named in `Connection`.
/// `TE: trailers` is kept, because gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let mut te = headers.get_all(TE).iter().peekable();
    let keep_te = te.peek().is_some() && te.all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    remove_matching(headers, |name| {
        is_hop_by_hop(name) && !(keep_te && name == TE) || named.contains(name)
    });
}

/// Removes every header that asserts an identity postern vouches for, in
/// any letter case (header names are case-insensitive and stored lowercase).
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    remove_matching(headers, is_identity);
}

/// Returns the client's IP address as X-Forwarded-For names it: IPv4-mapped
/// IPv6 as plain IPv4, without the port.
pub fn forwarded_for(client: std::net::SocketAddr) -> HeaderValue {
    let ip = crate::policy::admission::canonical(client.ip()).to_string();
    HeaderValue::from_str(&ip).expect("an IP address is a valid header value")
}

/// The origin of a request, as the gateway determined it.
pub struct Origin<'a> {
    /// The client's IP address, as X-Forwarded-For names it.
    pub client: &'a HeaderValue,
    /// Whether the client's own forwarding headers are believed.
    pub trusted: bool,
    pub tls: bool,
    pub host: &'a str,
}

/// Sets X-Forwarded-For, -Proto and -Host. From an untrusted client, any
/// forwarding headers it sent are dropped first. From a trusted one, the
/// client address is appended to its X-Forwarded-For, and its -Proto and
/// -Host are kept.
pub fn set_forwarded(headers: &mut HeaderMap, origin: &Origin<'_>) {
    let mut chain = None;
    if origin.trusted {
        let previous: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !previous.is_empty() {
            let client = origin.client.to_str().unwrap_or_default();
            chain = format!("{}, {client}", previous.join(", ")).try_into().ok();
        }
    } else {
        remove_matching(headers, is_forwarded);
    }

    let xff = chain.unwrap_or_else(|| origin.client.clone());
    headers.insert(X_FORWARDED_FOR, xff);
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if origin.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Ok(value) = HeaderValue::from_str(origin.host)
    {
        headers.insert(X_FORWARDED_HOST, value);
    }
}

/// Returns the client's request id if it is well formed.
pub fn trusted_request_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then_some(value)
}

#[cfg(test)]
mod tests;
