//! A gate's Service: a network load balancer made by the AWS Load Balancer
//! Controller from the `service.beta.kubernetes.io/aws-load-balancer-*`
//! annotations, with IP targets so the balancer connects to the pods
//! directly.

use serde_json::{Map, Value, json};

use super::gateway::Gate;
use super::meta::{self, Component};
use super::{Document, Options};
use crate::config::Config;

const ANNOTATION_PREFIX: &str = "service.beta.kubernetes.io/aws-load-balancer-";
/// The value of the private balancer's subnets annotation until the operator
/// sets it. The controller cannot find such subnets, so it creates no
/// balancer instead of one in subnets it discovered on its own.
pub(super) const SUBNETS_PLACEHOLDER: &str = "REPLACE-WITH-SUBNET-IDS";
/// The tag key that names the gate of a balancer, so that `postern
/// reconcile` can find the private balancer by it and by [`CLUSTER_TAG`].
pub(super) const GATEWAY_TAG: &str = "postern.io/gateway";
/// The tag key whose value is `cluster.hostname`.
pub(super) const CLUSTER_TAG: &str = "postern.io/cluster";

pub(super) fn service(gate: &Gate<'_>, config: &Config, options: &Options) -> Document {
    let component = gate.component;
    let mut metadata = meta::metadata(component.object_name(), Some(component), options);
    metadata["annotations"] = Value::Object(annotations(gate, config));
    Document {
        comment: comment(gate),
        value: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "type": "LoadBalancer",
                // IP targets need no node ports, and without them no port
                // on the nodes bypasses the balancer.
                "allocateLoadBalancerNodePorts": false,
                "selector": meta::labels(Some(component)),
                "ports": [{
                    "name": gate.port_name(),
                    "port": gate.service_port(),
                    "targetPort": gate.port_name(),
                    "protocol": "TCP",
                }],
            },
        }),
    }
}

fn comment(gate: &Gate<'_>) -> Vec<String> {
    match gate.component {
        Component::PrivateGateway => vec![
            "An internal network load balancer that prepends a PROXY protocol v2 header,"
                .to_owned(),
            "from which the private gate reads the VPC endpoint of PrivateLink clients.".to_owned(),
            "Set the subnets annotation to the balancer's subnets, one per zone. Their".to_owned(),
            "CIDR blocks must equal gateways.private.proxy_protocol.trusted_sources: the"
                .to_owned(),
            "gate closes every connection from a trusted source that lacks a PROXY header,"
                .to_owned(),
            "and closes a PROXY header from any other source.".to_owned(),
        ],
        _ => vec!["An Internet-facing network load balancer.".to_owned()],
    }
}

fn annotations(gate: &Gate<'_>, config: &Config) -> Map<String, Value> {
    let mut out = Map::new();
    let mut set = |name: &str, value: String| {
        out.insert(format!("{ANNOTATION_PREFIX}{name}"), Value::String(value));
    };
    set("type", "external".to_owned());
    set("nlb-target-type", "ip".to_owned());

    match gate.component {
        Component::PrivateGateway => {
            set("scheme", "internal".to_owned());
            set("subnets", SUBNETS_PLACEHOLDER.to_owned());
            set(
                "additional-resource-tags",
                format!(
                    "{GATEWAY_TAG}=private,{CLUSTER_TAG}={}",
                    config.cluster.hostname
                ),
            );
        }
        _ => set("scheme", "internet-facing".to_owned()),
    }

    if gate.expects_proxy_protocol() {
        // The balancer's health checks then arrive on the gate's port with
        // a PROXY LOCAL header. postern serves only /healthz on such
        // connections, and returns 503 once it drains.
        set("proxy-protocol", "*".to_owned());
        set(
            "healthcheck-protocol",
            health_check_protocol(gate).to_owned(),
        );
        set("healthcheck-port", "traffic-port".to_owned());
        set("healthcheck-path", "/healthz".to_owned());
    } else {
        // Without PROXY headers no connection is a LOCAL one, and the gate
        // serves /healthz only on those, so the balancer checks the admin
        // listener.
        set("healthcheck-protocol", "http".to_owned());
        set("healthcheck-port", gate.admin_port.to_string());
        set("healthcheck-path", "/readyz".to_owned());
    }
    out
}

fn health_check_protocol(gate: &Gate<'_>) -> &'static str {
    if gate.config.tls.is_some() {
        "https"
    } else {
        "http"
    }
}
