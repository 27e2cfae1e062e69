//! Validation of the return address (`rd`) after sign-in, so that postern
//! never becomes an open redirect.
//!
//! Accepted: an absolute `http` or `https` URL whose host is the cluster
//! hostname or one of its subdomains, or a path that starts with a single
//! `/`. Everything else, such as `//host`, `/\host`, `https:host`,
//! `user@host`, percent-encoded variants and other schemes, falls back to
//! [`SAFE_DEFAULT`].

/// The return address used in place of a rejected or missing one: the
/// auth host's root.
pub const SAFE_DEFAULT: &str = "/";

/// Returns `rd` when it stays on the cluster, otherwise [`SAFE_DEFAULT`].
pub fn safe_return(rd: Option<&str>, hostname: &str) -> String {
    match rd {
        Some(rd) if is_safe(rd, hostname) => rd.to_owned(),
        _ => SAFE_DEFAULT.to_owned(),
    }
}

fn is_safe(rd: &str, hostname: &str) -> bool {
    // Control characters, spaces and backslashes are rejected outright:
    // browsers strip tabs and newlines and read `\` as `/`, so a URL that
    // looks local to a parser here may lead elsewhere in a browser.
    if rd.is_empty() || rd.len() > 4096 || rd.bytes().any(|b| b <= b' ' || b == b'\\' || b == 0x7f)
    {
        return false;
    }
    if let Some(rest) = rd.strip_prefix('/') {
        // `//host` is a scheme-relative URL to another host. An encoded
        // slash or backslash right after the first one is rejected too,
        // because some servers and apps decode before they redirect.
        let lower = rest.to_ascii_lowercase();
        return !(rest.starts_with('/') || lower.starts_with("%2f") || lower.starts_with("%5c"));
    }
    let Ok(uri) = rd.parse::<http::Uri>() else {
        return false;
    };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    // `https:host` has a scheme but no `//`, and browsers read it as a
    // relative URL or a host depending on the scheme: reject it.
    let has_slashes = rd
        .split_once(':')
        .is_some_and(|(_, rest)| rest.starts_with("//"));
    let Some(authority) = uri.authority() else {
        return false;
    };
    if !scheme_ok || !has_slashes || authority.as_str().contains('@') {
        return false;
    }
    let host = authority.host().to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    let hostname = hostname.to_ascii_lowercase();
    host == hostname
        || host
            .strip_suffix(hostname.as_str())
            .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "example.test";

    #[test]
    fn cluster_addresses_accepted() {
        for rd in [
            "/",
            "/app/page?x=1#frag",
            "https://example.test/",
            "https://grafana.example.test/d/abc?from=now-1h",
            "http://a.b.example.test:8080/",
            "https://GRAFANA.Example.Test./",
        ] {
            assert_eq!(safe_return(Some(rd), HOST), rd, "{rd}");
        }
    }

    #[test]
    fn open_redirects_fall_back() {
        for rd in [
            "//evil.test/",
            "///evil.test/",
            "/\\evil.test/",
            "\\\\evil.test",
            "/%2f%2fevil.test",
            "/%2F/evil.test",
            "/%5cevil.test",
            "https:evil.test",
            "https:/evil.test",
            "https://evil.test/",
            "https://example.test.evil.test/",
            "https://evilexample.test/",
            "https://user@evil.test/",
            "https://grafana.example.test@evil.test/",
            "https://evil.test\\@grafana.example.test/",
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://grafana.example.test/",
            " /app",
            "/app\n",
            "\t//evil.test",
            "evil.test",
            "",
        ] {
            assert_eq!(safe_return(Some(rd), HOST), SAFE_DEFAULT, "{rd:?}");
        }
        assert_eq!(safe_return(None, HOST), SAFE_DEFAULT);
    }
}
