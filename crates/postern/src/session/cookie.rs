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
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::SessionError;
use crate::config::identity::SessionsConfig;

/// Largest `name=value` of one cookie. Browsers keep at least 4096 bytes;
/// the margin leaves room for the attributes some count as well.
const MAX_COOKIE_BYTES: usize = 4000;
/// Most chunks one session may take. Past it the session is refused rather
/// than making every request's Cookie header huge.
pub const MAX_CHUNKS: usize = 8;
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

    /// Opens the session cookie, rejoining chunks.
    pub fn open_session(&self, headers: &HeaderMap) -> Option<String> {
        let cookies = request_cookies(headers);
        let find = |name: &str| cookies.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let sealed = match find(&self.name) {
            Some(value) => value.to_owned(),
            None => {
                let mut joined = String::new();
                for i in 0..MAX_CHUNKS {
                    match find(&self.chunk_name(i)) {
                        Some(part) => joined.push_str(part),
                        None => break,
                    }
                }
                joined
            }
        };
        if sealed.is_empty() {
            return None;
        }
        self.open(&self.name, &sealed)
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
    /// keep their exact bytes; a header left empty is dropped.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
        if !values.iter().any(|v| self.mentions_ours(v)) {
            return;
        }
        headers.remove(COOKIE);
        for value in values {
            let Ok(text) = value.to_str() else {
                headers.append(COOKIE, value);
                continue;
            };
            let kept: Vec<&str> = text
                .split(';')
                .filter(|pair| {
                    let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
                    !self.is_ours(name)
                })
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .collect();
            if kept.is_empty() {
                continue;
            }
            if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
                headers.append(COOKIE, value);
            }
        }
    }

    /// Checks whether a cookie name is one of postern's: the session
    /// cookie, a chunk of it, or the flow cookie.
    fn is_ours(&self, name: &str) -> bool {
        if name == self.name || name == self.flow_name {
            return true;
        }
        name.strip_prefix(self.name.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    fn mentions_ours(&self, value: &HeaderValue) -> bool {
        value.to_str().is_ok_and(|text| {
            text.split(';').any(|pair| {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
                self.is_ours(name)
            })
        })
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

/// Collects every `name=value` pair of the request's Cookie headers.
fn request_cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim()))
        })
        .collect()
}

fn seconds(secs: u64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Formats a Set-Cookie header value. Cookie names are checked by the
/// config and sealed values are base64, so the value is always valid.
fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::from_str(&cookie.to_string()).unwrap_or(HeaderValue::from_static(""))
}
