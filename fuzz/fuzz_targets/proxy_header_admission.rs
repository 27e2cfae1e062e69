//! Builds a PROXY v2 header from fuzzer-chosen fields and TLVs, parses it,
//! and runs the result through both gates' admission rules.
//!
//! The input format is `HeaderCase`'s encoding (see the crate docs). Checks:
//! - the parser returns what the model in `HeaderCase::expected_parse`
//!   predicts, where it makes a prediction;
//! - an admitted PrivateLink connection names an endpoint that the header
//!   sent, that is in the endpoints list, `available`, and owned by an
//!   allowed account, and its client is the header's source;
//! - a header with an endpoint id is admitted only as PrivateLink, never by
//!   the CIDR rule;
//! - a header without one is admitted only as a proxied VPC workload whose
//!   source is in the VPC CIDRs;
//! - LOCAL is admitted only as a health check;
//! - the public gate admits every parsed header, without an endpoint.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::config::EndpointState;
use postern::net::proxy_header::{Parsed, parse};
use postern::policy::admission::{AdmissionKind, ProxyHeader, canonical};
use postern_fuzz::{HeaderCase, endpoints, private_rules, public_rules, trusted_peer};

fuzz_target!(|input: &[u8]| {
    let case = HeaderCase::decode(input);
    let bytes = case.build();
    let result = parse(&bytes);

    if let Some(expected) = case.expected_parse() {
        match (&expected, &result) {
            (Ok(header), Ok(Parsed::Header(parsed, len))) => {
                assert_eq!(parsed, header, "parsed header differs from the one built");
                assert_eq!(
                    *len,
                    bytes.len(),
                    "header length differs from the bytes built"
                );
            }
            (Err(()), Err(_)) => {}
            _ => panic!("expected {expected:?}, parse returned {result:?} for {case:?}"),
        }
    }

    if let Ok(Parsed::Header(header, len)) = &result {
        assert!(
            *len > 0 && *len <= bytes.len(),
            "header length {len} out of range"
        );
        check_private_gate(header);
        check_public_gate(header);
    }
});

fn check_private_gate(header: &ProxyHeader) {
    let rules = private_rules();
    let endpoints = endpoints();
    let Ok((admission, identity)) = rules.admit_header(trusted_peer(), header, &endpoints) else {
        return;
    };

    let (source, sent_id) = match header {
        ProxyHeader::Local => {
            assert_eq!(
                admission.kind,
                AdmissionKind::HealthCheck,
                "LOCAL admitted as {admission:?}"
            );
            assert_eq!(identity, None, "LOCAL admitted with an endpoint");
            return;
        }
        ProxyHeader::Proxy {
            source,
            endpoint_id,
        } => (*source, endpoint_id.as_deref()),
    };

    match admission.kind {
        AdmissionKind::PrivateLink => {
            let identity = identity.expect("a PrivateLink admission without an endpoint");
            assert_eq!(
                sent_id,
                Some(identity.id.as_str()),
                "endpoint differs from the header's"
            );
            let endpoint = endpoints
                .get(&identity.id)
                .unwrap_or_else(|| panic!("admitted endpoint {} is not in the list", identity.id));
            assert_eq!(
                endpoint.state,
                EndpointState::Available,
                "admitted {endpoint:?}"
            );
            assert!(
                rules.allowed_accounts.contains(&endpoint.owner),
                "admitted {endpoint:?}, whose owner is not allowed"
            );
            assert_eq!(
                identity.owner, endpoint.owner,
                "owner differs from the list's"
            );
            assert_eq!(
                Some(admission.client),
                source,
                "client is not the header's source"
            );
        }
        AdmissionKind::ProxiedVpc => {
            assert_eq!(
                sent_id, None,
                "a header with an endpoint id admitted by CIDR"
            );
            assert_eq!(identity, None, "a proxied VPC admission with an endpoint");
            assert_eq!(
                Some(admission.client),
                source,
                "client is not the header's source"
            );
            let client_ip = canonical(admission.client.ip());
            assert!(
                rules.vpc_cidrs.iter().any(|net| net.contains(&client_ip)),
                "admitted source {} is outside the VPC CIDRs",
                admission.client
            );
        }
        kind => panic!("private gate admitted a PROXY header as {kind:?}"),
    }
}

fn check_public_gate(header: &ProxyHeader) {
    let admitted = public_rules().admit_header(trusted_peer(), header, &endpoints());
    let (admission, identity) = admitted.expect("the public gate refused a parsed header");
    assert_eq!(identity, None, "the public gate admitted with an endpoint");

    let expected = match header {
        ProxyHeader::Local => (AdmissionKind::HealthCheck, trusted_peer()),
        ProxyHeader::Proxy { source, .. } => {
            (AdmissionKind::Public, source.unwrap_or(trusted_peer()))
        }
    };
    assert_eq!(
        (admission.kind, admission.client),
        expected,
        "public admission of {header:?}"
    );
}
