//! The plan and the service, as lines for the operator.

use crate::observed::{DNS_VERIFIED, Service};
use crate::plan::{Plan, ServiceAction, ServiceChange};

/// Describes every change of `plan`, one line each, or reports that nothing
/// changes.
pub fn plan_lines(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    match &plan.service {
        ServiceAction::Absent => {}
        ServiceAction::Keep { .. } => {}
        ServiceAction::Create(new) => {
            let regions = if new.supported_regions.is_empty() {
                String::new()
            } else {
                format!(", supported regions {}", new.supported_regions.join(", "))
            };
            lines.push(format!(
                "create endpoint service on {} (acceptance required, private DNS name {}{regions})",
                new.balancer_arn, new.private_dns_name
            ));
        }
        ServiceAction::KeepDisabled { id } => lines.push(format!(
            "keep endpoint service {id}: the private gate is disabled, and only --prune deletes it"
        )),
        ServiceAction::Delete { id } => lines.push(format!("delete endpoint service {id}")),
    }
    for change in &plan.changes {
        lines.push(change_line(change));
    }
    for arn in &plan.add_principals {
        lines.push(format!("add allowed principal {arn}"));
    }
    for arn in &plan.remove_principals {
        lines.push(format!("remove allowed principal {arn}"));
    }
    for connection in &plan.accept {
        lines.push(format!(
            "accept {} (owner {})",
            connection.endpoint_id, connection.owner
        ));
    }
    for rejection in &plan.reject {
        lines.push(format!(
            "reject {} (owner {}): {}",
            rejection.connection.endpoint_id, rejection.connection.owner, rejection.reason
        ));
    }
    if plan.verify_dns {
        lines.push("start the private DNS name's domain verification".to_owned());
    }
    if plan.changes_nothing() {
        lines.push("no changes".to_owned());
    }
    lines
}

/// Warnings about what the plan leaves alone on purpose.
pub fn plan_warnings(plan: &Plan) -> Vec<String> {
    let mut warnings = Vec::new();
    for connection in &plan.kept_unlisted {
        warnings.push(format!(
            "{} (owner {}) stays accepted in AWS although its account or region is no longer \
             allowed; the private gate refuses it, and --reject-accepted rejects it",
            connection.endpoint_id, connection.owner
        ));
    }
    if let Some(endpoints) = &plan.endpoints {
        for (connection, reason) in &endpoints.skipped {
            warnings.push(format!(
                "{} is left out of the endpoints file: {reason}",
                connection.endpoint_id
            ));
        }
    }
    warnings
}

fn change_line(change: &ServiceChange) -> String {
    match change {
        ServiceChange::RequireAcceptance => "require acceptance of endpoint connections".to_owned(),
        ServiceChange::SetPrivateDnsName(name) => format!("set the private DNS name to {name}"),
        ServiceChange::AddBalancer(arn) => format!("add load balancer {arn}"),
        ServiceChange::RemoveBalancer(arn) => format!("remove load balancer {arn}"),
        ServiceChange::AddRegions(regions) => {
            format!("add supported regions {}", regions.join(", "))
        }
        ServiceChange::RemoveRegions(regions) => {
            format!("remove supported regions {}", regions.join(", "))
        }
    }
}

/// Describes the service: the name client VPCs need, and the DNS record
/// that proves the private DNS name's domain.
pub fn service_lines(service: &Service) -> Vec<String> {
    let mut lines = vec![format!(
        "endpoint service {} ({}): {}",
        service.name, service.id, service.state
    )];
    if let Some(name) = &service.private_dns_name {
        lines.push(format!("private DNS name: {name}"));
    }
    if let Some(verification) = &service.dns_verification {
        let todo = if verification.state == DNS_VERIFIED {
            ""
        } else {
            "; create this record in the domain's public DNS zone"
        };
        lines.push(format!(
            "domain verification: {}; {} record {} with the value \"{}\"{todo}",
            verification.state, verification.record_type, verification.name, verification.value
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::observed::{Connection, DnsVerification};
    use crate::plan::{RejectReason, Rejection};

    fn connection(id: &str, owner: &str) -> Connection {
        Connection {
            endpoint_id: id.to_owned(),
            owner: owner.to_owned(),
            state: "pendingAcceptance".to_owned(),
            region: None,
        }
    }

    #[test]
    fn every_change_listed() {
        let plan = Plan {
            service: ServiceAction::Keep {
                id: "vpce-svc-1".to_owned(),
            },
            add_principals: vec!["arn:aws:iam::012345678910:root".to_owned()],
            remove_principals: vec!["arn:aws:iam::555566667777:root".to_owned()],
            accept: vec![connection("vpce-0a1b2c3d", "012345678910")],
            reject: vec![Rejection {
                connection: connection("vpce-0a1b2c3e", "999988887777"),
                reason: RejectReason::OwnerNotAllowed,
            }],
            ..Plan::default()
        };
        assert_eq!(
            plan_lines(&plan),
            [
                "add allowed principal arn:aws:iam::012345678910:root",
                "remove allowed principal arn:aws:iam::555566667777:root",
                "accept vpce-0a1b2c3d (owner 012345678910)",
                "reject vpce-0a1b2c3e (owner 999988887777): the owner is not the account of an \
                 allowed principal",
            ]
        );
    }

    #[test]
    fn empty_plan_says_no_changes() {
        assert_eq!(plan_lines(&Plan::default()), ["no changes"]);
    }

    #[test]
    fn unverified_domain_shows_record() {
        let service = Service {
            id: "vpce-svc-1".to_owned(),
            name: "com.amazonaws.vpce.us-east-1.vpce-svc-1".to_owned(),
            state: "Available".to_owned(),
            acceptance_required: true,
            balancer_arns: BTreeSet::new(),
            private_dns_name: Some("*.internal.example.test".to_owned()),
            dns_verification: Some(DnsVerification {
                state: "pendingVerification".to_owned(),
                record_type: "TXT".to_owned(),
                name: "_abc.internal.example.test".to_owned(),
                value: "vpce:xyz".to_owned(),
            }),
            supported_regions: BTreeSet::new(),
        };
        let lines = service_lines(&service);
        assert!(lines[0].contains("com.amazonaws.vpce.us-east-1.vpce-svc-1"));
        assert!(
            lines[2].contains("TXT record _abc.internal.example.test"),
            "{lines:?}"
        );
        assert!(lines[2].contains("\"vpce:xyz\""), "{lines:?}");
        assert!(lines[2].contains("create this record"), "{lines:?}");
    }
}
