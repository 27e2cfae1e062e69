//! postern's cookies: sealing, splitting into numbered chunks, rejoining,
//! Set-Cookie attributes, and removal from requests bound for apps.
//!
//! Sealing is the `cookie` crate's private jar: AES-256-GCM with a random
//! nonce, the cookie's name as associated data, and a key derived with HKDF
//! from each configured secret. A well-reviewed crate made for exactly this
//! job, so no AEAD construction is written here. A value is sealed whole
//! and only then split, so one tag covers every chunk: a chunk that is
//! missing, cut short or taken from another session fails the tag.

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use super::SessionError;
use crate::config::identity::SessionsConfig;

/// Largest `name=value` of one cookie. Browsers keep at least 4096 bytes;
/// the margin leaves room for the attributes some count as well.
const MAX_COOKIE_BYTES: usize = 4000;
/// Most chunks one session may take. Past it the session is refused rather
/// than making every request's Cookie header huge.
pub const MAX_CHUNKS: usize = 8;
/// Most cookies of the session's name opened in one request, so a request
/// full of same-named cookies costs a bounded number of decryptions. A
/// request with more has no session (see [`CookieCodec::open_session`]).
const MAX_CANDIDATES: usize = 4;
/// Maximum number of paths at which conflicting session cookies are cleared.
const MAX_CLEARED_PATHS: usize = 16;
/// Path of the sign-in flow's cookie on the auth host.
const FLOW_PATH: &str = "/oauth2/";

/// Seals and opens postern's cookies with the configured keys.
pub struct CookieCodec {
    /// The first key seals; every key opens, so a key can be rotated out
    /// without signing anyone out.
    keys: Vec<Key>,
    name: String,
    flow_name: String,
    domain: String,
    secure: bool,
}

/// The hosts and paths a cookie is sent to.
#[derive(Clone, Copy)]
enum Scope {
    /// Every host under the cluster hostname: the session.
    Cluster,
    /// The auth host's sign-in paths only (no Domain, so host-only).
    Flow,
    /// The request's host only, at any path.
    Host,
}

// === impl CookieCodec ===

impl CookieCodec {
    pub fn new(config: &SessionsConfig) -> Result<Self, String> {
        let keys = config
            .keys
            .iter()
            .map(|source| {
                let secret = source.read()?;
                check_key(&secret)?;
                Ok(Key::derive_from(secret.as_bytes()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if keys.is_empty() {
            return Err("identities.sessions.keys is empty".to_owned());
        }
        Ok(CookieCodec {
            keys,
            flow_name: format!("{}_flow", config.cookie_name),
            name: config.cookie_name.clone(),
            domain: config.domain.clone(),
            secure: config.secure,
        })
    }

    /// Returns the session cookie's name. Chunks are `<name>_0`, `<name>_1`, ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens the session cookie, rejoining chunks. Every cookie of the
    /// session's name is tried, so that a junk cookie of that name sent
    /// first (another app can set one for the parent domain) does not hide
    /// the real one. A request with more than [`MAX_CANDIDATES`] of them, or
    /// with two cookies of one chunk's name, is a conflict: otherwise
    /// cookies planted first could push the real one out of the cookies
    /// that are opened.
    ///
    /// Two cookies that open to different values are a conflict, and
    /// neither counts. An app can plant a cookie of postern's name with a
    /// narrower Path from its page's script, holding a valid session of
    /// another account that it obtained itself. Browsers send the cookie
    /// with the longer path first, so taking the first valid one would
    /// sign the person in as that account (login CSRF). oauth2-proxy's
    /// cookie session store (`loadCookie` in pkg/sessions/cookie) takes the
    /// first cookie of its name through Go's `Request.Cookie`. postern does
    /// not, because a browser that only postern writes to has one session
    /// cookie: every sign-in overwrites it at the same domain and path.
    /// Different values are a conflict even when both name the same person,
    /// since telling would mean loading both.
    pub fn open_session(&self, headers: &HeaderMap) -> Opened {
        let cookies = request_cookies(headers);
        let whole: Vec<&str> = cookies
            .iter()
            .filter(|(n, _)| *n == self.name)
            .map(|(_, v)| *v)
            .collect();
        if whole.len() > MAX_CANDIDATES {
            return Opened::Conflict;
        }
        let Ok(chunked) = self.join_chunks(&cookies) else {
            return Opened::Conflict;
        };
        let whole = whole.into_iter().filter_map(|v| self.open(&self.name, v));
        let chunked = chunked.and_then(|joined| self.open(&self.name, &joined));
        decide(whole.chain(chunked))
    }

    /// Joins the session's numbered chunks, or returns `None` when there is
    /// no first chunk. A chunk's name sent twice is an error, because nothing
    /// shows which of the two belongs to the session.
    fn join_chunks(&self, cookies: &[(&str, &str)]) -> Result<Option<String>, DuplicateChunk> {
        let mut joined = String::new();
        for i in 0..MAX_CHUNKS {
            let name = self.chunk_name(i);
            let mut parts = cookies.iter().filter(|(n, _)| *n == name);
            let Some((_, part)) = parts.next() else {
                break;
            };
            if parts.next().is_some() {
                return Err(DuplicateChunk);
            }
            joined.push_str(part);
        }
        Ok((!joined.is_empty()).then_some(joined))
    }

    /// Seals a session into Set-Cookie values: one cookie when it fits,
    /// numbered chunks when not, and removals for any cookies of an older
    /// session that the new one does not overwrite.
    pub fn seal_session(
        &self,
        headers: &HeaderMap,
        text: &str,
        max_age_secs: u64,
    ) -> Result<Vec<HeaderValue>, SessionError> {
        let sealed = self.seal(&self.name, text);
        let mut set = Vec::new();
        let present = request_cookies(headers);
        let has = |name: &str| present.iter().any(|(n, _)| *n == name);
        if self.name.len() + 1 + sealed.len() <= MAX_COOKIE_BYTES {
            set.push(self.session_cookie(&self.name, &sealed, max_age_secs));
            for i in 0..MAX_CHUNKS {
                if has(&self.chunk_name(i)) {
                    set.push(self.removal(&self.chunk_name(i)));
                }
            }
        } else {
            let room = MAX_COOKIE_BYTES - self.chunk_name(MAX_CHUNKS).len() - 1;
            let chunks = sealed.len().div_ceil(room);
            if chunks > MAX_CHUNKS {
                return Err(SessionError::TooLarge(sealed.len()));
            }
            // The sealed text is base64, so any byte offset is a char boundary.
            for (i, part) in sealed.as_bytes().chunks(room).enumerate() {
                let part = std::str::from_utf8(part).unwrap_or_default();
                set.push(self.session_cookie(&self.chunk_name(i), part, max_age_secs));
            }
            for i in chunks..MAX_CHUNKS {
                if has(&self.chunk_name(i)) {
                    set.push(self.removal(&self.chunk_name(i)));
                }
            }
            if has(&self.name) {
                set.push(self.removal(&self.name));
            }
        }
        Ok(set)
    }

    /// Set-Cookie values that remove the session cookie and every chunk
    /// the request carries.
    pub fn clear_session(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        let present = request_cookies(headers);
        let mut set = vec![self.removal(&self.name)];
        for i in 0..MAX_CHUNKS {
            let chunk = self.chunk_name(i);
            if present.iter().any(|(n, _)| *n == chunk) {
                set.push(self.removal(&chunk));
            }
        }
        set
    }

    /// Seals the sign-in flow's cookie, sent to the auth host only, for
    /// `max_age_secs`.
    pub fn seal_flow(&self, text: &str, max_age_secs: u64) -> HeaderValue {
        let sealed = self.seal(&self.flow_name, text);
        let cookie = self
            .attributes(&self.flow_name, &sealed, Scope::Flow)
            .max_age(seconds(max_age_secs));
        header_value(&cookie.build())
    }

    /// Builds the Set-Cookie values that clear conflicting session cookies
    /// (see [`CookieCodec::open_session`]) sent with a request for `path`:
    /// postern's own, and, under the cluster domain and on the request's
    /// host alone, those at each path that covers `path`. A planted cookie
    /// at a path that does not cover `path` is not sent with this request
    /// and causes no conflict here.
    pub fn clear_conflict(&self, headers: &HeaderMap, path: &str) -> Vec<HeaderValue> {
        let mut set = self.clear_session(headers);
        for covering in covering_paths(path).take(MAX_CLEARED_PATHS) {
            for scope in [Scope::Cluster, Scope::Host] {
                let mut cookie = self
                    .attributes(&self.name, "", scope)
                    .path(covering)
                    .build();
                cookie.make_removal();
                set.push(header_value(&cookie));
            }
        }
        // The cluster-domain removal at `/` is also one of postern's own.
        let mut seen = std::collections::HashSet::new();
        set.retain(|value| seen.insert(value.clone()));
        set
    }

    /// Opens the sign-in flow's cookie.
    pub fn open_flow(&self, headers: &HeaderMap) -> Option<String> {
        let cookies = request_cookies(headers);
        cookies
            .iter()
            .filter(|(n, _)| *n == self.flow_name)
            .find_map(|(_, v)| self.open(&self.flow_name, v))
    }

    /// Returns the Set-Cookie value that removes the flow cookie.
    pub fn clear_flow(&self) -> HeaderValue {
        let mut cookie = self.attributes(&self.flow_name, "", Scope::Flow).build();
        cookie.make_removal();
        header_value(&cookie)
    }

    /// Removes postern's cookies from every Cookie header. Other cookies
    /// keep their exact bytes, non-ASCII ones included; a header left empty
    /// is dropped.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
        let mentions_ours = |value: &HeaderValue| {
            split_pairs(value.as_bytes()).any(|pair| self.is_ours(pair_name(pair)))
        };
        if !values.iter().any(mentions_ours) {
            return;
        }
        headers.remove(COOKIE);
        for value in values {
            let kept: Vec<&[u8]> = split_pairs(value.as_bytes())
                .filter(|pair| !self.is_ours(pair_name(pair)))
                .collect();
            if kept.is_empty() {
                continue;
            }
            // The kept bytes come from a valid header value, joined by "; ".
            if let Ok(value) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
                headers.append(COOKIE, value);
            }
        }
    }

    /// Removes the Set-Cookie lines of an app's response that would set
    /// or overwrite one of postern's cookies, and returns how many.
    pub fn strip_set_cookies(&self, headers: &mut HeaderMap) -> usize {
        let values: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
        let ours = |value: &HeaderValue| {
            let line = value.as_bytes();
            let pair = line.split(|b| *b == b';').next().unwrap_or(line);
            self.is_ours(pair_name(pair.trim_ascii()))
        };
        let dropped = values.iter().filter(|v| ours(v)).count();
        if dropped > 0 {
            headers.remove(SET_COOKIE);
            for value in values.into_iter().filter(|v| !ours(v)) {
                headers.append(SET_COOKIE, value);
            }
        }
        dropped
    }

    /// Checks whether a cookie name is one of postern's: the session
    /// cookie, a chunk of it, or the flow cookie. Cookie names are
    /// case-sensitive, so the match is exact.
    pub fn is_ours(&self, name: &[u8]) -> bool {
        if name == self.name.as_bytes() || name == self.flow_name.as_bytes() {
            return true;
        }
        name.strip_prefix(self.name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"_"))
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
    }

    fn chunk_name(&self, i: usize) -> String {
        format!("{}_{i}", self.name)
    }

    /// Seals `text` for the cookie `name` with the first key. The private
    /// jar writes nonce, ciphertext and tag in base64.
    fn seal(&self, name: &str, text: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.keys[0])
            .add(Cookie::new(name.to_owned(), text.to_owned()));
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// Opens a value sealed for the cookie `name` with any key.
    fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let cookie = Cookie::new(name.to_owned(), sealed.to_owned());
        let jar = CookieJar::new();
        self.keys.iter().find_map(|key| {
            let plain = jar.private(key).decrypt(cookie.clone())?;
            Some(plain.value().to_owned())
        })
    }

    fn session_cookie(&self, name: &str, value: &str, max_age_secs: u64) -> HeaderValue {
        let cookie = self
            .attributes(name, value, Scope::Cluster)
            .max_age(seconds(max_age_secs));
        header_value(&cookie.build())
    }

    fn removal(&self, name: &str) -> HeaderValue {
        let mut cookie = self.attributes(name, "", Scope::Cluster).build();
        cookie.make_removal();
        header_value(&cookie)
    }

    /// Builds a cookie with postern's attributes: HttpOnly, SameSite=Lax, Secure
    /// with TLS, and the scope's domain and path.
    fn attributes(&self, name: &str, value: &str, scope: Scope) -> cookie::CookieBuilder<'static> {
        let builder = Cookie::build((name.to_owned(), value.to_owned()))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax);
        match scope {
            Scope::Cluster => builder.domain(self.domain.clone()).path("/"),
            Scope::Flow => builder.path(FLOW_PATH),
            Scope::Host => builder.path("/"),
        }
    }
}

/// Two cookies of one chunk's name in a request.
struct DuplicateChunk;

/// The session cookies of a request, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// No session cookie opens.
    Absent,
    /// Every session cookie that opens contains this value.
    One(String),
    /// Session cookies that open contain different values (see
    /// [`CookieCodec::open_session`]).
    Conflict,
}

/// Decides what the opened values of a request's session cookies mean: one
/// value however often it comes, or a conflict when two differ.
pub fn decide(values: impl IntoIterator<Item = String>) -> Opened {
    let mut opened = Opened::Absent;
    for value in values {
        match &opened {
            Opened::Absent => opened = Opened::One(value),
            Opened::One(first) if *first == value => {}
            _ => return Opened::Conflict,
        }
    }
    opened
}

// === impl Opened ===

impl Opened {
    /// Returns the one value, or `None` when there is none or a conflict.
    pub fn single(self) -> Option<String> {
        match self {
            Opened::One(value) => Some(value),
            Opened::Absent | Opened::Conflict => None,
        }
    }
}

/// Checks a session key secret: long enough for HKDF.
pub fn check_key(secret: &str) -> Result<(), String> {
    let min = crate::config::identity::MIN_SESSION_KEY_BYTES;
    if secret.len() < min {
        return Err(format!(
            "the session key is {} bytes long; it must have at least {min} (make one with \
             openssl rand -base64 48)",
            secret.len()
        ));
    }
    Ok(())
}

/// Collects every `name=value` pair of the request's Cookie headers whose
/// name and value are UTF-8. Other pairs cannot be postern's (its values
/// are base64) and are skipped one by one, never with their header.
fn request_cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .filter_map(|(name, value)| {
            Some((
                std::str::from_utf8(name).ok()?,
                std::str::from_utf8(value).ok()?,
            ))
        })
        .collect()
}

/// Splits one Cookie header value into trimmed `name=value` pairs, as
/// bytes: browsers send UTF-8 cookie values raw, which `HeaderValue::to_str`
/// refuses. Written by hand because the `cookie` crate parses `&str` only.
fn split_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b';')
        .map(|pair| pair.trim_ascii())
        .filter(|pair| !pair.is_empty())
}

/// Returns the name of a `name=value` pair (the whole pair when it has no `=`).
fn pair_name(pair: &[u8]) -> &[u8] {
    pair.iter()
        .position(|b| *b == b'=')
        .map_or(pair, |at| pair[..at].trim_ascii())
}

/// Splits one Cookie header value into (name, value) pairs, as bytes.
fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    split_pairs(value).filter_map(|pair| {
        let at = pair.iter().position(|b| *b == b'=')?;
        Some((pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()))
    })
}

/// Returns the cookie paths that cover the request path `path` (RFC 6265
/// section 5.1.4), longest first: the path itself, and each prefix that
/// ends before or at a `/`, down to `/`. The path is cut at its first `;`,
/// space or control character: a cookie's Path attribute cannot hold one,
/// and one written into a Set-Cookie would add attributes of its own.
fn covering_paths(path: &str) -> impl Iterator<Item = &str> {
    let end = path
        .find(|c: char| c == ';' || c.is_ascii_whitespace() || c.is_ascii_control())
        .unwrap_or(path.len());
    let path = &path[..end];
    let cuts = path.match_indices('/').flat_map(|(at, _)| [at, at + 1]);
    let mut paths: Vec<&str> = cuts
        .map(|end| &path[..end])
        .chain([path])
        .filter(|prefix| prefix.starts_with('/'))
        .collect();
    paths.sort_unstable_by_key(|prefix| std::cmp::Reverse(prefix.len()));
    paths.dedup();
    paths.into_iter()
}

fn seconds(secs: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Formats a Set-Cookie header value. Cookie names are checked by the
/// config and sealed values are base64, so the value is always valid.
fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::covering_paths;

    #[test]
    fn covering_paths_longest_first() {
        let paths: Vec<&str> = covering_paths("/a/b").collect();
        assert_eq!(paths, ["/a/b", "/a/", "/a", "/"]);
    }

    #[test]
    fn covering_paths_cut_at_semicolon() {
        let paths: Vec<&str> = covering_paths("/x;Domain=evil.test;Max-Age=999/y").collect();
        assert_eq!(paths, ["/x", "/"]);
        let paths: Vec<&str> = covering_paths("/a b/c").collect();
        assert_eq!(paths, ["/a", "/"]);
    }
}
