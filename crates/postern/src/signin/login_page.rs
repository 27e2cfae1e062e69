//! The HTML of postern's login page: self-contained (no scripts, no
//! external assets), every value escaped, and served with a
//! Content-Security-Policy that allows only its own inline style.

use std::sync::LazyLock;

use base64::Engine;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, REFERRER_POLICY, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::http::Body;
use crate::http::responses::full;

/// The page's only style sheet. The CSP names its SHA-256, so no other
/// inline style runs.
const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:22rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.4rem;margin-top:0}\
label{display:block;margin:.8rem 0 .3rem}input{width:100%;box-sizing:border-box;\
padding:.5rem;font-size:1rem}button,a.button{display:block;width:100%;box-sizing:border-box;\
margin-top:1rem;padding:.6rem;font-size:1rem;text-align:center;border:0;border-radius:4px;\
background:#2457c5;color:#fff;text-decoration:none;cursor:pointer}\
.error{color:#a40000;background:#fde8e8;padding:.6rem;border-radius:4px}\
.or{text-align:center;color:#666;margin:1.2rem 0 0}";

static STYLE_HASH: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(STYLE.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
});

/// The contents of one rendering of the page.
pub struct Page<'a> {
    /// The return address after signing in, already validated.
    pub rd: &'a str,
    /// Whether to show the user name and password form.
    pub password_form: bool,
    /// Names of the upstream providers, one button each.
    pub providers: &'a [String],
    /// The user name to fill in again after a failed attempt.
    pub user: &'a str,
    /// One message above the form, such as a failed sign-in.
    pub message: Option<&'a str>,
}

// === impl Page ===

impl Page<'_> {
    /// Renders the page as a response with `status`, for a cluster whose
    /// apps live under `hostname`.
    pub fn response(&self, status: StatusCode, hostname: &str) -> Response<Body> {
        let mut response = Response::new(full(self.html()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        );
        headers.insert(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        );
        if let Ok(csp) = HeaderValue::from_str(&content_security_policy(hostname)) {
            headers.insert(http::header::CONTENT_SECURITY_POLICY, csp);
        }
        response
    }

    fn html(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>Sign in</title><style>",
        );
        out.push_str(STYLE);
        out.push_str("</style></head><body><main><h1>Sign in</h1>");
        if let Some(message) = self.message {
            out.push_str("<p class=\"error\" role=\"alert\">");
            out.push_str(&escape(message));
            out.push_str("</p>");
        }
        if self.password_form {
            out.push_str("<form method=\"post\" action=\"/login\">");
            out.push_str("<input type=\"hidden\" name=\"rd\" value=\"");
            out.push_str(&escape(self.rd));
            out.push_str(
                "\"><label for=\"username\">User name</label>\
                 <input id=\"username\" name=\"username\" autocomplete=\"username\" \
                 required autofocus value=\"",
            );
            out.push_str(&escape(self.user));
            out.push_str(
                "\"><label for=\"password\">Password</label>\
                 <input id=\"password\" name=\"password\" type=\"password\" \
                 autocomplete=\"current-password\" required>\
                 <button type=\"submit\">Sign in</button></form>",
            );
        }
        if self.password_form && !self.providers.is_empty() {
            out.push_str("<p class=\"or\">or</p>");
        }
        for provider in self.providers {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("provider", provider)
                .append_pair("rd", self.rd)
                .finish();
            out.push_str("<a class=\"button\" href=\"/oauth2/start?");
            out.push_str(&escape(&query));
            out.push_str("\">Sign in with ");
            out.push_str(&escape(provider));
            out.push_str("</a>");
        }
        out.push_str("</main></body></html>\n");
        out
    }
}

/// Allows nothing but the page's own style sheet and its form, which may be
/// sent to postern and be redirected to an app under `hostname` (browsers
/// apply `form-action` to the redirect after a submission too). Framing is
/// denied against clickjacking.
fn content_security_policy(hostname: &str) -> String {
    format!(
        "default-src 'none'; style-src 'sha256-{}'; form-action 'self' {hostname}:* \
         *.{hostname}:*; frame-ancestors 'none'; base-uri 'none'",
        *STYLE_HASH
    )
}

/// Adds `Retry-After` in whole seconds, rounded up.
pub fn with_retry_after(mut response: Response<Body>, wait: std::time::Duration) -> Response<Body> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// Escapes text for HTML element content and quoted attribute values.
/// Written by hand because it is five replacements, all that the page needs.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_escaped() {
        let providers = ["<dex>\"".to_owned()];
        let page = Page {
            rd: "https://a.example.test/?q=\"><script>x</script>",
            password_form: true,
            providers: &providers,
            user: "<b>mallory</b>'",
            message: Some("<i>wrong</i>"),
        };
        let html = page.html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(!html.contains("<dex>"), "{html}");
        assert!(html.contains("&lt;b&gt;mallory&lt;/b&gt;&#39;"), "{html}");
        assert!(
            html.contains("provider=%3Cdex%3E%22&amp;rd=https%3A%2F%2Fa.example.test"),
            "{html}"
        );
    }

    #[test]
    fn form_only_with_users() {
        let providers = ["dex".to_owned()];
        let page = Page {
            rd: "/",
            password_form: false,
            providers: &providers,
            user: "",
            message: None,
        };
        let html = page.html();
        assert!(!html.contains("<form"), "{html}");
        assert!(
            html.contains("href=\"/oauth2/start?provider=dex&amp;rd=%2F\""),
            "{html}"
        );
    }

    #[test]
    fn csp_allows_only_the_style() {
        let page = Page {
            rd: "/",
            password_form: true,
            providers: &[],
            user: "",
            message: None,
        };
        let response = page.response(StatusCode::OK, "example.test");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(
            csp.contains("form-action 'self' example.test:* *.example.test:*"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}
