//! Decoding of `identities.sessions.redis`: the Redis server that keeps
//! server-side sessions.

use std::path::Path;

use super::super::decode::{Cursor, Decoder};
use super::super::identity::RedisConfig;
use super::identities::secret_source;
use super::required;

pub(super) fn redis(d: &mut Decoder, at: Cursor<'_>, base: &Path) -> Option<RedisConfig> {
    let map = d.mapping(at, &["url", "password"])?;
    let url = required(d, &map, "url").and_then(|(p, n)| d.parse(p.cursor(n), parse_redis_url));
    let password = match map.get("password") {
        Some((p, n)) => secret_source(d, p.cursor(n), base).map(Some),
        None => Some(None),
    };
    Some(RedisConfig {
        url: url?,
        password: password?,
    })
}

/// Accepts `redis://HOST[:PORT][/DB]` or `rediss://...` without
/// credentials: the password is a secret of its own, and a vars file is
/// kept in Git.
fn parse_redis_url(text: &str) -> Result<String, String> {
    let shown = crate::redact::url_userinfo(text);
    let invalid = |why: &str| {
        format!(
            "invalid Redis URL {shown:?}: {why}; expected redis://HOST[:PORT][/DB] or rediss://..."
        )
    };
    let uri: http::Uri = text.parse().map_err(|_| invalid("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("redis" | "rediss")) {
        return Err(invalid("the scheme must be redis or rediss"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "credentials in the URL are not allowed; give the password as password: {file: PATH}",
        ));
    }
    let db = uri.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err(invalid("the path must be a database number"));
    }
    if uri.query().is_some() {
        return Err(invalid("a query is not allowed"));
    }
    redis::IntoConnectionInfo::into_connection_info(text).map_err(|e| invalid(&e.to_string()))?;
    Ok(text.to_owned())
}
