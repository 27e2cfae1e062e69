//! The check of return addresses after sign-in or sign-out: only the
//! cluster hostname, its subdomains, or a path on the auth host. Pure, so
//! every open-redirect form can be tested in a table.

use url::Url;

/// The return address used when `rd` is missing or rejected: the auth
/// host's own page.
pub const DEFAULT_RETURN: &str = "/";

/// Returns `rd` when it is safe, else [`DEFAULT_RETURN`].
///
/// Accepted: an absolute `http` or `https` URL, without user info, whose
/// host is `hostname` or ends in `.hostname`; or a path that starts with a
/// single `/`. Whitespace, control characters and backslashes anywhere
/// refuse the value, because browsers drop tabs and newlines and read `\`
/// as `/`, which turns `/\evil.example` into `//evil.example`.
pub fn safe_return(rd: Option<&str>, hostname: &str) -> String {
    rd.and_then(|rd| check(rd, hostname))
        .unwrap_or_else(|| DEFAULT_RETURN.to_owned())
}

fn check(rd: &str, hostname: &str) -> Option<String> {
    if rd.is_empty()
        || rd.len() > 4096
        || rd
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return None;
    }
    if rd.starts_with('/') {
        return check_path(rd);
    }

    // The scheme must be written out in full: `https:evil.example` parses
    // as an absolute URL with another host.
    let lower = rd.get(..8).unwrap_or(rd).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return None;
    }
    let url = Url::parse(rd).ok()?;
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str()?;
    let on_cluster = host == hostname
        || host
            .strip_suffix(hostname)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1);
    on_cluster.then(|| url.to_string())
}

/// Accepts a path on the auth host: one leading `/`, and no encoded form that
/// decodes to a second `/` or a `\` right after it.
fn check_path(rd: &str) -> Option<String> {
    let decoded: String = percent_decode(rd);
    if rd.starts_with("//") || decoded.starts_with("//") || decoded.starts_with("/\\") {
        return None;
    }
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    Some(rd.to_owned())
}

/// Percent-decodes repeatedly (at most a few rounds), so `%252f` is seen
/// as `/` as well: some servers decode more than once.
fn percent_decode(text: &str) -> String {
    let mut current = text.to_owned();
    for _ in 0..3 {
        let next: String =
            form_urlencoded::parse(format!("v={}", current.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "postern.test";

    #[test]
    fn accepted() {
        let cases = [
            (
                "https://grafana.postern.test/d/abc?x=1#top",
                "https://grafana.postern.test/d/abc?x=1#top",
            ),
            (
                "http://echo.postern.test:8080/",
                "http://echo.postern.test:8080/",
            ),
            ("https://postern.test", "https://postern.test/"),
            ("HTTPS://A.Postern.Test/x", "https://a.postern.test/x"),
            ("https://a.b.postern.test/", "https://a.b.postern.test/"),
            ("/", "/"),
            ("/dashboard?tab=1", "/dashboard?tab=1"),
            ("/a/%20b", "/a/%20b"),
        ];
        for (rd, expected) in cases {
            assert_eq!(safe_return(Some(rd), HOST), expected, "{rd}");
        }
    }

    #[test]
    fn open_redirect_forms_fall_back() {
        let cases = [
            "//evil.example",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2fevil.example",
            "/%2F%2Fevil.example",
            "/%5cevil.example",
            "/%252f%252fevil.example",
            "https:evil.example",
            "https:/evil.example",
            "http:\\\\evil.example",
            "https://evil.example",
            "https://evil.example/.postern.test",
            "https://postern.test.evil.example/",
            "https://evilpostern.test/",
            "https://evil.example#.postern.test",
            "https://evil.example?.postern.test",
            "https://grafana.postern.test@evil.example/",
            "https://user:pass@grafana.postern.test/",
            "https://evil.example\\@grafana.postern.test/",
            "https://%65vil.example/",
            "https://grafana.postern.test%2f@evil.example/",
            "/\t/evil.example",
            "/\n/evil.example",
            " https://grafana.postern.test/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://grafana.postern.test/",
            "grafana.postern.test",
            "",
        ];
        for rd in cases {
            assert_eq!(safe_return(Some(rd), HOST), DEFAULT_RETURN, "{rd:?}");
        }
        assert_eq!(safe_return(None, HOST), DEFAULT_RETURN);
    }
}
