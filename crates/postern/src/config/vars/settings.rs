//! Decoding of `app_config.<app>.settings`: the private-gate opt-in and the
//! app's access rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::decode::{Cursor, Decoder, Mapping, index};
use super::super::tree::{Node, Value};
use super::parse_name;
use crate::config::Machine;
use crate::config::identity::IdentityConfig;
use crate::policy::access::{AccessRules, MachineRule};

/// Maximum length of a group name or JWT identity accepted in a rule, as for
/// `identity_claim` values.
const MAX_RULE_VALUE_LEN: usize = 256;

/// `app_config.<app>.settings`.
pub(super) struct Settings {
    pub allow_private_gateway: bool,
    pub access: AccessRules,
}

pub(super) fn settings(d: &mut Decoder, at: Cursor<'_>) -> Option<Settings> {
    let map = d.mapping(
        at,
        &[
            "allow_private_gateway",
            "allowed_groups",
            "allowed_emails",
            "allowed_email_domains",
            "allowed_machines",
        ],
    )?;
    let allow_private_gateway = match map.get("allow_private_gateway") {
        Some((p, n)) => d.boolean(p.cursor(n)),
        None => Some(false),
    };
    let groups = rule_list(d, &map, "allowed_groups", parse_group);
    let emails = rule_list(d, &map, "allowed_emails", parse_email);
    let email_domains = rule_list(d, &map, "allowed_email_domains", parse_email_domain);
    let machines = rule_list(d, &map, "allowed_machines", parse_machine_rule);
    Some(Settings {
        allow_private_gateway: allow_private_gateway?,
        access: AccessRules {
            groups: groups?,
            emails: emails?,
            email_domains: email_domains?,
            machines: machines?
                .iter()
                .map(|text| MachineRule::parse(text))
                .collect(),
        },
    })
}

/// Reads an optional, non-empty list of rule values.
fn rule_list(
    d: &mut Decoder,
    map: &Mapping<'_>,
    key: &str,
    parse: fn(&str) -> Result<String, String>,
) -> Option<Vec<Arc<str>>> {
    let Some((p, n)) = map.get(key) else {
        return Some(Vec::new());
    };
    let values = d.list(p.cursor(n), |d, item| d.parse(item, parse))?;
    if values.is_empty() {
        d.report(
            p.cursor(n),
            format!(
                "{key} is empty, which would deny everyone; remove the key to admit every \
                 authenticated identity, or list at least one value"
            ),
        );
        return None;
    }
    Some(values.into_iter().map(Arc::from).collect())
}

/// Checks that every plain `allowed_machines` name is a provisioned machine
/// or OAuth client, and that every `ISSUER:IDENTITY` names a trusted
/// issuer, so a misspelt name fails here instead of denying at run time.
pub(super) fn check_machine_rules(
    d: &mut Decoder,
    apps: &BTreeMap<String, AccessRules>,
    machines: &[Machine],
    identity: &IdentityConfig,
    app_config: Option<&Node>,
) {
    for (name, access) in apps {
        let nodes = app_config
            .and_then(|n| n.get(name))
            .and_then(|n| n.get("settings"))
            .and_then(|n| n.get("allowed_machines"));
        let Some(Value::Sequence(nodes)) = nodes.map(|n| &n.value) else {
            continue;
        };
        for (i, (rule, node)) in access.machines.iter().zip(nodes).enumerate() {
            let problem = match rule {
                MachineRule::Provisioned(machine) => {
                    let known = machines.iter().any(|m| *m.name == **machine)
                        || identity.clients.iter().any(|c| *c.id == **machine);
                    (!known).then(|| {
                        format!(
                            "unknown machine {machine:?}: it is neither in identities.machines \
                             nor in identities.clients; for a bearer JWT from a trusted issuer \
                             write ISSUER:IDENTITY, such as dex:{machine}"
                        )
                    })
                }
                MachineRule::Issuer { method, .. } => {
                    let issuer = method.strip_prefix("jwt:").unwrap_or(method);
                    let known = identity.issuers.iter().any(|i| i.name == issuer);
                    (!known).then(|| {
                        format!(
                            "unknown issuer {issuer:?}: name an entry of identities.jwt_issuers \
                             before the ':'"
                        )
                    })
                }
            };
            if let Some(message) = problem {
                let path = index(&format!("app_config.{name}.settings.allowed_machines"), i);
                d.report(path.cursor(node), message);
            }
        }
    }
}

/// Checks that `identities.signing.audience` is no app's assertion audience.
/// postern accepts its own tokens with that audience as bearers, so an app
/// could otherwise replay the `X-Postern-Assertion` it received as a
/// gateway credential for other apps.
pub(super) fn check_signing_audience(
    d: &mut Decoder,
    apps: &BTreeMap<String, AccessRules>,
    identity: &IdentityConfig,
    hostname: &str,
    identities: Option<&Node>,
) {
    let Some(signing) = &identity.signing else {
        return;
    };
    let Some(app) = apps
        .keys()
        .find(|app| signing.audience == format!("https://{app}.{hostname}"))
    else {
        return;
    };
    let Some(node) = identities
        .and_then(|n| n.get("signing"))
        .and_then(|n| n.get("audience"))
    else {
        return;
    };
    let path = super::super::decode::join("identities.signing", "audience");
    d.report(
        path.cursor(node),
        format!(
            "audience {:?} is the audience of the app {app:?}'s X-Postern-Assertion, so the app \
             could replay its assertions as gateway credentials; choose another audience",
            signing.audience
        ),
    );
}

fn parse_group(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > MAX_RULE_VALUE_LEN || text.chars().any(char::is_control) {
        return Err(format!(
            "invalid group {text:?}; expected a group name of 1 to {MAX_RULE_VALUE_LEN} \
             bytes without control characters"
        ));
    }
    Ok(text.to_owned())
}

/// Lowercases an email address and checks its shape: one `@`, a local part
/// without spaces, and a DNS domain.
fn parse_email(text: &str) -> Result<String, String> {
    let email = text.to_ascii_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !local
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '@')
                && parse_email_domain(domain).is_ok()
        }
        None => false,
    };
    if !valid {
        return Err(format!(
            "invalid email {text:?}; expected an address such as alice@example.com"
        ));
    }
    Ok(email)
}

/// Lowercases an email domain and checks that it is a DNS name with at
/// least two labels.
fn parse_email_domain(text: &str) -> Result<String, String> {
    let domain = text.to_ascii_lowercase();
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if domain.len() > 253 || !labels_ok || !domain.contains('.') {
        let hint = if text.starts_with('@') {
            "; write the domain without the @"
        } else {
            ""
        };
        return Err(format!(
            "invalid email domain {text:?}; expected a domain such as example.com{hint}"
        ));
    }
    Ok(domain)
}

/// Checks an `allowed_machines` entry: `NAME` or `ISSUER:IDENTITY`.
fn parse_machine_rule(text: &str) -> Result<String, String> {
    let invalid = || {
        format!(
            "invalid machine {text:?}; expected a machine or client name (letters, digits, \
             '-', '_', '.' or '@'), or ISSUER:IDENTITY for a bearer JWT from a trusted issuer"
        )
    };
    match text.split_once(':') {
        Some((issuer, identity)) => {
            parse_name(issuer).map_err(|_| invalid())?;
            let printable = identity.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if identity.is_empty() || identity.len() > MAX_RULE_VALUE_LEN || !printable {
                return Err(invalid());
            }
        }
        None => {
            parse_name(text).map_err(|_| invalid())?;
        }
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_value_shapes() {
        assert_eq!(
            parse_email("Alice@Example.COM").unwrap(),
            "alice@example.com"
        );
        assert_eq!(parse_email_domain("Example.COM").unwrap(), "example.com");
        assert!(parse_machine_rule("build-bot").is_ok());
        assert!(parse_machine_rule("dex:system:serviceaccount:ci").is_ok());
        for bad in [
            "alice",
            "@example.com",
            "a b@example.com",
            "alice@localhost",
            "a@b@c.d",
        ] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
        for bad in ["@example.com", "example", "-x.com", "a..b"] {
            assert!(parse_email_domain(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "bad name", ":sub", "dex:", "d x:sub"] {
            assert!(parse_machine_rule(bad).is_err(), "{bad:?}");
        }
        assert!(parse_group("").is_err());
        assert!(parse_group("line\nbreak").is_err());
        assert!(parse_group("Platform Team, EU").is_ok());
    }
}
