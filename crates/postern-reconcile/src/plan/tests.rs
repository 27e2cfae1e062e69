use std::collections::BTreeSet;
use std::path::Path;

use postern::config::Config;

use super::*;
use crate::observed::DnsVerification;

const ALLOWED: &str = "012345678910";
const ROLE_ACCOUNT: &str = "210987654321";
const STRANGER: &str = "999988887777";
const BALANCER_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/net/private/0123456789abcdef";

fn vars(private_gateway: &str) -> String {
    format!(
        "\
cluster: {{hostname: example.test, region: us-east-1}}
gateways:
  public: {{listen: 127.0.0.1:18080}}
  private: {{listen: 127.0.0.1:18081}}
privatelink: {{endpoints_file: endpoints.yaml}}
app_config:
  istio:
    private_gateway:
{private_gateway}"
    )
}

fn desired(private_gateway: &str) -> Desired {
    let config = Config::from_text(Path::new("/etc/postern/vars.yaml"), &vars(private_gateway))
        .unwrap_or_else(|p| panic!("{p}"));
    Desired::from_config(&config)
}

fn enabled() -> Desired {
    desired(
        "      enabled: true
      allowed_principals:
        - arn:aws:iam::012345678910:root
        - arn:aws:iam::210987654321:role/inference-clients
",
    )
}

fn disabled() -> Desired {
    desired("      enabled: false\n")
}

fn balancer() -> Balancer {
    Balancer {
        arn: BALANCER_ARN.to_owned(),
        name: "private".to_owned(),
    }
}

/// A service exactly as [`enabled`] wants it.
fn service_in_line() -> Service {
    Service {
        id: "vpce-svc-0a1b2c3d".to_owned(),
        name: "com.amazonaws.vpce.us-east-1.vpce-svc-0a1b2c3d".to_owned(),
        state: "Available".to_owned(),
        acceptance_required: true,
        balancer_arns: BTreeSet::from([BALANCER_ARN.to_owned()]),
        private_dns_name: Some("*.internal.example.test".to_owned()),
        dns_verification: Some(DnsVerification {
            state: "verified".to_owned(),
            record_type: "TXT".to_owned(),
            name: "_pl-verify.internal.example.test".to_owned(),
            value: "vpce:abc".to_owned(),
        }),
        supported_regions: BTreeSet::from(["us-east-1".to_owned()]),
    }
}

fn connection(id: &str, owner: &str, state: &str) -> Connection {
    Connection {
        endpoint_id: id.to_owned(),
        owner: owner.to_owned(),
        state: state.to_owned(),
        region: None,
    }
}

fn observed_in_line() -> Observed {
    Observed {
        balancer: Some(balancer()),
        service: Some(service_in_line()),
        principals: BTreeSet::from([
            "arn:aws:iam::012345678910:root".to_owned(),
            "arn:aws:iam::210987654321:role/inference-clients".to_owned(),
        ]),
        connections: Vec::new(),
    }
}

fn ids(connections: &[Connection]) -> Vec<&str> {
    connections.iter().map(|c| c.endpoint_id.as_str()).collect()
}

#[test]
fn first_run_creates_service() {
    let observed = Observed {
        balancer: Some(balancer()),
        ..Observed::default()
    };
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    let ServiceAction::Create(new) = &plan.service else {
        panic!("expected a new service: {plan:?}");
    };
    assert_eq!(new.balancer_arn, BALANCER_ARN);
    assert_eq!(new.private_dns_name, "*.internal.example.test");
    assert!(new.supported_regions.is_empty(), "{new:?}");
    assert_eq!(new.cluster, "example.test");
    assert_eq!(
        plan.add_principals,
        [
            "arn:aws:iam::012345678910:root",
            "arn:aws:iam::210987654321:role/inference-clients"
        ]
    );
    assert_eq!(plan.endpoints, Some(EndpointList::default()));
    assert!(!plan.changes_nothing());
}

#[test]
fn service_in_line_changes_nothing() {
    let plan = plan(&enabled(), &observed_in_line(), Options::default()).unwrap();
    assert_eq!(
        plan.service,
        ServiceAction::Keep {
            id: "vpce-svc-0a1b2c3d".to_owned()
        }
    );
    assert!(plan.changes_nothing(), "{plan:?}");
}

#[test]
fn missing_balancer_is_an_error() {
    let error = plan(&enabled(), &Observed::default(), Options::default()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("postern.io/cluster=example.test"),
        "{message}"
    );
    assert!(message.contains("postern render"), "{message}");
}

#[test]
fn principals_made_equal() {
    let mut observed = observed_in_line();
    observed.principals = BTreeSet::from([
        "arn:aws:iam::012345678910:root".to_owned(),
        "arn:aws:iam::555566667777:root".to_owned(),
    ]);
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    assert_eq!(
        plan.add_principals,
        ["arn:aws:iam::210987654321:role/inference-clients"]
    );
    assert_eq!(plan.remove_principals, ["arn:aws:iam::555566667777:root"]);
}

#[test]
fn pending_connections_accepted_or_rejected() {
    let mut observed = observed_in_line();
    observed.connections = vec![
        connection("vpce-0a1b2c3d4e5f60001", ALLOWED, "pendingAcceptance"),
        connection("vpce-0a1b2c3d4e5f60002", ROLE_ACCOUNT, "pendingAcceptance"),
        connection("vpce-0a1b2c3d4e5f60003", STRANGER, "pendingAcceptance"),
        connection("vpce-0a1b2c3d4e5f60004", ALLOWED, "available"),
        connection("vpce-0a1b2c3d4e5f60005", STRANGER, "rejected"),
    ];
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    assert_eq!(
        ids(&plan.accept),
        ["vpce-0a1b2c3d4e5f60001", "vpce-0a1b2c3d4e5f60002"]
    );
    assert_eq!(plan.reject.len(), 1);
    assert_eq!(
        plan.reject[0].connection.endpoint_id,
        "vpce-0a1b2c3d4e5f60003"
    );
    assert_eq!(plan.reject[0].reason, RejectReason::OwnerNotAllowed);
    assert!(plan.kept_unlisted.is_empty());

    let entries = plan.endpoints.unwrap().entries;
    let states: Vec<(&str, EndpointState)> =
        entries.iter().map(|e| (e.id.as_str(), e.state)).collect();
    assert_eq!(
        states,
        [
            ("vpce-0a1b2c3d4e5f60001", EndpointState::Available),
            ("vpce-0a1b2c3d4e5f60002", EndpointState::Available),
            ("vpce-0a1b2c3d4e5f60003", EndpointState::Rejected),
            ("vpce-0a1b2c3d4e5f60004", EndpointState::Available),
            ("vpce-0a1b2c3d4e5f60005", EndpointState::Rejected),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| e.region.as_deref() == Some("us-east-1"))
    );
}

#[test]
fn removed_principal_keeps_accepted_connection() {
    let mut observed = observed_in_line();
    observed.connections = vec![connection("vpce-0a1b2c3d4e5f60003", STRANGER, "available")];
    let plan_kept = plan(&enabled(), &observed, Options::default()).unwrap();
    assert!(plan_kept.reject.is_empty());
    assert_eq!(ids(&plan_kept.kept_unlisted), ["vpce-0a1b2c3d4e5f60003"]);
    assert!(plan_kept.changes_nothing());

    let options = Options {
        reject_accepted: true,
        ..Options::default()
    };
    let plan_rejected = plan(&enabled(), &observed, options).unwrap();
    assert_eq!(plan_rejected.reject.len(), 1);
    assert_eq!(
        plan_rejected.reject[0].reason,
        RejectReason::OwnerNotAllowed
    );
    assert!(plan_rejected.kept_unlisted.is_empty());
}

#[test]
fn other_regions_rejected_by_default() {
    let mut observed = observed_in_line();
    let mut remote = connection("vpce-0a1b2c3d4e5f60001", ALLOWED, "pendingAcceptance");
    remote.region = Some("eu-west-1".to_owned());
    observed.connections = vec![remote];
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    assert!(plan.accept.is_empty());
    assert_eq!(plan.reject[0].reason, RejectReason::RegionNotSupported);
}

#[test]
fn supported_regions_added_and_accepted() {
    let desired = desired(
        "      enabled: true
      allowed_principals: [arn:aws:iam::012345678910:root]
      supported_regions: [eu-west-1]
",
    );
    let mut observed = observed_in_line();
    observed.principals = BTreeSet::from(["arn:aws:iam::012345678910:root".to_owned()]);
    let mut remote = connection("vpce-0a1b2c3d4e5f60001", ALLOWED, "pendingAcceptance");
    remote.region = Some("eu-west-1".to_owned());
    observed.connections = vec![remote];

    let plan = plan(&desired, &observed, Options::default()).unwrap();
    assert_eq!(
        plan.changes,
        [ServiceChange::AddRegions(vec!["eu-west-1".to_owned()])]
    );
    assert_eq!(ids(&plan.accept), ["vpce-0a1b2c3d4e5f60001"]);
    let entries = plan.endpoints.unwrap().entries;
    assert_eq!(entries[0].region.as_deref(), Some("eu-west-1"));
}

#[test]
fn new_service_lists_every_region() {
    let desired = desired(
        "      enabled: true
      supported_regions: [us-west-2, eu-west-1]
",
    );
    let observed = Observed {
        balancer: Some(balancer()),
        ..Observed::default()
    };
    let plan = plan(&desired, &observed, Options::default()).unwrap();
    let ServiceAction::Create(new) = plan.service else {
        panic!("expected a new service");
    };
    assert_eq!(
        new.supported_regions,
        ["eu-west-1", "us-east-1", "us-west-2"]
    );
}

#[test]
fn dropped_region_removed_but_never_home() {
    let mut observed = observed_in_line();
    let service = observed.service.as_mut().unwrap();
    service.supported_regions = BTreeSet::from(["us-east-1".to_owned(), "eu-west-1".to_owned()]);
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    assert_eq!(
        plan.changes,
        [ServiceChange::RemoveRegions(vec!["eu-west-1".to_owned()])]
    );

    // A service whose list omits the home region needs no change either.
    let mut observed = observed_in_line();
    observed.service.as_mut().unwrap().supported_regions.clear();
    let plan = super::plan(&enabled(), &observed, Options::default()).unwrap();
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
}

#[test]
fn drifted_service_modified() {
    let mut observed = observed_in_line();
    let service = observed.service.as_mut().unwrap();
    service.acceptance_required = false;
    service.private_dns_name = Some("*.internal.old.example".to_owned());
    service.balancer_arns = BTreeSet::from(["arn:old".to_owned()]);
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    assert_eq!(
        plan.changes,
        [
            ServiceChange::RequireAcceptance,
            ServiceChange::SetPrivateDnsName("*.internal.example.test".to_owned()),
            ServiceChange::AddBalancer(BALANCER_ARN.to_owned()),
            ServiceChange::RemoveBalancer("arn:old".to_owned()),
        ]
    );
}

#[test]
fn unverified_domain_verified_again() {
    let mut observed = observed_in_line();
    let service = observed.service.as_mut().unwrap();
    service.dns_verification.as_mut().unwrap().state = "pendingVerification".to_owned();
    let plan = plan(&enabled(), &observed, Options::default()).unwrap();
    assert!(plan.verify_dns);
}

#[test]
fn disabled_gate_keeps_service() {
    let plan = plan(&disabled(), &observed_in_line(), Options::default()).unwrap();
    assert_eq!(
        plan.service,
        ServiceAction::KeepDisabled {
            id: "vpce-svc-0a1b2c3d".to_owned()
        }
    );
    assert!(plan.changes_nothing());
    assert_eq!(plan.endpoints, None);

    let nothing = super::plan(&disabled(), &Observed::default(), Options::default()).unwrap();
    assert_eq!(nothing, Plan::default());
}

#[test]
fn prune_rejects_live_connections_then_deletes() {
    let mut observed = observed_in_line();
    observed.connections = vec![
        connection("vpce-0a1b2c3d4e5f60001", ALLOWED, "available"),
        connection("vpce-0a1b2c3d4e5f60002", STRANGER, "pendingAcceptance"),
        connection("vpce-0a1b2c3d4e5f60003", ALLOWED, "rejected"),
    ];
    let options = Options {
        prune: true,
        ..Options::default()
    };
    let plan = plan(&disabled(), &observed, options).unwrap();
    assert_eq!(
        plan.service,
        ServiceAction::Delete {
            id: "vpce-svc-0a1b2c3d".to_owned()
        }
    );
    let rejected: Vec<&str> = plan
        .reject
        .iter()
        .map(|r| r.connection.endpoint_id.as_str())
        .collect();
    assert_eq!(
        rejected,
        ["vpce-0a1b2c3d4e5f60001", "vpce-0a1b2c3d4e5f60002"]
    );
    assert!(plan.reject.iter().all(|r| r.reason == RejectReason::Pruned));
}

#[test]
fn unreadable_connections_left_out_of_file() {
    let connections = vec![
        connection("vpce-0a1b2c3d4e5f60002", ALLOWED, "available"),
        connection("vpce-0a1b2c3d4e5f60001", ALLOWED, "somethingNew"),
        connection("vpce-NOT-HEX", ALLOWED, "available"),
        connection("vpce-0a1b2c3d4e5f60003", "12345", "available"),
    ];
    let list = endpoint_list("us-east-1", &connections);
    let ids: Vec<&str> = list.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["vpce-0a1b2c3d4e5f60002"]);
    assert_eq!(list.skipped.len(), 3);
    assert!(
        list.skipped[0].1.contains("somethingNew"),
        "{:?}",
        list.skipped
    );
    assert!(
        list.skipped[1].1.contains("vpce-NOT-HEX"),
        "{:?}",
        list.skipped
    );
    assert!(list.skipped[2].1.contains("12345"), "{:?}", list.skipped);
}
