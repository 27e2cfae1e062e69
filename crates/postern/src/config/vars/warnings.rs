//! Warnings about settings that are valid but most likely not what was
//! meant. `check` prints them and `serve` logs them; they stop nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;

use super::super::decode::{Decoder, index, join};
use super::super::identity::IdentityConfig;
use super::super::tree::{Node, Value};
use super::{App, GateConfig, Machine};

/// Warns when no identity of any kind is configured while the public gate
/// serves enabled apps, because every request there is then denied. The
/// warning is placed at the first enabled app.
pub(super) fn warn_no_identities(
    d: &mut Decoder,
    machines: &[Machine],
    identity: &IdentityConfig,
    apps: &BTreeMap<String, App>,
    app_config: Option<&Node>,
) {
    let none = machines.is_empty()
        && identity.clients.is_empty()
        && identity.issuers.is_empty()
        && identity.signing.is_none()
        && identity.providers.is_empty()
        && identity.users.is_empty();
    if !none {
        return;
    }
    let Some(Value::Mapping(entries)) = app_config.map(|n| &n.value) else {
        return;
    };
    let first = entries
        .iter()
        .find(|(key, _)| apps.get(&key.name).is_some_and(|a| a.enabled));
    let Some((key, _)) = first else {
        return;
    };
    d.warn_at(
        key.line,
        key.column,
        join("app_config", &key.name).as_str(),
        format!(
            "no identities are configured (identities.machines, clients, jwt_issuers, \
             signing, providers and users are all empty), so the public gate denies every \
             request to {} and every other enabled app; add one, such as a machine from \
             `postern token new NAME`",
            key.name
        ),
    );
}

/// Warns about each `trusted_sources` entry of a gate that covers every
/// address (`0.0.0.0/0` or `::/0`), so that any client can spoof what the
/// setting trusts.
pub(super) fn warn_trust_everyone(
    d: &mut Decoder,
    gate_name: &str,
    gate: &GateConfig,
    node: Option<&Node>,
) {
    let lists = [
        (
            "proxy_protocol",
            &gate.proxy_sources,
            "any client can send a PROXY header and claim any source address or VPC \
             endpoint",
        ),
        (
            "forwarded_headers",
            &gate.forwarded_sources,
            "any client can set X-Forwarded-For and X-Request-Id and spoof its address in \
             the access log and to apps",
        ),
    ];
    for (section, sources, risk) in lists {
        let items = node
            .and_then(|n| n.get(section))
            .and_then(|n| n.get("trusted_sources"));
        let Some(Value::Sequence(items)) = items.map(|n| &n.value) else {
            continue;
        };
        for (i, (net, item)) in sources.iter().zip(items).enumerate() {
            if !covers_everyone(net) {
                continue;
            }
            let list = format!("gateways.{gate_name}.{section}.trusted_sources");
            d.warn_at(
                item.line,
                item.column,
                index(&list, i).as_str(),
                format!(
                    "{net} trusts every client, so {risk}; list only the networks of your load \
                     balancers or proxies"
                ),
            );
        }
    }
}

fn covers_everyone(net: &IpNet) -> bool {
    net.prefix_len() == 0
}

/// Warns about each app whose `timeouts.total` is shorter than the
/// response-header timeout, which then never fires: the total cap ends the
/// exchange first. Both are valid, so this is not an error.
pub(super) fn warn_total_before_headers(
    d: &mut Decoder,
    apps: &BTreeMap<String, App>,
    app_config: Option<&Node>,
) {
    for app in apps.values() {
        let Some(total) = app.timeouts.total else {
            continue;
        };
        let headers = app.timeouts.response_headers;
        if total >= headers {
            continue;
        }
        let Some(node) = app_node(app_config, &app.name, &["timeouts", "total"]) else {
            continue;
        };
        d.warn_at(
            node.line,
            node.column,
            &format!("app_config.{}.timeouts.total", app.name),
            format!(
                "total ({}) is shorter than response_headers ({}), so the response_headers \
                 timeout never fires; raise total, or lower response_headers below it",
                shown(total),
                shown(headers)
            ),
        );
    }
}

/// Warns about each enabled app that allows the private gate while that
/// gate is disabled. Nothing serves the app there, which is safe but most
/// likely not what was meant.
pub(super) fn warn_private_apps_unserved(
    d: &mut Decoder,
    apps: &BTreeMap<String, App>,
    app_config: Option<&Node>,
) {
    let wanted = apps
        .values()
        .filter(|a| a.enabled && a.allow_private_gateway);
    for app in wanted {
        let Some(node) = app_node(
            app_config,
            &app.name,
            &["settings", "allow_private_gateway"],
        ) else {
            continue;
        };
        d.warn_at(
            node.line,
            node.column,
            &format!("app_config.{}.settings.allow_private_gateway", app.name),
            format!(
                "the private gate is disabled, so no listener serves {} privately; set \
                 app_config.istio.private_gateway.enabled: true, or remove this setting",
                app.name
            ),
        );
    }
}

/// Returns the node at `keys` under the app `app` of `app_config`.
fn app_node<'a>(app_config: Option<&'a Node>, app: &str, keys: &[&str]) -> Option<&'a Node> {
    let mut node = app_config?.get(app)?;
    for key in keys {
        node = node.get(key)?;
    }
    Some(node)
}

fn shown(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}
