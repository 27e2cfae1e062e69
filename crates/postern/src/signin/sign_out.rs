//! Sign-out: `/oauth2/sign_out?rd=URL` ends the session, then sends the
//! browser to the provider's end-session endpoint or to `rd`.
//!
//! Another site must not be able to sign a person out with a link or an
//! image (logout CSRF). So a GET from another site only shows a page whose
//! button POSTs the sign-out, and a POST must come from the auth host
//! itself, as the login form must (see [`super::csrf`]). A GET from the
//! auth host, an app under the cluster hostname, a bookmark or a typed
//! address still signs out at once.
//!
//! Pomerium's sign-out handler (`authenticate/handlers.go`) also shows a
//! confirmation page unless the URL carries Pomerium's own signature.
//! oauth2-proxy's (`oauthproxy.go`) signs out on any request.

use http::{Method, Response, StatusCode};

use super::csrf::{check_same_origin, is_cross_site};
use super::pages::sign_out_confirm;
use super::{
    AuthRequest, SignIn, auth_origin, found, method_not_allowed, query_param, redirect, set_cookies,
};
use crate::http::Body;
use crate::telemetry::access::AccessRecord;

/// `GET`, `HEAD` or `POST /oauth2/sign_out?rd=URL`: checks where the
/// request came from, then ends the session.
pub async fn serve(
    signin: &SignIn,
    request: &AuthRequest<'_>,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
) -> Response<Body> {
    let rd = redirect::safe_return(query_param(parts, "rd").as_deref(), &signin.hostname);
    match parts.method {
        Method::GET | Method::HEAD => {
            if is_cross_site(&parts.headers, &signin.hostname) {
                tracing::info!(client = %request.client,
                    "Sign-out from another site held for the person to confirm");
                record.reason = "sign_out_confirm";
                return sign_out_confirm(StatusCode::OK, &rd);
            }
        }
        Method::POST => {
            let host = record.host.as_deref().unwrap_or_default();
            if let Err(why) = check_same_origin(&parts.headers, host) {
                tracing::info!(client = %request.client, check = why.as_str(),
                    "Sign-out form rejected as cross-site");
                record.reason = "sign_out_cross_site";
                return sign_out_confirm(StatusCode::FORBIDDEN, &rd);
            }
        }
        _ => {
            let message = "sign-out accepts GET and POST";
            return method_not_allowed("GET, HEAD, POST", message, record);
        }
    }
    end_session(signin, request, parts, record, &rd).await
}

/// Clears the session, then sends the browser to the provider's
/// end-session endpoint when it has one, else to `rd`.
async fn end_session(
    signin: &SignIn,
    request: &AuthRequest<'_>,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
    rd: &str,
) -> Response<Body> {
    let session = signin.sessions.load(&parts.headers).await.ok().flatten();
    let cleared = signin.sessions.end(&parts.headers).await;
    record.decision = "allow";
    record.reason = "signed_out";

    let mut location = None;
    if let Some(session) = &session {
        record.identity = Some(session.user.as_str().into());
        record.auth_method = Some(session.method.as_str().into());
        tracing::info!(user = %session.user, "Signed out");
        if let Some(grant) = &session.provider
            && let Some(provider) = signin.provider(&grant.provider)
        {
            let origin = auth_origin(parts, &signin.hostname, request.scheme);
            location = provider
                .end_session_url(
                    grant.id_token.as_deref(),
                    &format!("{origin}/oauth2/signed_out"),
                    rd,
                )
                .await;
        }
    }
    let mut response = found(location.as_deref().unwrap_or(rd));
    set_cookies(&mut response, cleared);
    response
}
