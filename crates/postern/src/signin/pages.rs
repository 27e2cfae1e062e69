//! The few HTML pages the auth host writes itself.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use super::SignIn;
use super::login_page::escape;
use crate::http::Body;
use crate::http::responses::full;
use crate::telemetry::access::AccessRecord;

/// Builds a small HTML page with a title and one paragraph.
pub fn page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    html(status, title, &format!("<p>{}</p>", escape(message)))
}

/// `GET /`: who is signed in, with a sign-out button. Sign-in and sign-out
/// land here when no safe return address was given.
pub async fn index(
    signin: &SignIn,
    parts: &http::request::Parts,
    record: &mut AccessRecord,
) -> Response<Body> {
    record.decision = "allow";
    record.reason = "auth_index";
    let session = signin.sessions.load(&parts.headers).await.ok().flatten();
    let body = match session {
        Some(session) => format!(
            "<p>Signed in as <b>{}</b> ({}).</p>{}",
            escape(&session.user),
            escape(&session.method),
            sign_out_form(None)
        ),
        None => "<p>Not signed in. <a href=\"/oauth2/start\">Sign in</a></p>".to_owned(),
    };
    html(StatusCode::OK, "postern", &body)
}

/// Builds the page for a sign-out that another site started. Showing it
/// ends no session. Its button POSTs the sign-out from the auth host, if
/// the person chooses to.
pub fn sign_out_confirm(status: StatusCode, rd: &str) -> Response<Body> {
    let body = format!(
        "<p>Another site sent you here to sign out. To sign out of every app, \
         select the button.</p>{}",
        sign_out_form(Some(rd))
    );
    html(status, "Sign out", &body)
}

/// Builds the sign-out button, a form that POSTs to `/oauth2/sign_out`
/// with `rd` as the return address when one is given.
fn sign_out_form(rd: Option<&str>) -> String {
    let action = match rd {
        Some(rd) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", rd)
                .finish();
            format!("/oauth2/sign_out?{query}")
        }
        None => "/oauth2/sign_out".to_owned(),
    };
    format!(
        "<form method=\"post\" action=\"{}\"><button>Sign out</button></form>",
        escape(&action)
    )
}

fn html(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let text = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><h1>{}</h1>{body}</body></html>\n",
        escape(title),
        escape(title)
    );
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
