//! The authorization code flow: start and callback.
//!
//! What the callback must check (state, nonce, PKCE verifier, return
//! address) travels in a short-lived sealed cookie on the auth host, not
//! in server memory, so any replica can finish a sign-in.

use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::pages::page;
use super::provider::ProviderError;
use super::{
    AuthRequest, SignIn, auth_origin, found, only_get, query_param, redirect, set_cookies,
};
use crate::http::Body;
use crate::identity::now;
use crate::session::{ProviderGrant, Session};
use crate::telemetry::access::AccessRecord;

/// Time a person has to finish signing in at the provider.
const FLOW_LIFETIME_SECS: u64 = 600;

/// The values the callback checks, sealed in the flow cookie.
///
/// NOTE: there is one flow cookie per browser, so of two sign-ins started
/// at once in two tabs only the later one can finish.
#[derive(Serialize, Deserialize)]
struct FlowState {
    provider: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
    /// The checked return address.
    rd: String,
    started_at: u64,
}

/// `GET /oauth2/start?rd=URL[&provider=NAME]`: to the provider.
pub async fn start(
    signin: &SignIn,
    request: &AuthRequest<'_>,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
) -> Response<Body> {
    if let Some(response) = only_get(parts, record) {
        return response;
    }
    let rd = redirect::safe_return(query_param(parts, "rd").as_deref(), &signin.hostname);
    let provider = match query_param(parts, "provider") {
        Some(name) => signin.provider(&name),
        None if signin.providers.len() == 1 && !signin.password_users => signin.providers.first(),
        // Several providers, or users with passwords: the login page
        // offers a choice.
        None => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", &rd)
                .finish();
            record.decision = "allow";
            record.reason = "sign_in_choice";
            return found(&format!("/login?{query}"));
        }
    };
    let Some(provider) = provider else {
        record.reason = "unknown_provider";
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown provider",
            "This gateway has no sign-in provider of that name.",
        );
    };

    let origin = auth_origin(parts, &signin.hostname, request.scheme);
    let authorization = match provider
        .authorize(&format!("{origin}/oauth2/callback"))
        .await
    {
        Ok(authorization) => authorization,
        Err(error) => {
            tracing::warn!(provider = %provider.config.name, %error, "Sign-in could not start");
            record.reason = "provider_unavailable";
            return page(
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                "The sign-in provider cannot be reached. Try again in a moment.",
            );
        }
    };
    let flow = FlowState {
        provider: provider.config.name.clone(),
        state: authorization.state,
        nonce: authorization.nonce,
        pkce_verifier: authorization.pkce_verifier,
        rd,
        started_at: now(),
    };
    let text = serde_json::to_string(&flow).unwrap_or_default();
    let cookie = signin.sessions.codec().seal_flow(&text, FLOW_LIFETIME_SECS);
    record.decision = "allow";
    record.reason = "sign_in_started";
    let mut response = found(&authorization.url);
    set_cookies(&mut response, [cookie]);
    response
}

/// `GET /oauth2/callback`: the provider sends the browser back here.
pub async fn callback(
    signin: &SignIn,
    request: &AuthRequest<'_>,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
) -> Response<Body> {
    if let Some(response) = only_get(parts, record) {
        return response;
    }
    let codec = signin.sessions.codec();
    let mut response = finish_callback(signin, request, parts, record).await;
    set_cookies(&mut response, [codec.clear_flow()]);
    response
}

async fn finish_callback(
    signin: &SignIn,
    request: &AuthRequest<'_>,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
) -> Response<Body> {
    let failed = |record: &mut AccessRecord, reason, status, message| {
        record.reason = reason;
        page(status, "Sign-in failed", message)
    };
    let flow: Option<FlowState> = signin
        .sessions
        .codec()
        .open_flow(&parts.headers)
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(|f: &FlowState| now().saturating_sub(f.started_at) <= FLOW_LIFETIME_SECS);
    let Some(flow) = flow else {
        return failed(
            record,
            "sign_in_flow_missing",
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was started in another browser. Open the app again to \
             sign in.",
        );
    };
    if query_param(parts, "error").is_some() {
        return failed(
            record,
            "provider_refused",
            StatusCode::FORBIDDEN,
            "The sign-in provider did not sign you in.",
        );
    }
    let state = query_param(parts, "state").unwrap_or_default();
    let (Some(code), true) = (
        query_param(parts, "code"),
        bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())),
    ) else {
        return failed(
            record,
            "sign_in_state_mismatch",
            StatusCode::BAD_REQUEST,
            "This sign-in response does not belong to the sign-in this browser started.",
        );
    };
    let Some(provider) = signin.provider(&flow.provider) else {
        return failed(
            record,
            "unknown_provider",
            StatusCode::BAD_REQUEST,
            "The provider of this sign-in is no longer configured.",
        );
    };

    let origin = auth_origin(parts, &signin.hostname, request.scheme);
    let redirect_uri = format!("{origin}/oauth2/callback");
    let grant = match provider
        .exchange(&redirect_uri, &code, &flow.pkce_verifier, &flow.nonce)
        .await
    {
        Ok(grant) => grant,
        Err(error) => {
            tracing::warn!(provider = %provider.config.name, %error, "Sign-in failed");
            let (reason, status, message) = match error {
                ProviderError::Refused(_) => (
                    "sign_in_failed",
                    StatusCode::UNAUTHORIZED,
                    "The sign-in provider's answer could not be verified. Try again.",
                ),
                ProviderError::Unreachable(_) => (
                    "provider_unavailable",
                    StatusCode::BAD_GATEWAY,
                    "The sign-in provider cannot be reached, so the sign-in could not be \
                     finished. Try again in a moment.",
                ),
                ProviderError::Invalid(_) => (
                    "provider_response_invalid",
                    StatusCode::BAD_GATEWAY,
                    "The sign-in provider sent an answer that postern cannot accept, so the \
                     sign-in could not be finished. postern's log names the problem.",
                ),
                ProviderError::TimedOut(_) => (
                    "provider_timeout",
                    StatusCode::GATEWAY_TIMEOUT,
                    "The sign-in provider did not answer in time, so the sign-in could not be \
                     finished. Try again in a moment.",
                ),
            };
            return failed(record, reason, status, message);
        }
    };

    let issued_at = now();
    let session = Session {
        user: grant.user,
        email: grant.email,
        groups: grant.groups,
        method: provider.method(),
        issued_at,
        expires_at: issued_at + signin.sessions.lifetime_secs(),
        provider: Some(ProviderGrant {
            provider: provider.config.name.clone(),
            refresh_token: grant.refresh_token,
            access_expires_at: grant.access_expires_at,
            id_token: grant.id_token,
        }),
    };
    let cookies = match signin.sessions.save(&parts.headers, &session).await {
        Ok(cookies) => cookies,
        Err(error) => {
            tracing::warn!(user = %session.user, %error, "Session could not be saved");
            return failed(
                record,
                "session_too_large",
                StatusCode::INTERNAL_SERVER_ERROR,
                "Your account has too many groups to keep in a session cookie.",
            );
        }
    };
    tracing::info!(user = %session.user, method = %session.method, "Signed in");
    record.decision = "allow";
    record.reason = "signed_in";
    record.identity = Some(session.user.as_str().into());
    record.auth_method = Some(session.method.as_str().into());
    let mut response = found(&flow.rd);
    set_cookies(&mut response, cookies);
    response
}
