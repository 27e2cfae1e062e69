//! postern's issuer endpoints on `auth.<cluster hostname>`: the OIDC
//! discovery document, the JWKS, and the OAuth 2.0 token endpoint for the
//! client-credentials grant (RFC 6749 section 4.4). They are served by
//! postern itself on the public gate, never proxied and never gated.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::clients::Clients;
use super::signing::Signer;
use crate::config::AUTH_APP_NAME;
use crate::config::identity::{OAuthClient, Signing};
use crate::http::Body;
use crate::http::responses::{REALM, full, json_error};
use crate::telemetry::access::AccessRecord;

/// Maximum size of a token request body.
const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

/// postern as an issuer, as served on its host.
pub struct LocalIssuer {
    /// `auth.<cluster hostname>`.
    pub host: String,
    pub signer: Signer,
    clients: Clients,
    /// The path prefix of the issuer URL, without a trailing slash.
    base_path: String,
    discovery: Bytes,
    jwks: Bytes,
}

/// The outcome of a token request, before it becomes a response.
enum TokenOutcome {
    Issued {
        client_id: String,
        token: Arc<str>,
    },
    Error {
        status: StatusCode,
        code: &'static str,
        description: &'static str,
    },
}

// === impl LocalIssuer ===

impl LocalIssuer {
    pub fn new(signing: &Signing, clients: &[OAuthClient], hostname: &str) -> Result<Self, String> {
        let signer = Signer::new(signing)?;
        let issuer = signing.issuer.trim_end_matches('/');
        let base_path = issuer
            .parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let algorithms: Vec<String> = signer
            .algorithms()
            .iter()
            .map(|a| format!("{a:?}"))
            .collect();
        let discovery = serde_json::json!({
            "issuer": signing.issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algorithms,
        });
        Ok(LocalIssuer {
            host: format!("{AUTH_APP_NAME}.{hostname}"),
            jwks: Bytes::from(signer.jwks_document().to_string()),
            discovery: Bytes::from(discovery.to_string()),
            clients: Clients::new(clients),
            signer,
            base_path,
        })
    }

    /// Serves one request to the issuer host and fills in the access log
    /// record's decision.
    pub async fn serve(
        &self,
        parts: http::request::Parts,
        body: hyper::body::Incoming,
        body_idle: Duration,
        record: &mut AccessRecord,
    ) -> Response<Body> {
        let path = parts
            .uri
            .path()
            .strip_prefix(self.base_path.as_str())
            .unwrap_or("");
        let document = match path {
            "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
                Some((&self.discovery, "issuer_discovery"))
            }
            "/.well-known/jwks.json" => Some((&self.jwks, "issuer_jwks")),
            _ => None,
        };
        if let Some((bytes, reason)) = document {
            if parts.method != Method::GET && parts.method != Method::HEAD {
                record.reason = "method_not_allowed";
                return method_not_allowed("GET, HEAD");
            }
            record.decision = "allow";
            record.reason = reason;
            return json_document(bytes.clone());
        }
        if path != "/oauth2/token" {
            record.reason = "unknown_issuer_path";
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "postern's issuer serves /.well-known/openid-configuration, \
                 /.well-known/jwks.json and /oauth2/token",
            );
        }
        if parts.method != Method::POST {
            record.reason = "method_not_allowed";
            return method_not_allowed("POST");
        }

        let form = match read_form(body, body_idle).await {
            Ok(form) => form,
            Err(description) => {
                record.reason = "invalid_token_request";
                return token_error(StatusCode::BAD_REQUEST, "invalid_request", description);
            }
        };
        match self.token(&parts.headers, &form) {
            TokenOutcome::Issued { client_id, token } => {
                tracing::info!(client_id = %client_id, "Access token issued");
                record.decision = "allow";
                record.reason = "token_issued";
                record.identity = Some(Arc::from(client_id));
                record.auth_method = Some(Arc::from("client_secret"));
                token_response(&token, self.signer.token_lifetime)
            }
            TokenOutcome::Error {
                status,
                code,
                description,
            } => {
                record.reason = code;
                token_error(status, code, description)
            }
        }
    }

    /// Decides a client-credentials token request.
    fn token(&self, headers: &http::HeaderMap, form: &[(String, String)]) -> TokenOutcome {
        let error = |status, code, description| TokenOutcome::Error {
            status,
            code,
            description,
        };
        let param = |name: &str| -> Result<Option<&str>, ()> {
            let mut values = form
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let first = values.next();
            if values.next().is_some() {
                Err(())
            } else {
                Ok(first)
            }
        };
        let (Ok(grant_type), Ok(form_id), Ok(form_secret)) = (
            param("grant_type"),
            param("client_id"),
            param("client_secret"),
        ) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter is repeated",
            );
        };
        match grant_type {
            Some("client_credentials") => {}
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only grant_type=client_credentials is supported",
                );
            }
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "grant_type is missing",
                );
            }
        }

        let basic = match basic_credentials(headers) {
            Ok(basic) => basic,
            Err(description) => {
                return error(StatusCode::BAD_REQUEST, "invalid_request", description);
            }
        };
        let (id, secret) = match (basic, form_id, form_secret) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "send the client credentials either in Authorization: Basic or in the body, not both",
                );
            }
            (Some((id, secret)), None, None) => (id, secret),
            (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            (None, _, _) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication is missing: send Authorization: Basic or client_id and client_secret",
                );
            }
        };
        if !self.clients.verify(&id, &secret) {
            tracing::info!(client_id = %id, "Token request with an unknown client or a wrong secret");
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "the client id or secret is not valid",
            );
        }
        match self.signer.issue(&id, super::now()) {
            Ok(token) => TokenOutcome::Issued {
                client_id: id,
                token,
            },
            Err(e) => {
                tracing::error!(client_id = %id, error = %e, "Access token could not be signed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the token could not be signed",
                )
            }
        }
    }
}

/// Reads an `application/x-www-form-urlencoded` body.
async fn read_form(
    body: hyper::body::Incoming,
    idle: Duration,
) -> Result<Vec<(String, String)>, &'static str> {
    let collected =
        tokio::time::timeout(idle, Limited::new(body, MAX_TOKEN_REQUEST_BYTES).collect())
            .await
            .map_err(|_| "the request body was not received in time")?
            .map_err(|_| "the request body is too large or was cut off")?
            .to_bytes();
    Ok(form_urlencoded::parse(&collected).into_owned().collect())
}

/// Reads `Authorization: Basic`, whose id and secret are form-encoded
/// (RFC 6749 section 2.3.1). `Ok(None)` when there is no such header.
fn basic_credentials(headers: &http::HeaderMap) -> Result<Option<(String, String)>, &'static str> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = "the Authorization header is not valid Basic client authentication";
    let text = value.to_str().map_err(|_| invalid)?;
    let (scheme, encoded) = text.split_once(' ').ok_or(invalid)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid)?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid)?;
    let (id, secret) = decoded.split_once(':').ok_or(invalid)?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

fn json_document(bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

fn token_response(token: &str, lifetime: Duration) -> Response<Body> {
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    });
    let mut response = Response::new(full(body.to_string()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An error response of the token endpoint (RFC 6749 section 5.2).
fn token_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "error_description": description });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED
        && let Ok(value) = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\""))
    {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this issuer endpoint does not accept that method",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}
