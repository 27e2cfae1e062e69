//! Decoding of `identities`: machines, OAuth clients, trusted JWT issuers,
//! postern's signing keys, sessions and providers (in `signin.rs`), and
//! users (in `users.rs`).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::super::decode::{Cursor, Decoder, index};
use super::super::identity::*;
use super::{Machine, parse_name, parse_sha256_hex, required};

/// Everything under `identities`.
pub(super) struct Decoded {
    pub machines: Vec<Machine>,
    pub identity: IdentityConfig,
}

pub(super) fn identities(
    d: &mut Decoder,
    at: Cursor<'_>,
    base: &Path,
    hostname: Option<&str>,
) -> Option<Decoded> {
    let map = d.mapping(
        at,
        &[
            "machines",
            "clients",
            "jwt_issuers",
            "signing",
            "providers",
            "users",
            "sessions",
        ],
    )?;
    let machines = match map.get("machines") {
        Some((p, n)) => machines(d, p.cursor(n)),
        None => Some(Vec::new()),
    };
    let clients = match map.get("clients") {
        Some((p, n)) => clients(d, p.cursor(n)),
        None => Some(Vec::new()),
    };
    let issuers = match map.get("jwt_issuers") {
        Some((p, n)) => d.list(p.cursor(n), trusted_issuer),
        None => Some(Vec::new()),
    };
    let signing = match map.get("signing") {
        Some((p, n)) => signing(d, p.cursor(n), base, hostname).map(Some),
        None => Some(None),
    };
    let sessions = match map.get("sessions") {
        Some((p, n)) => super::signin::sessions(d, p.cursor(n), base, hostname).map(Some),
        None => Some(None),
    };
    let providers = match map.get("providers") {
        Some((p, n)) => super::signin::providers(d, p.cursor(n), base),
        None => Some(Vec::new()),
    };
    let users = match map.get("users") {
        Some((p, n)) => super::users::users(d, p.cursor(n)),
        None => Some(Vec::new()),
    };
    let (machines, clients, issuers, signing, sessions, providers, users) = (
        machines?, clients?, issuers?, signing?, sessions?, providers?, users?,
    );

    let mut complete = true;
    if !clients.is_empty() && signing.is_none() {
        let (p, n) = map.get("clients")?;
        d.report(
            p.cursor(n),
            "identities.clients needs identities.signing: postern signs the tokens its \
             token endpoint issues",
        );
        complete = false;
    }
    if !providers.is_empty() && sessions.is_none() {
        let (p, n) = map.get("providers")?;
        d.report(
            p.cursor(n),
            "identities.providers needs identities.sessions: a sign-in is kept in a session \
             cookie sealed with its keys",
        );
        complete = false;
    }
    if !users.is_empty() && sessions.is_none() {
        let (p, n) = map.get("users")?;
        d.report(
            p.cursor(n),
            "identities.users needs identities.sessions: a user who signs in is kept in a \
             session cookie",
        );
        complete = false;
    }
    complete &= check_names_distinct(d, &map, &machines, &clients);
    complete &= check_user_names_distinct(d, &map, &machines, &clients, &users);
    complete &= check_issuers_distinct(d, &map, &issuers, signing.as_ref());
    complete.then_some(Decoded {
        machines,
        identity: IdentityConfig {
            clients,
            issuers,
            signing,
            sessions,
            providers,
            users,
        },
    })
}

fn machines(d: &mut Decoder, at: Cursor<'_>) -> Option<Vec<Machine>> {
    let machines = d.list(at, machine)?;
    let mut complete = true;
    for (i, m) in machines.iter().enumerate() {
        let earlier = &machines[..i];
        let duplicate = if earlier.iter().any(|e| e.name == m.name) {
            Some(format!("duplicate machine name {:?}", m.name))
        } else if earlier.iter().any(|e| e.token_sha256 == m.token_sha256) {
            Some(format!(
                "machine {:?} has the same token_sha256 as another machine; \
                 give each machine its own token (postern token new NAME)",
                m.name
            ))
        } else {
            None
        };
        if let Some(message) = duplicate {
            report_item(d, at, i, message);
            complete = false;
        }
    }
    complete.then_some(machines)
}

fn machine(d: &mut Decoder, at: Cursor<'_>) -> Option<Machine> {
    let map = d.mapping(at, &["name", "token_sha256"])?;
    let name = required(d, &map, "name").and_then(|(p, n)| d.parse(p.cursor(n), parse_name));
    let token_sha256 =
        required(d, &map, "token_sha256").and_then(|(p, n)| d.parse(p.cursor(n), parse_sha256_hex));
    Some(Machine {
        name: name?,
        token_sha256: token_sha256?,
    })
}

fn clients(d: &mut Decoder, at: Cursor<'_>) -> Option<Vec<OAuthClient>> {
    let clients = d.list(at, client)?;
    let mut complete = true;
    for (i, c) in clients.iter().enumerate() {
        let earlier = &clients[..i];
        let duplicate = if earlier.iter().any(|e| e.id == c.id) {
            Some(format!("duplicate client id {:?}", c.id))
        } else if earlier.iter().any(|e| e.secret_sha256 == c.secret_sha256) {
            Some(format!(
                "client {:?} has the same secret_sha256 as another client; \
                 give each client its own secret (postern client new ID)",
                c.id
            ))
        } else {
            None
        };
        if let Some(message) = duplicate {
            report_item(d, at, i, message);
            complete = false;
        }
    }
    complete.then_some(clients)
}

fn client(d: &mut Decoder, at: Cursor<'_>) -> Option<OAuthClient> {
    let map = d.mapping(at, &["id", "secret_sha256"])?;
    let id = required(d, &map, "id").and_then(|(p, n)| d.parse(p.cursor(n), parse_name));
    let secret_sha256 = required(d, &map, "secret_sha256")
        .and_then(|(p, n)| d.parse(p.cursor(n), parse_sha256_hex));
    Some(OAuthClient {
        id: id?,
        secret_sha256: secret_sha256?,
    })
}

fn trusted_issuer(d: &mut Decoder, at: Cursor<'_>) -> Option<TrustedIssuer> {
    let map = d.mapping(
        at,
        &[
            "name",
            "issuer",
            "jwks_uri",
            "audiences",
            "algorithms",
            "leeway",
            "identity_claim",
            "jwks_refresh_interval",
            "jwks_min_refetch_interval",
        ],
    )?;
    let name = required(d, &map, "name").and_then(|(p, n)| d.parse(p.cursor(n), parse_name));
    let issuer = required(d, &map, "issuer").and_then(|(p, n)| d.parse(p.cursor(n), parse_url));
    let jwks_uri = match map.get("jwks_uri") {
        Some((p, n)) => d.parse(p.cursor(n), parse_url).map(Some),
        None => Some(None),
    };
    let audiences = required(d, &map, "audiences").and_then(|(p, n)| {
        let list = d.list(p.cursor(n), |d, item| d.parse(item, parse_audience))?;
        if list.is_empty() {
            d.report(
                p.cursor(n),
                "audiences is empty; list the aud values this gate accepts",
            );
            return None;
        }
        Some(list)
    });
    let algorithms = match map.get("algorithms") {
        Some((p, n)) => d
            .list(p.cursor(n), |d, item| d.parse(item, parse_algorithm))
            .and_then(|list| {
                if list.is_empty() {
                    d.report(
                        p.cursor(n),
                        "algorithms is empty; omit it for RS256 and ES256",
                    );
                    return None;
                }
                Some(list)
            }),
        None => Some(DEFAULT_ALGORITHMS.to_vec()),
    };
    let leeway = match map.get("leeway") {
        Some((p, n)) => d.duration_or_zero(p.cursor(n)).and_then(|l| {
            if l > MAX_LEEWAY {
                d.report(
                    p.cursor(n),
                    format!(
                        "leeway {} is too long; at most {}",
                        humantime::format_duration(l),
                        humantime::format_duration(MAX_LEEWAY)
                    ),
                );
                return None;
            }
            Some(l)
        }),
        None => Some(DEFAULT_LEEWAY),
    };
    let identity_claim = match map.get("identity_claim") {
        Some((p, n)) => d.parse(p.cursor(n), parse_claim_name),
        None => Some("sub".to_owned()),
    };
    let mut interval = |key: &str, default: Duration| match map.get(key) {
        Some((p, n)) => d.duration(p.cursor(n)),
        None => Some(default),
    };
    let jwks_refresh_interval = interval("jwks_refresh_interval", DEFAULT_JWKS_REFRESH_INTERVAL);
    let jwks_min_refetch_interval = interval(
        "jwks_min_refetch_interval",
        DEFAULT_JWKS_MIN_REFETCH_INTERVAL,
    );

    let name = name?;
    if name == POSTERN_ISSUER_NAME {
        let (p, n) = map.get("name")?;
        d.report(
            p.cursor(n),
            format!(
                "the issuer name {POSTERN_ISSUER_NAME:?} is reserved for postern's own tokens; \
                 choose another name"
            ),
        );
        return None;
    }
    Some(TrustedIssuer {
        name,
        issuer: issuer?,
        jwks_uri: jwks_uri?,
        audiences: audiences?,
        algorithms: algorithms?,
        leeway: leeway?,
        identity_claim: identity_claim?,
        jwks_refresh_interval: jwks_refresh_interval?,
        jwks_min_refetch_interval: jwks_min_refetch_interval?,
    })
}

fn signing(
    d: &mut Decoder,
    at: Cursor<'_>,
    base: &Path,
    hostname: Option<&str>,
) -> Option<Signing> {
    let map = d.mapping(
        at,
        &["issuer", "keys", "active_key", "audience", "token_lifetime"],
    )?;
    let issuer = match map.get("issuer") {
        Some((p, n)) => d.parse(p.cursor(n), parse_url),
        None => hostname.map(|h| format!("https://auth.{h}")),
    };
    let keys = required(d, &map, "keys")
        .and_then(|(p, n)| d.list(p.cursor(n), |d, item| signing_key(d, item, base)));
    let audience = match map.get("audience") {
        Some((p, n)) => d.parse(p.cursor(n), parse_audience),
        None => hostname.map(str::to_owned),
    };
    let token_lifetime = match map.get("token_lifetime") {
        Some((p, n)) => d.duration(p.cursor(n)).and_then(|l| {
            let short_enough = l <= MAX_TOKEN_LIFETIME;
            if !short_enough {
                d.report(
                    p.cursor(n),
                    format!(
                        "token_lifetime {} is too long; at most {}",
                        humantime::format_duration(l),
                        humantime::format_duration(MAX_TOKEN_LIFETIME)
                    ),
                );
            }
            short_enough.then_some(l)
        }),
        None => Some(DEFAULT_TOKEN_LIFETIME),
    };

    let keys = keys?;
    let (keys_path, keys_node) = map.get("keys")?;
    if keys.is_empty() {
        d.report(
            keys_path.cursor(keys_node),
            "keys is empty; add a key (see docs/configuration.md for how to make one)",
        );
        return None;
    }
    for (i, key) in keys.iter().enumerate() {
        if keys[..i].iter().any(|k| k.id == key.id) {
            report_item(
                d,
                keys_path.cursor(keys_node),
                i,
                format!("duplicate key id {:?}", key.id),
            );
            return None;
        }
    }
    let active = match map.get("active_key") {
        Some((p, n)) => {
            let id = d.string(p.cursor(n))?;
            let Some(found) = keys.iter().position(|k| k.id == id) else {
                let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
                d.report(
                    p.cursor(n),
                    format!(
                        "no key has the id {id:?}; expected one of: {}",
                        ids.join(", ")
                    ),
                );
                return None;
            };
            found
        }
        None => 0,
    };
    Some(Signing {
        issuer: issuer?,
        keys,
        active,
        audience: audience?,
        token_lifetime: token_lifetime?,
    })
}

fn signing_key(d: &mut Decoder, at: Cursor<'_>, base: &Path) -> Option<SigningKey> {
    let map = d.mapping(at, &["id", "private_key"])?;
    let id = required(d, &map, "id").and_then(|(p, n)| d.parse(p.cursor(n), parse_name));
    let (p, n) = required(d, &map, "private_key")?;
    let source = secret_source(d, p.cursor(n), base)?;
    if secret_file_skipped(d, p.cursor(n), &source) {
        return Some(SigningKey { id: id?, source });
    }
    if let Err(message) = source
        .read()
        .and_then(|pem| crate::identity::signing::parse_private_key(&pem).map(|_| ()))
    {
        d.report(p.cursor(n), message);
        return None;
    }
    Some(SigningKey { id: id?, source })
}

/// Returns true, and records the file as unread, when `source` is a file
/// and `check --skip-files` leaves files unread.
pub(super) fn secret_file_skipped(d: &mut Decoder, at: Cursor<'_>, source: &SecretSource) -> bool {
    match source {
        SecretSource::File(path) => d.skips_file(at, path),
        SecretSource::Env(_) | SecretSource::InsecureInline(_) => false,
    }
}

/// Reads `{file: PATH}`, `{env: NAME}` or `{insecure_inline: VALUE}`.
pub(super) fn secret_source(d: &mut Decoder, at: Cursor<'_>, base: &Path) -> Option<SecretSource> {
    let map = d.mapping(at, &["file", "env", "insecure_inline"])?;
    let mut found = Vec::new();
    if let Some((p, n)) = map.get("file") {
        found.push(
            d.string(p.cursor(n))
                .map(|f| SecretSource::File(base.join(f))),
        );
    }
    if let Some((p, n)) = map.get("env") {
        found.push(d.string(p.cursor(n)).map(SecretSource::Env));
    }
    if let Some((p, n)) = map.get("insecure_inline") {
        found.push(d.string(p.cursor(n)).map(SecretSource::InsecureInline));
    }
    if found.len() != 1 {
        d.report(
            at,
            "give exactly one of file: PATH or env: VARIABLE (insecure_inline: VALUE is \
             for tests only)",
        );
        return None;
    }
    found.pop().flatten()
}

/// Checks that no client id is also a machine name, because both reach the
/// app as the same `X-Auth-Request-User`.
fn check_names_distinct(
    d: &mut Decoder,
    map: &super::Mapping<'_>,
    machines: &[Machine],
    clients: &[OAuthClient],
) -> bool {
    let Some((p, n)) = map.get("clients") else {
        return true;
    };
    let mut complete = true;
    for (i, client) in clients.iter().enumerate() {
        if machines.iter().any(|m| m.name == client.id) {
            report_item(
                d,
                p.cursor(n),
                i,
                format!(
                    "client id {:?} is also a machine name; apps could not tell them apart",
                    client.id
                ),
            );
            complete = false;
        }
    }
    complete
}

/// Checks that no user name is also a machine name or a client id, because
/// all of them reach the app as `X-Auth-Request-User`.
fn check_user_names_distinct(
    d: &mut Decoder,
    map: &super::Mapping<'_>,
    machines: &[Machine],
    clients: &[OAuthClient],
    users: &[User],
) -> bool {
    let Some((p, n)) = map.get("users") else {
        return true;
    };
    let mut complete = true;
    for (i, user) in users.iter().enumerate() {
        let taken_by = if machines.iter().any(|m| m.name == user.name) {
            "a machine name"
        } else if clients.iter().any(|c| c.id == user.name) {
            "a client id"
        } else {
            continue;
        };
        report_item(
            d,
            p.cursor(n),
            i,
            format!(
                "user name {:?} is also {taken_by}; apps could not tell them apart",
                user.name
            ),
        );
        complete = false;
    }
    complete
}

fn check_issuers_distinct(
    d: &mut Decoder,
    map: &super::Mapping<'_>,
    issuers: &[TrustedIssuer],
    signing: Option<&Signing>,
) -> bool {
    let Some((p, n)) = map.get("jwt_issuers") else {
        return true;
    };
    let mut complete = true;
    for (i, issuer) in issuers.iter().enumerate() {
        let earlier = &issuers[..i];
        let message = if earlier.iter().any(|e| e.name == issuer.name) {
            Some(format!("duplicate issuer name {:?}", issuer.name))
        } else if earlier.iter().any(|e| e.issuer == issuer.issuer) {
            Some(format!("duplicate issuer {:?}", issuer.issuer))
        } else if signing.is_some_and(|s| s.issuer == issuer.issuer) {
            Some(format!(
                "{:?} is postern's own issuer (identities.signing.issuer), which is trusted \
                 without an entry here; remove this entry",
                issuer.issuer
            ))
        } else {
            None
        };
        if let Some(message) = message {
            report_item(d, p.cursor(n), i, message);
            complete = false;
        }
    }
    complete
}

/// Reports a problem at item `i` of the list at `list`.
pub(super) fn report_item(d: &mut Decoder, list: Cursor<'_>, i: usize, message: String) {
    if let Some(items) = d.sequence(list) {
        let path = index(list.path(), i);
        d.report(path.cursor(&items[i]), message);
    }
}

// Scalar parsers.

/// Accepts an `https` URL, or `http` on a loopback host (for tests and
/// local issuers), without query or fragment. Trailing slashes are kept:
/// `iss` is compared byte for byte.
pub(super) fn parse_url(text: &str) -> Result<String, String> {
    let shown = crate::redact::url_userinfo(text);
    let invalid =
        |why: &str| format!("invalid URL {shown:?}: {why}; expected https://HOST[:PORT][/PATH]");
    let uri: http::Uri = text.parse().map_err(|_| invalid("not a URL"))?;
    let host = uri.host().ok_or_else(|| invalid("missing host"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(host) => {}
        Some("http") => return Err(invalid("http is allowed only on loopback hosts")),
        _ => return Err(invalid("the scheme must be https")),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("credentials in the URL are not allowed"));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(text.to_owned())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_audience(text: &str) -> Result<String, String> {
    let ok = !text.is_empty() && text.len() <= 256 && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid audience {:?}; expected a string of printable characters without \
             spaces, such as postern or https://api.example.com",
            crate::redact::url_userinfo(text)
        ))
    }
}

pub(super) fn parse_claim_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid claim name {text:?}; expected a top-level claim such as sub or client_id"
        ))
    }
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    let allowed = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA";
    if text.eq_ignore_ascii_case("none") {
        return Err(format!(
            "the algorithm {text:?} means unsigned tokens and is never accepted; use {allowed}"
        ));
    }
    if text.to_ascii_uppercase().starts_with("HS") {
        return Err(format!(
            "the HMAC algorithm {text:?} needs a shared secret and is not accepted from a \
             trusted issuer; use {allowed}"
        ));
    }
    let algorithm = match text {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return Err(format!("unknown algorithm {text:?}; expected {allowed}")),
    };
    Ok(algorithm)
}
