//! Responses that postern writes itself, as short JSON bodies.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;
use crate::auth::AuthError;

/// The realm in `WWW-Authenticate` challenges.
pub const REALM: &str = "postern";

/// Builds a JSON error response: `{"error": code, "message": message}`.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({ "error": code, "message": message }),
    )
}

/// Builds a JSON response with any body.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Builds a 401 with a Bearer challenge. A credential that was sent but is
/// not valid adds `error="invalid_token"` (RFC 6750 section 3.1).
pub fn unauthorized(error: AuthError) -> Response<Body> {
    let invalid = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"");
    let (challenge, message) = match error {
        AuthError::Missing => (
            format!("Bearer realm=\"{REALM}\""),
            "a gateway credential is required: send Proxy-Authorization: Bearer <token>",
        ),
        AuthError::Invalid => (invalid, "the gateway credential is not valid"),
        AuthError::NotBearer => (
            invalid,
            "the Proxy-Authorization header lacks the Bearer scheme: send \
             Proxy-Authorization: Bearer <token>",
        ),
        AuthError::Jwt(_) => (
            invalid,
            "the bearer token is not valid: its signature, issuer, audience or validity \
             period failed verification",
        ),
        AuthError::UnknownAuthorization => (
            invalid,
            "the Authorization bearer token is not a gateway credential: send the gateway \
             token in Proxy-Authorization and keep the app's key in Authorization",
        ),
    };
    let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// Builds the 401 for a request whose two session cookies open to
/// different sessions, so that neither counts. The response clears them.
pub fn session_conflict() -> Response<Body> {
    let mut response = json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the request carries two different session cookies of this gateway, so neither \
         counts; this response clears them, so sign in again",
    );
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer realm=\"{REALM}\"")) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// The page a browser gets when an app's access rules deny its user.
const FORBIDDEN_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
<title>Access denied</title></head>\n<body>\n<h1>Access denied</h1>\n\
<p>You are signed in, but this app does not admit your account. Ask the app's owner to add \
you or one of your groups to its access rules.</p>\n</body>\n</html>\n";

/// Builds the 403 for an identity that the app's access rules deny: an
/// HTML page when the client accepts HTML, JSON otherwise.
pub fn forbidden_by_access_rule(html: bool) -> Response<Body> {
    if !html {
        return json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this identity is not allowed to use this app",
        );
    }
    let mut response = Response::new(full(FORBIDDEN_PAGE));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}
