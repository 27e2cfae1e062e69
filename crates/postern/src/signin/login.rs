//! The login page on the auth host: `GET /login?rd=URL` shows it, and
//! `POST /login` signs a user in with a name and password.
//!
//! A POST goes through these steps, each of which can end it:
//! same-origin check (403), form (400), rate limits (429), password (401),
//! session (503), then a 303 to the validated return address.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::csrf::{CrossSite, check_same_origin};
use super::login_page::{Page, with_retry_after};
use crate::http::Body;
use crate::http::responses::json_error;
use crate::identity::attempts::Attempts;
use crate::identity::users::Users;
use crate::session::{Session, Sessions};
use crate::telemetry::access::AccessRecord;

/// Largest login form accepted: a user name, a password of at most 1024
/// bytes and a return address, percent-encoded.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// The one message for an unknown user and a wrong password alike.
const WRONG_CREDENTIALS: &str = "The user name or password is not valid.";

/// The login page's view of the live config and the connection.
pub struct Login<'a> {
    pub users: &'a Users,
    pub attempts: &'a Attempts,
    pub sessions: &'a Sessions,
    /// Names of the upstream OIDC providers, one button each.
    pub providers: &'a [String],
    /// The cluster hostname, for return addresses and the CSP.
    pub hostname: &'a str,
    /// The client address, as in the access log.
    pub client: IpAddr,
    /// Maximum silence while the form body arrives.
    pub body_idle: Duration,
}

/// The fields of a submitted login form.
struct Form {
    user: String,
    password: String,
    rd: Option<String>,
}

// === impl Login ===

impl Login<'_> {
    /// Serves `/login` and fills in the access log record's decision.
    pub async fn serve(
        &self,
        parts: http::request::Parts,
        body: hyper::body::Incoming,
        record: &mut AccessRecord,
    ) -> Response<Body> {
        match parts.method {
            Method::GET | Method::HEAD => {
                let rd = query_param(&parts.uri, "rd");
                record.decision = "allow";
                record.reason = "login_page";
                self.page(&self.safe_return(rd.as_deref()), "", None)
                    .response(StatusCode::OK, self.hostname)
            }
            Method::POST => self.post(parts, body, record).await,
            _ => {
                let message = "the login page accepts GET and POST";
                super::method_not_allowed("GET, HEAD, POST", message, record)
            }
        }
    }

    async fn post(
        &self,
        parts: http::request::Parts,
        body: hyper::body::Incoming,
        record: &mut AccessRecord,
    ) -> Response<Body> {
        let host = record.host.as_deref().unwrap_or_default();
        if let Err(why) = check_same_origin(&parts.headers, host) {
            count("cross_site");
            tracing::info!(client = %self.client, check = why.as_str(), "Login form rejected as cross-site");
            record.reason = match why {
                CrossSite::NoProvenance => "login_no_origin",
                CrossSite::FetchSite | CrossSite::Origin => "login_cross_site",
            };
            let page = Page {
                message: Some(
                    "The sign-in form was sent from another site. Open this page and sign in again.",
                ),
                ..self.page("/", "", None)
            };
            return page.response(StatusCode::FORBIDDEN, self.hostname);
        }

        let form = match read_form(&parts.headers, body, self.body_idle).await {
            Ok(form) => form,
            Err(message) => {
                count("invalid_request");
                record.reason = "login_invalid_form";
                let page = Page {
                    message: Some(message),
                    ..self.page("/", "", None)
                };
                return page.response(StatusCode::BAD_REQUEST, self.hostname);
            }
        };
        let rd = self.safe_return(form.rd.as_deref());

        if let Err(wait) = self.attempts.begin(&form.user, self.client) {
            count("rate_limited");
            tracing::info!(user = %shown(&form.user), client = %self.client,
                retry_after_s = wait.as_secs(), "Sign-in attempt over the rate limit");
            record.reason = "login_rate_limited";
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let message = format!(
                "Too many failed sign-in attempts. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let page = self.page(&rd, &form.user, Some(&message));
            return with_retry_after(
                page.response(StatusCode::TOO_MANY_REQUESTS, self.hostname),
                wait,
            );
        }

        // begin() has counted this attempt as a failure already.
        let Some(user) = self.users.verify(&form.user, &form.password).await else {
            count("wrong_credentials");
            tracing::info!(user = %shown(&form.user), client = %self.client,
                "Sign-in failed: unknown user name or wrong password");
            record.reason = "login_failed";
            return self
                .page(&rd, &form.user, Some(WRONG_CREDENTIALS))
                .response(StatusCode::UNAUTHORIZED, self.hostname);
        };
        self.attempts.succeeded(&user.name, self.client);

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let session = Session {
            user: user.name.clone(),
            email: user.email.clone(),
            groups: user.groups.clone(),
            method: "password".to_owned(),
            issued_at: now,
            expires_at: now + self.sessions.lifetime_secs(),
            provider: None,
        };
        let cookies = match self.sessions.save(&parts.headers, &session).await {
            Ok(cookies) => cookies,
            Err(error) => {
                count("session_error");
                tracing::error!(user = %user.name, client = %self.client, error = %error,
                    "Session could not be saved after a sign-in");
                record.reason = "session_store_unavailable";
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session_store_unavailable",
                    "the session could not be saved; try again later",
                );
            }
        };
        count("success");
        tracing::info!(user = %user.name, client = %self.client, "User signed in with a password");
        record.decision = "allow";
        record.reason = "login_succeeded";
        record.identity = Some(user.name.as_str().into());
        record.auth_method = Some("password".into());
        see_other(&rd, cookies)
    }

    fn page<'a>(&'a self, rd: &'a str, user: &'a str, message: Option<&'a str>) -> Page<'a> {
        Page {
            rd,
            password_form: !self.users.is_empty(),
            providers: self.providers,
            user,
            message,
        }
    }

    /// The return address, or the safe default when it is missing or could
    /// lead off the cluster.
    fn safe_return(&self, rd: Option<&str>) -> String {
        super::redirect::safe_return(rd, self.hostname)
    }
}

/// Reads the form: `application/x-www-form-urlencoded`, at most
/// [`MAX_FORM_BYTES`], each field at most once.
async fn read_form(
    headers: &http::HeaderMap,
    body: hyper::body::Incoming,
    idle: Duration,
) -> Result<Form, &'static str> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err("The sign-in form must be sent as application/x-www-form-urlencoded.");
    }
    let bytes = tokio::time::timeout(idle, Limited::new(body, MAX_FORM_BYTES).collect())
        .await
        .map_err(|_| "The sign-in form was not received in time.")?
        .map_err(|_| "The sign-in form is too large or was cut off.")?
        .to_bytes();
    let (mut user, mut password, mut rd) = (None, None, None);
    for (key, value) in form_urlencoded::parse(&bytes) {
        let slot = match key.as_ref() {
            "username" => &mut user,
            "password" => &mut password,
            "rd" => &mut rd,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err("A field of the sign-in form is repeated.");
        }
    }
    match (user, password) {
        (Some(user), Some(password)) => Ok(Form { user, password, rd }),
        _ => Err("Enter a user name and a password."),
    }
}

/// Returns the first value of a query parameter.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Cuts a user name to 256 bytes for a log line.
fn shown(user: &str) -> &str {
    let mut end = user.len().min(256);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    &user[..end]
}

fn count(outcome: &'static str) {
    metrics::counter!("postern_sign_in_attempts_total", "method" => "password", "outcome" => outcome)
        .increment(1);
}

/// Builds a 303 to `location` that sets the session cookies.
fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(crate::http::responses::full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    response
}
