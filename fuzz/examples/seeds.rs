//! Writes the seed corpora of both fuzz targets into `fuzz/corpus/<target>/`.
//!
//! Run from the repository root:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`
//!
//! The raw target's v2 seeds are assembled byte by byte here, not with ppp,
//! so that they do not depend on the library under test.

use std::fs;
use std::io;
use std::path::Path;

use postern::net::proxy_header::{PP2_TYPE_AWS, V2_SIGNATURE};
use postern_fuzz::{ENDPOINTS, Family, HeaderCase, Item, aws_endpoint_value};
use ppp::v2::Protocol;

/// A PROXY v2 command byte: version 2 in the high nibble.
const V2_LOCAL: u8 = 0x20;
const V2_PROXY: u8 = 0x21;
/// Address family and protocol bytes.
const AF_UNSPEC: u8 = 0x00;
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;
/// PP2_TYPE_NOOP and PP2_TYPE_UNIQUE_ID from the PROXY protocol.
const PP2_TYPE_NOOP: u8 = 0x04;
const PP2_TYPE_UNIQUE_ID: u8 = 0x05;

const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: app.internal.example.com\r\n\r\n";

fn main() -> io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let raw = corpus.join("proxy_header_raw");
    fs::create_dir_all(&raw)?;
    for (name, bytes) in raw_seeds() {
        fs::write(raw.join(name), bytes)?;
    }

    let admission = corpus.join("proxy_header_admission");
    fs::create_dir_all(&admission)?;
    for (name, case) in admission_seeds() {
        assert_eq!(
            HeaderCase::decode(&case.encode()),
            case,
            "{name} does not round-trip"
        );
        fs::write(admission.join(name), case.encode())?;
    }

    println!("wrote seeds into {}", corpus.display());
    Ok(())
}

fn raw_seeds() -> Vec<(String, Vec<u8>)> {
    let endpoint_id = ENDPOINTS[0].0.as_bytes();
    let aws = tlv(PP2_TYPE_AWS, &aws_endpoint_value(endpoint_id));
    let ipv4 = ipv4_addresses([10, 0, 5, 6], [10, 0, 0, 1], 51_000, 443);
    let ipv6 = ipv6_addresses(
        0xfd00_0000_0000_0000_0000_0000_0000_0005,
        0xfd00_0000_0000_0000_0000_0000_0000_0001,
        51_000,
        443,
    );

    let v2_endpoint = v2(
        V2_PROXY,
        TCP_OVER_IPV4,
        &[
            ipv4.clone(),
            tlv(PP2_TYPE_UNIQUE_ID, b"unique"),
            aws.clone(),
            tlv(0xE0, b"x"),
        ]
        .concat(),
    );
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "v1-tcp4",
            b"PROXY TCP4 10.0.5.6 10.0.0.1 51000 443\r\n".to_vec(),
        ),
        (
            "v1-tcp4-then-http",
            [
                &b"PROXY TCP4 10.0.5.6 10.0.0.1 51000 443\r\n"[..],
                HTTP_REQUEST,
            ]
            .concat(),
        ),
        (
            "v1-tcp6",
            b"PROXY TCP6 fd00::5 fd00::1 51000 443\r\n".to_vec(),
        ),
        ("v1-unknown", b"PROXY UNKNOWN\r\n".to_vec()),
        ("v2-proxy-ipv4", v2(V2_PROXY, TCP_OVER_IPV4, &ipv4)),
        ("v2-proxy-ipv6", v2(V2_PROXY, TCP_OVER_IPV6, &ipv6)),
        ("v2-endpoint-ipv4", v2_endpoint.clone()),
        (
            "v2-endpoint-then-http",
            [&v2_endpoint[..], HTTP_REQUEST].concat(),
        ),
        (
            "v2-endpoint-ipv6",
            v2(V2_PROXY, TCP_OVER_IPV6, &[ipv6, aws].concat()),
        ),
        ("v2-local-unspec", v2(V2_LOCAL, AF_UNSPEC, &[])),
        (
            "v2-local-ipv4-noop",
            v2(
                V2_LOCAL,
                TCP_OVER_IPV4,
                &[ipv4, tlv(PP2_TYPE_NOOP, &[0; 4])].concat(),
            ),
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, bytes)| (name.to_string(), bytes))
        .collect()
}

fn admission_seeds() -> Vec<(String, HeaderCase)> {
    let mut source = [0; 16];
    source[..4].copy_from_slice(&[10, 0, 5, 6]);
    let mut destination = [0; 16];
    destination[..4].copy_from_slice(&[10, 0, 0, 1]);
    let base = HeaderCase {
        proxy: true,
        family: Family::Ipv4,
        protocol: Protocol::Stream,
        source,
        destination,
        source_port: 51_000,
        destination_port: 443,
        length_override: None,
        items: Vec::new(),
    };
    let with = |change: &dyn Fn(&mut HeaderCase)| {
        let mut case = base.clone();
        change(&mut case);
        case
    };

    // One PrivateLink seed per fixture endpoint, so that every admission
    // outcome is in the corpus from the start.
    let mut seeds: Vec<(String, HeaderCase)> = ENDPOINTS
        .iter()
        .enumerate()
        .map(|(index, (id, _, _))| {
            let case = with(&|c| c.items = vec![Item::EndpointId(id.as_bytes().to_vec())]);
            (format!("endpoint-{index}"), case)
        })
        .collect();

    let listed_id = ENDPOINTS[0].0.as_bytes().to_vec();
    let others: Vec<(&str, HeaderCase)> = vec![
        ("proxied-vpc-ipv4", base.clone()),
        (
            "proxied-outside-vpc",
            with(&|c| c.source[..4].copy_from_slice(&[192, 0, 2, 1])),
        ),
        (
            "proxied-vpc-ipv6",
            with(&|c| {
                c.family = Family::Ipv6;
                c.source = 0xfd00_0000_0000_0000_0000_0000_0000_0005_u128.to_be_bytes();
            }),
        ),
        (
            "endpoint-among-tlvs",
            with(&|c| {
                c.items = vec![
                    Item::Tlv {
                        kind: PP2_TYPE_UNIQUE_ID,
                        value: b"unique".to_vec(),
                    },
                    Item::Tlv {
                        kind: PP2_TYPE_AWS,
                        value: vec![0x02, b'x'],
                    },
                    Item::EndpointId(listed_id.clone()),
                    Item::Tlv {
                        kind: 0xE0,
                        value: b"x".to_vec(),
                    },
                ]
            }),
        ),
        (
            "endpoint-uppercase",
            with(&|c| c.items = vec![Item::EndpointId(listed_id.to_ascii_uppercase())]),
        ),
        (
            "endpoint-twice",
            with(&|c| {
                c.items = vec![
                    Item::EndpointId(listed_id.clone()),
                    Item::EndpointId(listed_id.clone()),
                ]
            }),
        ),
        (
            "endpoint-unix-source",
            with(&|c| {
                c.family = Family::Unix;
                c.items = vec![Item::EndpointId(listed_id.clone())];
            }),
        ),
        (
            "endpoint-overrunning-tlv",
            with(&|c| {
                c.items = vec![
                    Item::EndpointId(listed_id.clone()),
                    Item::Raw(vec![0xE0, 0x00, 0x10, b'x']),
                ];
            }),
        ),
        (
            "endpoint-short-length",
            with(&|c| {
                c.length_override = Some(20);
                c.items = vec![Item::EndpointId(listed_id.clone())];
            }),
        ),
        (
            "local-unspec",
            with(&|c| {
                c.proxy = false;
                c.family = Family::Unspecified;
                c.protocol = Protocol::Unspecified;
            }),
        ),
        (
            "local-ipv4-with-endpoint",
            with(&|c| {
                c.proxy = false;
                c.items = vec![Item::EndpointId(listed_id.clone())];
            }),
        ),
    ];
    seeds.extend(
        others
            .into_iter()
            .map(|(name, case)| (name.to_string(), case)),
    );
    seeds
}

/// Assembles a v2 header: signature, command, family and protocol, length,
/// then the payload (addresses and TLVs).
fn v2(command: u8, family_protocol: u8, payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(payload.len()).expect("a seed payload under 64 KiB");
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[command, family_protocol]);
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let length = u16::try_from(value.len()).expect("a seed TLV under 64 KiB");
    [&[kind][..], &length.to_be_bytes(), value].concat()
}

fn ipv4_addresses(
    source: [u8; 4],
    destination: [u8; 4],
    source_port: u16,
    destination_port: u16,
) -> Vec<u8> {
    [
        &source[..],
        &destination,
        &source_port.to_be_bytes(),
        &destination_port.to_be_bytes(),
    ]
    .concat()
}

fn ipv6_addresses(
    source: u128,
    destination: u128,
    source_port: u16,
    destination_port: u16,
) -> Vec<u8> {
    [
        &source.to_be_bytes()[..],
        &destination.to_be_bytes(),
        &source_port.to_be_bytes(),
        &destination_port.to_be_bytes(),
    ]
    .concat()
}
