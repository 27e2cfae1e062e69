//! One gate's workload: `public-gateway.yaml` or `private-gateway.yaml`.
//!
//! Each gate runs in its own Deployment so that it scales and fails on its
//! own. Both run the same vars file, and `postern serve --gate` makes each
//! pod open only its own gate's listener (and the admin listener).

use std::net::SocketAddr;

use serde_json::Value;

use super::meta::Component;
use super::volumes::PodVolumes;
use super::{Manifest, Options, deployment, scaling, service};
use crate::config::{Config, GateConfig};

pub(super) const PUBLIC_FILE_NAME: &str = "public-gateway.yaml";
pub(super) const PRIVATE_FILE_NAME: &str = "private-gateway.yaml";

/// A gate in Kubernetes terms: the listener settings and the ports.
#[derive(Debug, Clone)]
pub(super) struct Gate<'a> {
    pub component: Component,
    pub config: &'a GateConfig,
    /// The gate's listening port.
    pub port: u16,
    /// The admin listener's port, where the probes go.
    pub admin_port: u16,
}

// === impl Gate ===

impl Gate<'_> {
    /// Returns the value of `postern serve --gate`.
    pub(super) fn flag(&self) -> &'static str {
        match self.component {
            Component::PrivateGateway => "private",
            _ => "public",
        }
    }

    /// Returns the name of the gate's container port and Service port.
    pub(super) fn port_name(&self) -> &'static str {
        if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Returns the Service port that clients and load balancers connect to.
    pub(super) fn service_port(&self) -> u16 {
        if self.config.tls.is_some() { 443 } else { 80 }
    }

    /// True when the load balancer must prepend a PROXY protocol header:
    /// always on the private gate, which reads the VPC endpoint from it, and
    /// on the public gate when the vars file trusts PROXY headers from some
    /// source.
    pub(super) fn expects_proxy_protocol(&self) -> bool {
        self.component == Component::PrivateGateway || !self.config.proxy_sources.is_empty()
    }
}

/// Lists the gates that get their own Deployment: the public gate, and the
/// private gate when it is enabled.
pub(super) fn gates<'a>(
    config: &'a Config,
    warnings: &mut Vec<String>,
) -> Result<Vec<Gate<'a>>, String> {
    let admin_port = listen_port("gateways.admin.listen", config.admin, warnings)?;
    let mut gates = vec![(
        Component::PublicGateway,
        "gateways.public.listen",
        &config.public,
    )];
    if let Some(private) = &config.private {
        if private.gate.proxy_sources.is_empty() {
            warnings.push(
                "gateways.private.proxy_protocol.trusted_sources is empty, so the private gate \
                 closes every connection from its load balancer, which sends PROXY headers; \
                 list the CIDR blocks of the balancer's subnets"
                    .to_owned(),
            );
        }
        gates.push((
            Component::PrivateGateway,
            "gateways.private.listen",
            &private.gate,
        ));
    }

    let mut out = Vec::new();
    for (component, key, gate) in gates {
        let port = listen_port(key, gate.listen, warnings)?;
        if port == admin_port {
            return Err(format!(
                "{key} and gateways.admin.listen both use port {port}, but one pod listens on \
                 both; give them different ports"
            ));
        }
        out.push(Gate {
            component,
            config: gate,
            port,
            admin_port,
        });
    }
    Ok(out)
}

/// Extracts the port of a listen address. Port 0 (any free port) cannot be
/// declared in a pod or Service, so it is an error. A loopback address is
/// only a warning: it renders, but nothing outside the pod can connect.
pub(super) fn listen_port(
    key: &str,
    listen: SocketAddr,
    warnings: &mut Vec<String>,
) -> Result<u16, String> {
    if listen.port() == 0 {
        return Err(format!(
            "{key} is {listen}, and port 0 picks a random port; Kubernetes needs a fixed port"
        ));
    }
    if listen.ip().is_loopback() {
        warnings.push(format!(
            "{key} is {listen}, a loopback address: probes, Services and load balancers \
             cannot reach it in a pod; listen on 0.0.0.0:{} instead",
            listen.port()
        ));
    }
    Ok(listen.port())
}

/// Builds the gate's file: Deployment, Service, PodDisruptionBudget and
/// HorizontalPodAutoscaler.
pub(super) fn manifest(
    gate: &Gate<'_>,
    config: &Config,
    volumes: &PodVolumes,
    env: &[Value],
    options: &Options,
) -> Manifest {
    let file_name = match gate.component {
        Component::PrivateGateway => PRIVATE_FILE_NAME,
        _ => PUBLIC_FILE_NAME,
    };
    Manifest {
        file_name,
        documents: vec![
            deployment::deployment(gate, config, volumes, env, options),
            service::service(gate, config, options),
            scaling::pod_disruption_budget(gate, options),
            scaling::horizontal_pod_autoscaler(gate, options),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_port_extracts_port() {
        let mut warnings = Vec::new();

        let port = listen_port("k", "0.0.0.0:8443".parse().unwrap(), &mut warnings);

        assert_eq!(port, Ok(8443));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn listen_port_accepts_ipv6() {
        let mut warnings = Vec::new();

        let port = listen_port("k", "[::]:9443".parse().unwrap(), &mut warnings);

        assert_eq!(port, Ok(9443));
    }

    #[test]
    fn listen_port_rejects_port_zero() {
        let mut warnings = Vec::new();

        let error = listen_port(
            "gateways.public.listen",
            "0.0.0.0:0".parse().unwrap(),
            &mut warnings,
        )
        .unwrap_err();

        assert!(error.contains("gateways.public.listen"), "{error}");
        assert!(error.contains("port 0"), "{error}");
    }

    #[test]
    fn listen_port_warns_on_loopback() {
        let mut warnings = Vec::new();

        let port = listen_port("k", "127.0.0.1:9901".parse().unwrap(), &mut warnings);

        assert_eq!(port, Ok(9901));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("0.0.0.0:9901"), "{warnings:?}");
    }
}
