//! The cross-site request checks of the login form and of sign-out.
//!
//! postern checks where the POST came from, with Fetch Metadata
//! (`Sec-Fetch-Site`) and, in browsers that do not send it, `Origin`,
//! instead of a double-submit token in a cookie. The apps live on subdomains
//! of the same site as the login page, and any of them can set a cookie for
//! the parent domain, which defeats a double-submit cookie. A same-origin
//! check needs no state and no secret, and every current browser sends at
//! least one of the two headers on a form POST. A POST with neither header
//! is rejected, since no browser that could be tricked into it is left.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

/// The reason a POST was rejected as cross-site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSite {
    /// `Sec-Fetch-Site` is present and is not `same-origin`.
    FetchSite,
    /// `Origin` names another host than the request's.
    Origin,
    /// Neither header was sent.
    NoProvenance,
}

// === impl CrossSite ===

impl CrossSite {
    /// Names the failed check in logs: the header that decided, or
    /// `no_origin` when neither was sent.
    pub fn as_str(self) -> &'static str {
        match self {
            CrossSite::FetchSite => "sec_fetch_site",
            CrossSite::Origin => "origin",
            CrossSite::NoProvenance => "no_origin",
        }
    }
}

/// Accepts a POST that the login page itself sent: `Sec-Fetch-Site:
/// same-origin`, or else an `Origin` whose host and port equal the
/// request's `Host` (the scheme is not compared, because TLS may end at a
/// load balancer in front of postern).
pub fn check_same_origin(headers: &HeaderMap, request_host: &str) -> Result<(), CrossSite> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(CrossSite::FetchSite)
        };
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Err(CrossSite::NoProvenance);
    };
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<http::Uri>().ok())
        .and_then(|uri| uri.authority().map(|a| a.as_str().to_ascii_lowercase()));
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| request_host.to_owned());
    match origin_authority {
        Some(authority) if authority == host => Ok(()),
        _ => Err(CrossSite::Origin),
    }
}

/// Tells whether a GET came from another site: `Sec-Fetch-Site:
/// cross-site`, or, from a browser that does not send that header, an
/// `Origin` whose host is neither `hostname` nor one of its subdomains (the
/// auth host is one). `same-site` is not cross-site, because the apps live
/// under `hostname` and may link to sign-out. A GET with neither header (a
/// bookmark, a typed address, curl) is not cross-site either: browsers send
/// no `Origin` on a plain navigation.
pub fn is_cross_site(headers: &HeaderMap, hostname: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"cross-site";
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<http::Uri>().ok())
        .filter(|uri| uri.scheme().is_some())
        .and_then(|uri| uri.host().map(str::to_ascii_lowercase));
    match origin_host {
        Some(host) => !is_under(&host, hostname),
        // `Origin: null` (an opaque origin) or a value that is not one.
        None => true,
    }
}

/// Checks whether `host` is `hostname` or one of its subdomains.
fn is_under(host: &str, hostname: &str) -> bool {
    host == hostname
        || host
            .strip_suffix(hostname)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn same_origin_accepted() {
        let host = "auth.example.test:8443";
        let fetch = headers(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(check_same_origin(&fetch, host), Ok(()));
        let origin = headers(&[
            ("host", "Auth.Example.test:8443"),
            ("origin", "https://auth.example.test:8443"),
        ]);
        assert_eq!(check_same_origin(&origin, host), Ok(()));
    }

    #[test]
    fn cross_site_rejected() {
        let host = "auth.example.test";
        let cases = [
            (
                headers(&[("sec-fetch-site", "same-site")]),
                CrossSite::FetchSite,
            ),
            (
                headers(&[("sec-fetch-site", "cross-site")]),
                CrossSite::FetchSite,
            ),
            (
                headers(&[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://auth.example.test"),
                ]),
                CrossSite::FetchSite,
            ),
            (
                headers(&[("host", host), ("origin", "https://app.example.test")]),
                CrossSite::Origin,
            ),
            (
                headers(&[("host", host), ("origin", "https://auth.example.test.evil")]),
                CrossSite::Origin,
            ),
            (
                headers(&[("host", host), ("origin", "null")]),
                CrossSite::Origin,
            ),
            (headers(&[("host", host)]), CrossSite::NoProvenance),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                check_same_origin(&headers, host),
                Err(expected),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn cross_site_get_detected() {
        let hostname = "example.test";
        let cross = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://auth.example.test"),
            ]),
            headers(&[("origin", "https://evil.test")]),
            headers(&[("origin", "https://example.test.evil")]),
            headers(&[("origin", "https://evilexample.test")]),
            headers(&[("origin", "null")]),
        ];
        for case in &cross {
            assert!(is_cross_site(case, hostname), "{case:?}");
        }
        let same = [
            headers(&[]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[("origin", "https://auth.example.test:8443")]),
            headers(&[("origin", "https://Grafana.Example.test")]),
            headers(&[("origin", "http://example.test")]),
        ];
        for case in &same {
            assert!(!is_cross_site(case, hostname), "{case:?}");
        }
    }

    #[test]
    fn cross_site_words_are_plain() {
        let words = [
            CrossSite::FetchSite,
            CrossSite::Origin,
            CrossSite::NoProvenance,
        ]
        .map(CrossSite::as_str);
        assert_eq!(words, ["sec_fetch_site", "origin", "no_origin"]);
    }
}
