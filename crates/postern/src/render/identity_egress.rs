//! Egress rules for the services a gate calls to check identities: the
//! JWKS of `identities.jwt_issuers`, the sign-in providers of
//! `identities.providers`, and the Redis server of
//! `identities.sessions.redis`.

use ipnet::IpNet;
use serde_json::{Value, json};

use super::meta::Component;
use super::network_policy::{ip_block, peer_value, upstream_peer};
use crate::config::Config;

/// Default port of `redis://` and `rediss://` URLs.
const REDIS_PORT: u16 = 6379;

/// A service a gate connects to, by the URL the vars file gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IdentityService {
    /// A description for the manifest's comment, such as
    /// `identity provider dex`.
    pub what: String,
    pub host: String,
    pub port: u16,
}

/// Lists the identity services a gate's pods connect to.
///
/// Both gates fetch the JWKS of every trusted issuer, because every
/// `postern serve` process loads them and `/readyz` waits for them. Only
/// the public gate signs people in, so only it calls providers and Redis.
pub(super) fn services(component: Component, config: &Config) -> Vec<IdentityService> {
    let identity = &config.identity;
    let mut out = Vec::new();
    for issuer in &identity.issuers {
        // Without jwks_uri, the JWKS URL comes from the issuer's discovery
        // document, which is fetched from the issuer URL.
        let url = issuer.jwks_uri.as_deref().unwrap_or(&issuer.issuer);
        out.extend(service(
            format!("JWKS of trusted issuer {}", issuer.name),
            url,
        ));
    }
    if component == Component::PrivateGateway {
        return out;
    }
    // NOTE: the provider's token endpoint and JWKS come from its discovery
    // document and may be on other hosts. The rule allows any address
    // for a provider with a DNS name, but only the issuer URL's port.
    for provider in &identity.providers {
        out.extend(service(
            format!("identity provider {}", provider.name),
            &provider.issuer,
        ));
    }
    if let Some(redis) = identity.sessions.as_ref().and_then(|s| s.redis.as_ref()) {
        out.extend(service("Redis sessions".to_owned(), &redis.url));
    }
    out
}

/// Builds the egress rule of a service: its host as a peer when it is an
/// IP address or a Service name, else any address, on its port.
pub(super) fn rule(service: &IdentityService) -> Value {
    let to = match upstream_peer(&service.host) {
        Some(peer) => vec![peer_value(&peer)],
        None => any_address(),
    };
    json!({
        "to": to,
        "ports": [{ "protocol": "TCP", "port": service.port }],
    })
}

/// Writes the manifest comment lines for the services, and marks the ones
/// allowed at any address.
pub(super) fn comment(services: &[IdentityService]) -> Vec<String> {
    let mut lines = Vec::new();
    for service in services {
        let (host, port, what) = (&service.host, service.port, &service.what);
        if upstream_peer(host).is_some() {
            lines.push(format!("Allowed: {what}, {host} port {port}."));
        } else {
            lines.push(format!(
                "Allowed: {what}, {host} port {port}, at ANY address, because a"
            ));
            lines.push("NetworkPolicy cannot name a DNS name. Patch in its CIDR blocks".to_owned());
            lines.push("if they are fixed.".to_owned());
        }
    }
    lines
}

/// Parses a validated `https://`, `http://`, `redis://` or `rediss://` URL
/// into a service. A URL that does not parse yields none, but the vars
/// decoder has already rejected those.
fn service(what: String, url: &str) -> Option<IdentityService> {
    let uri: http::Uri = url.parse().ok()?;
    let default_port = match uri.scheme_str()? {
        "https" => 443,
        "http" => 80,
        _ => REDIS_PORT,
    };
    Some(IdentityService {
        what,
        host: uri.host()?.to_owned(),
        port: uri.port_u16().unwrap_or(default_port),
    })
}

/// Builds the peers of every IPv4 and IPv6 address.
fn any_address() -> Vec<Value> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|cidr| ip_block(&cidr.parse::<IpNet>().expect("a valid CIDR block")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> (String, u16) {
        let service = service("test".to_owned(), url).expect(url);
        (service.host, service.port)
    }

    #[test]
    fn url_ports_default_by_scheme() {
        assert_eq!(
            parsed("https://dex.example.com"),
            ("dex.example.com".into(), 443)
        );
        assert_eq!(
            parsed("http://127.0.0.1:5556/dex"),
            ("127.0.0.1".into(), 5556)
        );
        assert_eq!(
            parsed("https://login.example.com:8443/x"),
            ("login.example.com".into(), 8443)
        );
        assert_eq!(
            parsed("redis://redis.cache.svc:6380/0"),
            ("redis.cache.svc".into(), 6380)
        );
        assert_eq!(
            parsed("rediss://redis.example.com"),
            ("redis.example.com".into(), 6379)
        );
    }

    #[test]
    fn dns_name_is_any_address() {
        let service = IdentityService {
            what: "identity provider dex".into(),
            host: "dex.example.com".into(),
            port: 443,
        };

        let rule = rule(&service);

        assert_eq!(rule["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
        assert_eq!(rule["to"][1]["ipBlock"]["cidr"], "::/0");
        assert_eq!(rule["ports"][0]["port"], 443);
        assert!(comment(&[service])[0].contains("ANY address"));
    }

    #[test]
    fn service_name_is_its_namespace() {
        let service = IdentityService {
            what: "Redis sessions".into(),
            host: "redis.cache.svc.cluster.local".into(),
            port: 6379,
        };

        let rule = rule(&service);

        assert_eq!(
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "cache"
        );
        assert_eq!(rule["ports"][0]["port"], 6379);
        assert!(!comment(&[service])[0].contains("ANY"));
    }
}
