//! `networkpolicies.yaml`: who may connect to each gate's pods, and what
//! they may connect to.
//!
//! The private gate keeps a one-way rule: only the cluster's VPC and the
//! internal balancer's subnets may reach it, and it may reach only the
//! upstreams of apps that opted in, DNS, and the JWKS of trusted issuers.
//! The public gate accepts anyone on its port and may reach the upstreams
//! of every enabled app, DNS, and the identity services: trusted issuers'
//! JWKS, sign-in providers and Redis.
//!
//! An upstream becomes a NetworkPolicy peer by its host: an IP address
//! becomes a one-address `ipBlock`, and a Service name
//! `<service>.<namespace>.svc[.<cluster domain>]` becomes its namespace.
//! Other host names cannot be expressed, so they are reported as warnings.
//! An identity service on such a host is allowed at any address on its
//! port, because identity providers usually live outside the cluster.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::gateway::Gate;
use super::identity_egress::{self, IdentityService};
use super::meta::{self, Component};
use super::{Document, Manifest, Options};
use crate::config::{App, Config};

pub(super) const FILE_NAME: &str = "networkpolicies.yaml";

/// The location of an upstream, in terms a NetworkPolicy can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Peer {
    /// Every pod of a namespace.
    Namespace(String),
    Address(IpAddr),
}

pub(super) fn manifest(
    config: &Config,
    gates: &[Gate<'_>],
    options: &Options,
    warnings: &mut Vec<String>,
) -> Manifest {
    if config.cluster.vpc_cidrs.is_empty() {
        warnings.push(
            "cluster.vpc_cidrs is empty, so the NetworkPolicies admit no one to the admin port; \
             probes and metrics scrapers may be blocked"
                .to_owned(),
        );
    }
    Manifest {
        file_name: FILE_NAME,
        documents: gates
            .iter()
            .map(|gate| policy(gate, config, options, warnings))
            .collect(),
    }
}

/// Maps an upstream host to a peer, or `None` for a host name that is not a
/// Service name. `host` may be an IPv6 literal in brackets, as URLs write it.
pub(super) fn upstream_peer(host: &str) -> Option<Peer> {
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(address) = unbracketed.parse::<IpAddr>() {
        return Some(Peer::Address(address));
    }
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        [service, namespace, "svc", ..] if !service.is_empty() && meta::is_dns_label(namespace) => {
            Some(Peer::Namespace((*namespace).to_owned()))
        }
        _ => None,
    }
}

fn policy(
    gate: &Gate<'_>,
    config: &Config,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Document {
    let component = gate.component;
    let (mut egress, unreachable) = egress(gate, config);
    let services = identity_egress::services(component, config);
    for service in &services {
        let rule = identity_egress::rule(service);
        if !egress.contains(&rule) {
            egress.push(rule);
        }
    }
    for (app, host) in &unreachable {
        warnings.push(format!(
            "app {app}: the upstream host {host} is neither an IP address nor a Service name \
             such as <service>.<namespace>.svc.cluster.local, so the {} NetworkPolicy does \
             not allow connections to it; add an egress rule with a kustomize patch",
            component.object_name()
        ));
    }
    Document {
        comment: comment(component, &unreachable, &services),
        value: json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta::metadata(component.object_name(), Some(component), options),
            "spec": {
                "podSelector": { "matchLabels": meta::labels(Some(component)) },
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress(gate, config),
                "egress": egress,
            },
        }),
    }
}

fn comment(
    component: Component,
    unreachable: &[(String, String)],
    services: &[IdentityService],
) -> Vec<String> {
    let mut lines = match component {
        Component::PrivateGateway => vec![
            "The private gate: only cluster.vpc_cidrs and the internal balancer's".to_owned(),
            "subnets may connect, and the pods may connect only to DNS, to the".to_owned(),
            "upstreams of apps with settings.allow_private_gateway, and to the JWKS".to_owned(),
            "of identities.jwt_issuers, which /readyz waits for in every process.".to_owned(),
        ],
        _ => vec![
            "The public gate: anyone may connect to the gate port, and the pods may".to_owned(),
            "connect only to DNS, to the upstreams of enabled apps, and to the".to_owned(),
            "identity services below: trusted issuers' JWKS, sign-in providers and".to_owned(),
            "Redis.".to_owned(),
        ],
    };
    lines.extend([
        "The admin port admits cluster.vpc_cidrs, where kubelet probes and".to_owned(),
        "scrapers come from. Egress ports are the upstream URLs' ports, but a".to_owned(),
        "NetworkPolicy matches the pod's port after Service translation: patch".to_owned(),
        "the rule of an app whose Service port differs from its targetPort. With".to_owned(),
        "NodeLocal DNSCache, patch the DNS rule to allow its link-local address.".to_owned(),
    ]);
    lines.extend(identity_egress::comment(services));
    for (app, host) in unreachable {
        lines.push(format!("Not allowed: app {app}, upstream host {host}."));
    }
    lines
}

fn ingress(gate: &Gate<'_>, config: &Config) -> Vec<Value> {
    let gate_port = json!([{ "protocol": "TCP", "port": gate.port }]);
    let mut rules = Vec::new();
    match gate.component {
        Component::PrivateGateway => {
            let mut sources = config.cluster.vpc_cidrs.clone();
            for source in &gate.config.proxy_sources {
                if !sources.contains(source) {
                    sources.push(*source);
                }
            }
            // A rule without `from` would admit every source, so no sources
            // means no rule.
            if !sources.is_empty() {
                rules.push(json!({ "from": ip_blocks(&sources), "ports": gate_port }));
            }
        }
        _ => rules.push(json!({ "ports": gate_port })),
    }
    if !config.cluster.vpc_cidrs.is_empty() {
        rules.push(json!({
            "from": ip_blocks(&config.cluster.vpc_cidrs),
            "ports": [{ "protocol": "TCP", "port": gate.admin_port }],
        }));
    }
    rules
}

/// Builds the egress rules of a gate, and lists the apps whose upstream no
/// rule can name, as (app, host) pairs.
fn egress(gate: &Gate<'_>, config: &Config) -> (Vec<Value>, Vec<(String, String)>) {
    let mut rules = vec![dns_rule()];
    let mut unreachable = Vec::new();
    for app in served_apps(gate.component, config) {
        let Some(upstream) = &app.upstream else {
            continue;
        };
        let host = upstream.authority.host();
        let Some(peer) = upstream_peer(host) else {
            unreachable.push((app.name.clone(), host.to_owned()));
            continue;
        };
        // The config normalizes every upstream to host:port.
        let port = upstream.authority.port_u16().unwrap_or(80);
        let rule = json!({
            "to": [peer_value(&peer)],
            "ports": [{ "protocol": "TCP", "port": port }],
        });
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    (rules, unreachable)
}

/// Lists the apps a gate forwards to: every enabled app on the public gate,
/// and only those that opted in on the private gate.
fn served_apps(component: Component, config: &Config) -> impl Iterator<Item = &App> {
    let private = component == Component::PrivateGateway;
    config
        .enabled_apps()
        .filter(move |app| !private || app.allow_private_gateway)
}

/// DNS lookups to the cluster DNS in `kube-system`.
fn dns_rule() -> Value {
    json!({
        "to": [{
            "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": "kube-system" },
            },
        }],
        "ports": [
            { "protocol": "UDP", "port": 53 },
            { "protocol": "TCP", "port": 53 },
        ],
    })
}

pub(super) fn peer_value(peer: &Peer) -> Value {
    match peer {
        Peer::Namespace(namespace) => json!({
            "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": namespace },
            },
        }),
        Peer::Address(address) => ip_block(&IpNet::from(*address)),
    }
}

fn ip_blocks(networks: &[IpNet]) -> Vec<Value> {
    networks.iter().map(ip_block).collect()
}

pub(super) fn ip_block(network: &IpNet) -> Value {
    json!({ "ipBlock": { "cidr": network.to_string() } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_map_to_namespaces() {
        let cases = [
            ("litellm.litellm.svc.cluster.local", "litellm"),
            ("litellm.litellm.svc", "litellm"),
            ("proxy-public.jupyterhub.svc.cluster.local", "jupyterhub"),
            ("api.team-a.svc.k8s.example.internal", "team-a"),
        ];
        for (host, namespace) in cases {
            assert_eq!(
                upstream_peer(host),
                Some(Peer::Namespace(namespace.to_owned())),
                "{host}"
            );
        }
    }

    #[test]
    fn ip_literals_map_to_addresses() {
        assert_eq!(
            upstream_peer("10.20.3.4"),
            Some(Peer::Address("10.20.3.4".parse().unwrap()))
        );
        assert_eq!(
            upstream_peer("[fd00::1]"),
            Some(Peer::Address("fd00::1".parse().unwrap()))
        );
    }

    #[test]
    fn other_host_names_map_to_nothing() {
        for host in [
            "litellm",
            "litellm.litellm",
            "api.example.com",
            "x.svc.cluster.local",
        ] {
            assert_eq!(upstream_peer(host), None, "{host}");
        }
    }

    #[test]
    fn address_peer_is_single_address_block() {
        let v4 = peer_value(&Peer::Address("127.0.0.1".parse().unwrap()));
        let v6 = peer_value(&Peer::Address("fd00::1".parse().unwrap()));

        assert_eq!(v4["ipBlock"]["cidr"], "127.0.0.1/32");
        assert_eq!(v6["ipBlock"]["cidr"], "fd00::1/128");
    }

    #[test]
    fn namespace_peer_selects_by_name_label() {
        let peer = peer_value(&Peer::Namespace("litellm".to_owned()));

        assert_eq!(
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "litellm"
        );
    }
}
