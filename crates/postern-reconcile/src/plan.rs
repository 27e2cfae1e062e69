//! Planning: the changes that bring AWS in line with the vars file.
//!
//! [`plan`] compares a [`Desired`] state with an [`Observed`] one and
//! returns a [`Plan`] without any I/O. The rules:
//!
//! - An enabled gate needs its balancer; the service is created on it when
//!   missing, with acceptance required, the private DNS name
//!   `*.internal.<cluster.hostname>` and the supported regions.
//! - An existing service is modified only where it differs: acceptance,
//!   private DNS name, balancer, supported regions.
//! - Allowed principals become exactly `allowed_principals`.
//! - A pending connection is accepted when its owner is the account of an
//!   allowed principal and its region is the home region or a supported
//!   one (the same-region rule); otherwise it is rejected.
//! - AWS keeps a connection it already accepted when its principal is
//!   removed. Such connections are kept and listed, unless
//!   [`Options::reject_accepted`] asks to reject them too. The private gate
//!   refuses their traffic either way, because it admits only the accounts
//!   of allowed principals.
//! - A disabled gate leaves its service alone, unless [`Options::prune`]
//!   asks to reject its connections and delete it.

use std::collections::BTreeSet;
use std::fmt;

use postern::config::endpoints::validate_endpoint_id;
use postern::config::{Endpoint, EndpointState};

use crate::desired::{Desired, DesiredGate};
use crate::observed::{
    Balancer, Connection, DNS_VERIFIED, Observed, STATE_AVAILABLE, STATE_PENDING,
    STATE_PENDING_ACCEPTANCE, STATE_REJECTED, Service,
};

/// Choices from the command line that change the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Deletes the service of a disabled gate.
    pub prune: bool,
    /// Also rejects connections that AWS already accepted and whose owner or
    /// region is no longer allowed.
    pub reject_accepted: bool,
}

/// Everything one run changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub service: ServiceAction,
    /// Changes to an existing service, applied in one call.
    pub changes: Vec<ServiceChange>,
    pub add_principals: Vec<String>,
    pub remove_principals: Vec<String>,
    /// Endpoint ids whose connections are accepted.
    pub accept: Vec<Connection>,
    pub reject: Vec<Rejection>,
    /// Accepted connections whose owner or region is no longer allowed,
    /// kept because [`Options::reject_accepted`] is off.
    pub kept_unlisted: Vec<Connection>,
    /// Starts the private DNS name's domain verification again.
    pub verify_dns: bool,
    /// The endpoints file after the plan, or `None` for a disabled gate.
    pub endpoints: Option<EndpointList>,
}

/// The action on the endpoint service as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServiceAction {
    /// No service exists and none is wanted.
    #[default]
    Absent,
    /// The service exists and stays; [`Plan::changes`] may modify it.
    Keep {
        id: String,
    },
    Create(NewService),
    /// The gate is disabled and [`Options::prune`] is off.
    KeepDisabled {
        id: String,
    },
    Delete {
        id: String,
    },
}

/// A service to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewService {
    pub balancer_arn: String,
    pub private_dns_name: String,
    /// Empty when only the home region is supported.
    pub supported_regions: Vec<String>,
    /// Tags that find the service again: [`crate::CLUSTER_TAG`] and
    /// [`crate::GATEWAY_TAG`].
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceChange {
    RequireAcceptance,
    SetPrivateDnsName(String),
    AddBalancer(String),
    RemoveBalancer(String),
    AddRegions(Vec<String>),
    RemoveRegions(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub connection: Connection,
    pub reason: RejectReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The owner is not the account of any allowed principal.
    OwnerNotAllowed,
    /// The endpoint's region is neither the home region nor supported.
    RegionNotSupported,
    /// The service is about to be deleted.
    Pruned,
}

/// The endpoints file's entries, and the connections left out of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointList {
    pub entries: Vec<Endpoint>,
    /// Connections that the private gate's loader would reject, such as an
    /// unknown state, with the reason. Writing them would make the gate
    /// keep its previous file.
    pub skipped: Vec<(Connection, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no network load balancer tagged {gateway_tag}=private and {cluster_tag}={cluster} \
         was found; apply the manifests of `postern render` and wait until the AWS Load \
         Balancer Controller has created the private gate's balancer",
        gateway_tag = crate::GATEWAY_TAG,
        cluster_tag = crate::CLUSTER_TAG
    )]
    BalancerMissing { cluster: String },
}

/// The decision on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Accept,
    Reject(RejectReason),
    KeepUnlisted,
    Keep,
}

// === impl Plan ===

impl Plan {
    /// Tells whether the plan changes nothing in AWS.
    pub fn changes_nothing(&self) -> bool {
        matches!(
            self.service,
            ServiceAction::Absent | ServiceAction::Keep { .. } | ServiceAction::KeepDisabled { .. }
        ) && self.changes.is_empty()
            && self.add_principals.is_empty()
            && self.remove_principals.is_empty()
            && self.accept.is_empty()
            && self.reject.is_empty()
            && !self.verify_dns
    }
}

/// Plans the changes from `observed` to `desired`.
pub fn plan(desired: &Desired, observed: &Observed, options: Options) -> Result<Plan, PlanError> {
    match &desired.gate {
        Some(gate) => plan_enabled(desired, gate, observed, options),
        None => Ok(plan_disabled(observed, options)),
    }
}

fn plan_disabled(observed: &Observed, options: Options) -> Plan {
    let Some(service) = &observed.service else {
        return Plan::default();
    };
    if !options.prune {
        return Plan {
            service: ServiceAction::KeepDisabled {
                id: service.id.clone(),
            },
            ..Plan::default()
        };
    }
    // AWS refuses to delete a service with live connections.
    let reject = observed
        .connections
        .iter()
        .filter(|c| is_live(c))
        .map(|c| Rejection {
            connection: c.clone(),
            reason: RejectReason::Pruned,
        })
        .collect();
    Plan {
        service: ServiceAction::Delete {
            id: service.id.clone(),
        },
        reject,
        ..Plan::default()
    }
}

fn plan_enabled(
    desired: &Desired,
    gate: &DesiredGate,
    observed: &Observed,
    options: Options,
) -> Result<Plan, PlanError> {
    let balancer = observed
        .balancer
        .as_ref()
        .ok_or_else(|| PlanError::BalancerMissing {
            cluster: desired.cluster.clone(),
        })?;

    let Some(service) = &observed.service else {
        let supported_regions = if gate.regions.len() > 1 {
            gate.regions.iter().cloned().collect()
        } else {
            Vec::new()
        };
        return Ok(Plan {
            service: ServiceAction::Create(NewService {
                balancer_arn: balancer.arn.clone(),
                private_dns_name: gate.private_dns_name.clone(),
                supported_regions,
                cluster: desired.cluster.clone(),
            }),
            add_principals: gate.principals.iter().cloned().collect(),
            endpoints: Some(EndpointList::default()),
            ..Plan::default()
        });
    };

    let mut plan = Plan {
        service: ServiceAction::Keep {
            id: service.id.clone(),
        },
        changes: service_changes(desired, gate, balancer, service),
        add_principals: gate
            .principals
            .difference(&observed.principals)
            .cloned()
            .collect(),
        remove_principals: observed
            .principals
            .difference(&gate.principals)
            .cloned()
            .collect(),
        verify_dns: service
            .dns_verification
            .as_ref()
            .is_some_and(|v| v.state != DNS_VERIFIED),
        ..Plan::default()
    };

    let mut after = Vec::with_capacity(observed.connections.len());
    for connection in &observed.connections {
        let mut next = connection.clone();
        match decide(desired, gate, connection, options) {
            Decision::Accept => {
                plan.accept.push(connection.clone());
                next.state = STATE_AVAILABLE.to_owned();
            }
            Decision::Reject(reason) => {
                plan.reject.push(Rejection {
                    connection: connection.clone(),
                    reason,
                });
                next.state = STATE_REJECTED.to_owned();
            }
            Decision::KeepUnlisted => plan.kept_unlisted.push(connection.clone()),
            Decision::Keep => {}
        }
        after.push(next);
    }
    plan.endpoints = Some(endpoint_list(&desired.home_region, &after));
    Ok(plan)
}

fn service_changes(
    desired: &Desired,
    gate: &DesiredGate,
    balancer: &Balancer,
    service: &Service,
) -> Vec<ServiceChange> {
    let mut changes = Vec::new();
    if !service.acceptance_required {
        changes.push(ServiceChange::RequireAcceptance);
    }
    if service.private_dns_name.as_deref() != Some(gate.private_dns_name.as_str()) {
        changes.push(ServiceChange::SetPrivateDnsName(
            gate.private_dns_name.clone(),
        ));
    }

    // The new balancer goes in before the old ones go, so the service is
    // never without one.
    if !service.balancer_arns.contains(&balancer.arn) {
        changes.push(ServiceChange::AddBalancer(balancer.arn.clone()));
    }
    for arn in &service.balancer_arns {
        if *arn != balancer.arn {
            changes.push(ServiceChange::RemoveBalancer(arn.clone()));
        }
    }

    // The home region is always supported, listed or not.
    let mut supported = service.supported_regions.clone();
    supported.insert(desired.home_region.clone());
    let add: Vec<String> = gate.regions.difference(&supported).cloned().collect();
    let remove: Vec<String> = service
        .supported_regions
        .iter()
        .filter(|r| !gate.regions.contains(*r) && **r != desired.home_region)
        .cloned()
        .collect();
    if !add.is_empty() {
        changes.push(ServiceChange::AddRegions(add));
    }
    if !remove.is_empty() {
        changes.push(ServiceChange::RemoveRegions(remove));
    }
    changes
}

fn decide(
    desired: &Desired,
    gate: &DesiredGate,
    connection: &Connection,
    options: Options,
) -> Decision {
    let region = connection.region.as_deref().unwrap_or(&desired.home_region);
    let refusal = if !gate.allowed_accounts.contains(&connection.owner) {
        Some(RejectReason::OwnerNotAllowed)
    } else if !gate.regions.contains(region) {
        Some(RejectReason::RegionNotSupported)
    } else {
        None
    };

    match (connection.state.as_str(), refusal) {
        (STATE_PENDING_ACCEPTANCE, None) => Decision::Accept,
        (STATE_PENDING_ACCEPTANCE, Some(reason)) => Decision::Reject(reason),
        (STATE_AVAILABLE | STATE_PENDING, Some(reason)) if options.reject_accepted => {
            Decision::Reject(reason)
        }
        (STATE_AVAILABLE | STATE_PENDING, Some(_)) => Decision::KeepUnlisted,
        _ => Decision::Keep,
    }
}

/// Tells whether a connection carries traffic or is about to.
fn is_live(connection: &Connection) -> bool {
    matches!(
        connection.state.as_str(),
        STATE_PENDING_ACCEPTANCE | STATE_PENDING | STATE_AVAILABLE
    )
}

/// Builds the endpoints file's entries from connections, sorted by
/// endpoint id. A connection without a region is in `home_region`.
pub fn endpoint_list(home_region: &str, connections: &[Connection]) -> EndpointList {
    let mut list = EndpointList::default();
    let mut seen = BTreeSet::new();
    for connection in connections {
        match endpoint_entry(home_region, connection) {
            Ok(entry) if seen.insert(entry.id.clone()) => list.entries.push(entry),
            Ok(entry) => list.skipped.push((
                connection.clone(),
                format!("duplicate endpoint id {}", entry.id),
            )),
            Err(reason) => list.skipped.push((connection.clone(), reason)),
        }
    }
    list.entries.sort_by(|a, b| a.id.cmp(&b.id));
    list
}

fn endpoint_entry(home_region: &str, connection: &Connection) -> Result<Endpoint, String> {
    validate_endpoint_id(&connection.endpoint_id).map_err(|e| e.to_string())?;
    let owner = &connection.owner;
    if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid owner {owner:?}; expected a 12-digit account"
        ));
    }
    let state = EndpointState::parse(&connection.state)?;
    Ok(Endpoint {
        id: connection.endpoint_id.clone(),
        owner: owner.clone(),
        state,
        region: Some(
            connection
                .region
                .clone()
                .unwrap_or_else(|| home_region.to_owned()),
        ),
    })
}

// === impl RejectReason ===

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::OwnerNotAllowed => "the owner is not the account of an allowed principal",
            RejectReason::RegionNotSupported => "the region is not supported",
            RejectReason::Pruned => "the service is deleted",
        })
    }
}

#[cfg(test)]
mod tests;
