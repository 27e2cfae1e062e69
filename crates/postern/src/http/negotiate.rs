//! Client detection for the responses postern writes itself: a browser
//! gets a redirect or an HTML page where an API client gets JSON.

use http::Method;
use http::header::ACCEPT;
use http::request::Parts;

/// Returns whether a request is a browser navigation: a GET or HEAD whose
/// `Accept` names `text/html`. Only these are sent to sign-in. An API call,
/// a `fetch` or a form POST gets a status code it can act on instead.
pub fn is_browser_navigation(parts: &Parts) -> bool {
    (parts.method == Method::GET || parts.method == Method::HEAD) && accepts_html(parts)
}

/// Returns whether `Accept` names `text/html`, with any parameters. `*/*`
/// alone does not count, because curl and many API clients send it.
pub fn accepts_html(parts: &Parts) -> bool {
    parts.headers.get_all(ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|item| {
                let media = item.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("text/html")
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, accept: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().method(method).uri("/");
        if let Some(accept) = accept {
            builder = builder.header(ACCEPT, accept);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn navigation_with_html_accept() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(is_browser_navigation(&parts("GET", Some(chrome))));
        assert!(is_browser_navigation(&parts("HEAD", Some("TEXT/HTML"))));
        assert!(is_browser_navigation(&parts(
            "GET",
            Some("text/html; q=0.5")
        )));
    }

    #[test]
    fn api_calls_are_not_navigations() {
        assert!(!is_browser_navigation(&parts("GET", None)));
        assert!(!is_browser_navigation(&parts("GET", Some("*/*"))));
        assert!(!is_browser_navigation(&parts(
            "GET",
            Some("application/json")
        )));
        assert!(!is_browser_navigation(&parts("POST", Some("text/html"))));
        assert!(!is_browser_navigation(&parts("GET", Some("text/htmlx"))));
    }
}
