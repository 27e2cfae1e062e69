//! Host normalization and the host-to-app table.
//!
//! The host is normalized once per request and that one value is used for
//! routing, policy, logs and the upstream request, so no two parts of the
//! gateway can disagree about which app a request is for.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;

use crate::config::{AppTimeouts, Config};
use crate::policy::access::AccessRules;
use crate::policy::admission::Gate;
use crate::proxy::pool::Pool;
use crate::runtime::workers;
use crate::telemetry::metrics::RequestMetrics;

/// Errors in a request's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request has no Host header or :authority")]
    Missing,
    #[error("the Host header is not a valid host name")]
    Invalid,
    #[error("the Host header and the request target name different hosts")]
    Conflict,
    #[error("the request has more than one Host header")]
    Repeated,
}

/// The destination of requests for one app.
pub struct Route {
    pub app: Arc<str>,
    /// The upstream's `host:port`.
    pub upstream: http::uri::Authority,
    pub timeouts: AppTimeouts,
    /// Who may reach the app on the public gate.
    pub access: AccessRules,
    /// The `aud` of the app's `X-Postern-Assertion`: `https://<app>.<hostname>`
    /// on both gates.
    pub audience: Arc<str>,
    /// The pooled clients for this app's upstream, one per worker, so that
    /// an upstream connection is only ever used by the worker that opened it
    /// (see [`crate::runtime::workers`]).
    clients: Box<[Pool]>,
    /// Request metrics on the public gate.
    pub public_metrics: Arc<RequestMetrics>,
    /// Request metrics on the private gate, only for an app that allows it,
    /// so that /metrics shows no private-gate series for the other apps.
    pub private_metrics: Option<Arc<RequestMetrics>>,
}

impl Route {
    /// Returns the calling worker's client for this app's upstream.
    pub fn client(&self) -> &Pool {
        &self.clients[workers::current() % self.clients.len()]
    }

    /// Returns the request metrics on `gate`, or `None` on the private gate
    /// for an app that does not allow it (no private route leads there).
    pub fn metrics(&self, gate: Gate) -> Option<&Arc<RequestMetrics>> {
        match gate {
            Gate::Public => Some(&self.public_metrics),
            Gate::Private => self.private_metrics.as_ref(),
        }
    }
}

/// Host name to route, per gate.
///
/// The maps hash with foldhash rather than SipHash: the keys are the
/// config's own host names, so a client cannot choose colliding keys, and
/// the lookup runs on every request.
#[derive(Default)]
pub struct RouteTable {
    public: HashMap<String, Arc<Route>, foldhash::fast::RandomState>,
    private: HashMap<String, Arc<Route>, foldhash::fast::RandomState>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Builds the table: every enabled app at `<app>.<hostname>` on the
    /// public gate, and opted-in apps at `<app>.internal.<hostname>` on the
    /// private gate.
    pub fn new(config: &Config) -> Self {
        let mut table = RouteTable::default();
        let hostname = &config.cluster.hostname;
        for app in config.enabled_apps() {
            let Some(upstream) = &app.upstream else {
                continue;
            };
            let route = Arc::new(Route {
                app: Arc::from(app.name.as_str()),
                upstream: upstream.authority.clone(),
                timeouts: app.timeouts,
                access: app.access.clone(),
                audience: Arc::from(format!("https://{}.{hostname}", app.name)),
                clients: (0..workers::count())
                    .map(|_| Pool::new(upstream.authority.clone(), app.timeouts.connect))
                    .collect(),
                public_metrics: Arc::new(RequestMetrics::new(Gate::Public, &app.name)),
                private_metrics: app
                    .allow_private_gateway
                    .then(|| Arc::new(RequestMetrics::new(Gate::Private, &app.name))),
            });
            table
                .public
                .insert(format!("{}.{hostname}", app.name), route.clone());
            if app.allow_private_gateway {
                table
                    .private
                    .insert(format!("{}.internal.{hostname}", app.name), route);
            }
        }
        table
    }

    /// Looks up the route for a normalized host on `gate`.
    pub fn lookup(&self, gate: Gate, host: &str) -> Option<&Arc<Route>> {
        match gate {
            Gate::Public => self.public.get(host),
            Gate::Private => self.private.get(host),
        }
    }
}

/// Finds the request's host: `:authority` for HTTP/2 and absolute-form
/// targets, otherwise the Host header. When both are present they must name
/// the same host.
pub fn request_host(parts: &Parts) -> Result<String, HostError> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Repeated);
    }
    let header = header
        .map(|v| v.to_str().map_err(|_| HostError::Invalid))
        .transpose()?
        .map(normalize)
        .transpose()?;
    let target = parts
        .uri
        .authority()
        .map(|a| normalize(a.as_str()))
        .transpose()?;

    match (target, header) {
        (Some(t), Some(h)) if t != h => Err(HostError::Conflict),
        (Some(t), _) => Ok(t),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(HostError::Missing),
    }
}

/// Lowercases a host, drops the port and one trailing dot, and checks that
/// what is left is a DNS name or an IP literal.
pub fn normalize(authority: &str) -> Result<String, HostError> {
    if authority.contains('@') {
        return Err(HostError::Invalid);
    }
    let host = match authority.strip_prefix('[') {
        // An IPv6 literal, `[::1]:8080`.
        Some(rest) => {
            let (inside, after) = rest.split_once(']').ok_or(HostError::Invalid)?;
            valid_port(after.strip_prefix(':').unwrap_or(after))?;
            inside
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| HostError::Invalid)?;
            return Ok(format!("[{}]", inside.to_ascii_lowercase()));
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => {
                valid_port(port)?;
                host
            }
            None => authority,
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(HostError::Invalid);
    }
    Ok(host.to_ascii_lowercase())
}

fn valid_port(port: &str) -> Result<(), HostError> {
    if port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
    {
        Ok(())
    } else {
        Err(HostError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, hosts: &[&str]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for h in hosts {
            builder = builder.header(HOST, *h);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn normalize_forms() {
        for (input, expected) in [
            ("LiteLLM.Example.Test", "litellm.example.test"),
            ("litellm.example.test.", "litellm.example.test"),
            ("litellm.example.test:18080", "litellm.example.test"),
            ("litellm.example.test.:18080", "litellm.example.test"),
            ("[::1]:80", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(normalize(input).as_deref(), Ok(expected), "{input}");
        }
        for bad in [
            "",
            "litellm.example.test..",
            "a..b",
            "user@litellm.example.test",
            "host:port",
            "host:123456",
            "host:99999",
            "exa mple.test",
            "exa/mple.test",
            "[::1",
            "[nothex]",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn host_from_header_or_authority() {
        assert_eq!(
            request_host(&parts("/", &["App.Example.Test:1"])).unwrap(),
            "app.example.test"
        );
        assert_eq!(
            request_host(&parts("http://app.example.test/x", &[])).unwrap(),
            "app.example.test"
        );
        assert_eq!(
            request_host(&parts("http://app.example.test/x", &["app.example.test."])).unwrap(),
            "app.example.test"
        );
        assert_eq!(
            request_host(&parts("http://evil.test/x", &["app.example.test"])),
            Err(HostError::Conflict)
        );
        assert_eq!(request_host(&parts("/", &[])), Err(HostError::Missing));
        assert_eq!(
            request_host(&parts("/", &["a.test", "b.test"])),
            Err(HostError::Repeated)
        );
    }
}
