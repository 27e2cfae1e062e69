use super::*;
use crate::config::Endpoint;

fn private_rules() -> Rules {
    Rules {
        gate: Gate::Private,
        proxy_sources: vec!["127.0.0.2/32".parse().unwrap()],
        vpc_cidrs: vec!["127.0.1.0/24".parse().unwrap()],
        allowed_accounts: vec!["012345678910".into()],
    }
}

fn endpoints() -> Endpoints {
    let endpoint = |id: &str, owner: &str, state| Endpoint {
        id: id.into(),
        owner: owner.into(),
        state,
        region: None,
    };
    Endpoints::from_list([
        endpoint(
            "vpce-0a1b2c3d4e5f60001",
            "012345678910",
            EndpointState::Available,
        ),
        endpoint(
            "vpce-0a1b2c3d4e5f60002",
            "999988887777",
            EndpointState::Available,
        ),
        endpoint(
            "vpce-0a1b2c3d4e5f60003",
            "012345678910",
            EndpointState::PendingAcceptance,
        ),
    ])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn via_endpoint(id: &str, source: &str) -> ProxyHeader {
    ProxyHeader::Proxy {
        source: Some(addr(source)),
        endpoint_id: Some(id.into()),
    }
}

#[test]
fn private_peer_classes() {
    let rules = private_rules();
    let vpc = rules.classify_peer(addr("127.0.1.7:5000"));
    assert_eq!(
        vpc,
        PeerVerdict::Admit(Admission {
            kind: AdmissionKind::VpcWorkload,
            client: addr("127.0.1.7:5000"),
        })
    );
    assert_eq!(
        rules.classify_peer(addr("127.0.0.2:5000")),
        PeerVerdict::ExpectProxyHeader
    );
    assert_eq!(
        rules.classify_peer(addr("127.0.0.1:5000")),
        PeerVerdict::Refuse(Refusal::NotInVpc)
    );
    assert_eq!(
        rules.classify_peer(addr("[::ffff:127.0.1.9]:5000")),
        PeerVerdict::Admit(Admission {
            kind: AdmissionKind::VpcWorkload,
            client: addr("[::ffff:127.0.1.9]:5000"),
        })
    );
}

#[test]
fn trusted_source_inside_vpc_still_needs_header() {
    let mut rules = private_rules();
    rules.vpc_cidrs.push("127.0.0.0/24".parse().unwrap());
    assert_eq!(
        rules.classify_peer(addr("127.0.0.2:1")),
        PeerVerdict::ExpectProxyHeader
    );
}

#[test]
fn privatelink_endpoint_rules() {
    let rules = private_rules();
    let peer = addr("127.0.0.2:40000");
    let decide = |header: ProxyHeader| rules.admit_header(peer, &header, &endpoints());

    let (admission, identity) =
        decide(via_endpoint("vpce-0a1b2c3d4e5f60001", "10.9.8.7:1234")).unwrap();
    assert_eq!(admission.kind, AdmissionKind::PrivateLink);
    assert_eq!(admission.client, addr("10.9.8.7:1234"));
    let identity = identity.unwrap();
    assert_eq!(identity.id, "vpce-0a1b2c3d4e5f60001");
    assert_eq!(identity.owner, "012345678910");

    let cases = [
        ("vpce-0a1b2c3d4e5f60002", Refusal::EndpointOwnerNotAllowed),
        ("vpce-0a1b2c3d4e5f60003", Refusal::EndpointNotAvailable),
        ("vpce-0a1b2c3d4e5f69999", Refusal::EndpointUnknown),
        ("vpce-0A1B2C3D4E5F60001", Refusal::EndpointIdInvalid),
        ("vpce-0a1b2c3d4e5f60001\0", Refusal::EndpointIdInvalid),
        ("", Refusal::EndpointIdInvalid),
    ];
    for (id, expected) in cases {
        let refusal = decide(via_endpoint(id, "127.0.1.5:1")).unwrap_err();
        assert_eq!(refusal, expected, "{id:?}");
    }
}

#[test]
fn vpc_cidr_never_admits_unlisted_endpoint() {
    // A source inside the VPC does not rescue an endpoint that fails.
    let rules = private_rules();
    let header = via_endpoint("vpce-0a1b2c3d4e5f60002", "127.0.1.5:1");
    let refusal = rules
        .admit_header(addr("127.0.0.2:1"), &header, &endpoints())
        .unwrap_err();
    assert_eq!(refusal, Refusal::EndpointOwnerNotAllowed);
}

#[test]
fn header_without_endpoint_uses_source() {
    let rules = private_rules();
    let peer = addr("127.0.0.2:1");
    let inside = ProxyHeader::Proxy {
        source: Some(addr("127.0.1.20:999")),
        endpoint_id: None,
    };
    let (admission, identity) = rules.admit_header(peer, &inside, &endpoints()).unwrap();
    assert_eq!(admission.kind, AdmissionKind::ProxiedVpc);
    assert_eq!(admission.client, addr("127.0.1.20:999"));
    assert!(identity.is_none());

    let outside = ProxyHeader::Proxy {
        source: Some(addr("127.0.0.9:999")),
        endpoint_id: None,
    };
    let unknown = ProxyHeader::Proxy {
        source: None,
        endpoint_id: None,
    };
    for header in [outside, unknown] {
        assert_eq!(
            rules.admit_header(peer, &header, &endpoints()).unwrap_err(),
            Refusal::SourceNotInVpc
        );
    }
}

#[test]
fn local_command_is_health_only() {
    let rules = private_rules();
    let peer = addr("127.0.0.2:1");
    let (admission, _) = rules
        .admit_header(peer, &ProxyHeader::Local, &endpoints())
        .unwrap();
    assert_eq!(admission.kind, AdmissionKind::HealthCheck);
    assert_eq!(admission.client, peer);
}

#[test]
fn public_gate_admits_everyone() {
    let rules = Rules {
        gate: Gate::Public,
        proxy_sources: vec!["127.0.0.3/32".parse().unwrap()],
        vpc_cidrs: vec![],
        allowed_accounts: vec![],
    };
    let verdict = rules.classify_peer(addr("203.0.113.9:1"));
    assert!(matches!(
        verdict,
        PeerVerdict::Admit(Admission {
            kind: AdmissionKind::Public,
            ..
        })
    ));
    assert_eq!(
        rules.classify_peer(addr("127.0.0.3:1")),
        PeerVerdict::ExpectProxyHeader
    );
    let header = via_endpoint("vpce-0a1b2c3d4e5f60002", "198.51.100.4:80");
    let (admission, identity) = rules
        .admit_header(addr("127.0.0.3:1"), &header, &Endpoints::default())
        .unwrap();
    assert_eq!(admission.client, addr("198.51.100.4:80"));
    assert!(identity.is_none());
}

#[test]
fn revoked_endpoint_no_longer_admits() {
    let rules = private_rules();
    let peer = addr("127.0.0.2:1");
    let header = via_endpoint("vpce-0a1b2c3d4e5f60001", "10.9.8.7:1");
    let (admission, identity) = rules.admit_header(peer, &header, &endpoints()).unwrap();
    assert_eq!(
        rules.still_admits(&admission, identity.as_ref(), &endpoints()),
        Ok(())
    );

    let revoked = Endpoints::from_list([Endpoint {
        id: "vpce-0a1b2c3d4e5f60001".into(),
        owner: "012345678910".into(),
        state: EndpointState::Rejected,
        region: None,
    }]);
    assert_eq!(
        rules.still_admits(&admission, identity.as_ref(), &revoked),
        Err(Refusal::EndpointNotAvailable)
    );
    let mut no_principals = rules.clone();
    no_principals.allowed_accounts.clear();
    assert_eq!(
        no_principals.still_admits(&admission, identity.as_ref(), &endpoints()),
        Err(Refusal::EndpointOwnerNotAllowed)
    );
    assert_eq!(
        rules.still_admits(&admission, identity.as_ref(), &Endpoints::default()),
        Err(Refusal::EndpointUnknown)
    );
}

#[test]
fn narrowed_vpc_no_longer_admits() {
    let rules = private_rules();
    let PeerVerdict::Admit(admission) = rules.classify_peer(addr("127.0.1.7:5000")) else {
        panic!("expected an admission")
    };
    let mut narrowed = rules.clone();
    narrowed.vpc_cidrs = vec!["127.0.1.128/25".parse().unwrap()];
    assert_eq!(
        narrowed.still_admits(&admission, None, &endpoints()),
        Err(Refusal::NotInVpc)
    );
    assert_eq!(rules.still_admits(&admission, None, &endpoints()), Ok(()));
}
