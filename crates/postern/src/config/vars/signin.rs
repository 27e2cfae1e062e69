//! Decoding of `identities.sessions` and `identities.providers`: browser
//! sessions and the upstream OpenID providers people sign in with.

use std::path::Path;

use super::super::decode::{Cursor, Decoder};
use super::super::identity::*;
use super::identities::{
    parse_claim_name, parse_url, report_item, secret_file_skipped, secret_source,
};
use super::{parse_name, required};

pub(super) fn sessions(
    d: &mut Decoder,
    at: Cursor<'_>,
    base: &Path,
    hostname: Option<&str>,
) -> Option<SessionsConfig> {
    let map = d.mapping(at, &["keys", "lifetime", "cookie_name", "redis"])?;
    let keys = required(d, &map, "keys").and_then(|(p, n)| {
        let keys = d.list(p.cursor(n), |d, item| session_key(d, item, base))?;
        if keys.is_empty() {
            d.report(
                p.cursor(n),
                "keys is empty; add a secret of at least 32 bytes (openssl rand -base64 48)",
            );
            return None;
        }
        Some(keys)
    });
    let lifetime = match map.get("lifetime") {
        Some((p, n)) => d.duration(p.cursor(n)),
        None => Some(DEFAULT_SESSION_LIFETIME),
    };
    let cookie_name = match map.get("cookie_name") {
        Some((p, n)) => d.parse(p.cursor(n), parse_cookie_name),
        None => Some(DEFAULT_COOKIE_NAME.to_owned()),
    };
    let redis = match map.get("redis") {
        Some((p, n)) => super::redis::redis(d, p.cursor(n), base).map(Some),
        None => Some(None),
    };
    Some(SessionsConfig {
        redis: redis?,
        keys: keys?,
        lifetime: lifetime?,
        cookie_name: cookie_name?,
        domain: hostname?.to_owned(),
        // Set from gateways.public.tls once the whole file is decoded.
        secure: false,
    })
}

fn session_key(d: &mut Decoder, at: Cursor<'_>, base: &Path) -> Option<SecretSource> {
    let source = secret_source(d, at, base)?;
    if secret_file_skipped(d, at, &source) {
        return Some(source);
    }
    if let Err(message) = source
        .read()
        .and_then(|s| crate::session::cookie::check_key(&s))
    {
        d.report(at, message);
        return None;
    }
    Some(source)
}

pub(super) fn providers(
    d: &mut Decoder,
    at: Cursor<'_>,
    base: &Path,
) -> Option<Vec<ProviderConfig>> {
    let providers = d.list(at, |d, item| provider(d, item, base))?;
    let mut complete = true;
    for (i, p) in providers.iter().enumerate() {
        if providers[..i].iter().any(|e| e.name == p.name) {
            report_item(d, at, i, format!("duplicate provider name {:?}", p.name));
            complete = false;
        }
    }
    complete.then_some(providers)
}

fn provider(d: &mut Decoder, at: Cursor<'_>, base: &Path) -> Option<ProviderConfig> {
    let map = d.mapping(
        at,
        &[
            "name",
            "issuer",
            "client_id",
            "client_secret",
            "scopes",
            "claims",
        ],
    )?;
    let name = required(d, &map, "name").and_then(|(p, n)| d.parse(p.cursor(n), parse_name));
    let issuer = required(d, &map, "issuer").and_then(|(p, n)| d.parse(p.cursor(n), parse_url));
    let client_id = required(d, &map, "client_id").and_then(|(p, n)| d.string(p.cursor(n)));
    let client_secret = required(d, &map, "client_secret").and_then(|(p, n)| {
        let source = secret_source(d, p.cursor(n), base)?;
        if secret_file_skipped(d, p.cursor(n), &source) {
            return Some(source);
        }
        if let Err(message) = source.read() {
            d.report(p.cursor(n), message);
            return None;
        }
        Some(source)
    });
    let scopes = match map.get("scopes") {
        Some((p, n)) => d
            .list(p.cursor(n), |d, item| d.parse(item, parse_scope))
            .and_then(|scopes| {
                if !scopes.iter().any(|s| s == "openid") {
                    d.report(
                        p.cursor(n),
                        "scopes must include openid, or the provider sends no ID token",
                    );
                    return None;
                }
                Some(scopes)
            }),
        None => Some(DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()),
    };
    let claims = match map.get("claims") {
        Some((p, n)) => claims(d, p.cursor(n)),
        None => Some(default_claims()),
    };
    let (user_claim, email_claim, groups_claim) = claims?;
    Some(ProviderConfig {
        name: name?,
        issuer: issuer?,
        client_id: client_id?,
        client_secret: client_secret?,
        scopes: scopes?,
        user_claim,
        email_claim,
        groups_claim,
    })
}

fn default_claims() -> (String, String, String) {
    (
        "preferred_username".to_owned(),
        "email".to_owned(),
        "groups".to_owned(),
    )
}

fn claims(d: &mut Decoder, at: Cursor<'_>) -> Option<(String, String, String)> {
    let map = d.mapping(at, &["user", "email", "groups"])?;
    let (user, email, groups) = default_claims();
    let mut claim = |key: &str, default: String| match map.get(key) {
        Some((p, n)) => d.parse(p.cursor(n), parse_claim_name),
        None => Some(default),
    };
    let user = claim("user", user);
    let email = claim("email", email);
    let groups = claim("groups", groups);
    Some((user?, email?, groups?))
}

fn parse_scope(text: &str) -> Result<String, String> {
    // RFC 6749 section 3.3: scope tokens are printable ASCII without space,
    // double quote or backslash.
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid scope {text:?}; expected a token such as openid, email or groups"
        ))
    }
}

fn parse_cookie_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid cookie name {text:?}; expected up to 64 letters, digits, _ or -, such as \
             _postern"
        ))
    }
}
