//! Shared code of the postern fuzz targets.
//!
//! `proxy_header_admission` does not feed its input to the parser as it is.
//! It decodes the input into a [`HeaderCase`], which describes a PROXY v2
//! header field by field, and builds the header from it with ppp's
//! `Builder`. The byte encoding is defined here, and [`HeaderCase::encode`]
//! is its inverse, so the `seeds` example can write seed inputs.
//!
//! Encoding, read front to back. Missing bytes at the end read as zero.
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | flags: bit 0 = PROXY (else LOCAL), bits 1-2 = family (IPv4, IPv6, Unix, unspecified), bits 3-4 = protocol (unspecified, stream, datagram; 3 reads as stream), bit 5 = length override follows |
//! | 16 | source address (IPv4 uses the first 4 bytes, Unix pads to 108 with zeros) |
//! | 16 | destination address, the same way |
//! | 2 + 2 | source and destination port, big-endian |
//! | 2 | declared length, big-endian, only when bit 5 is set |
//! | rest | items, each a tag byte (modulo 3), then for a TLV a type byte, then a length byte and that many value bytes |
//!
//! Items are [`Item::Tlv`] (tag 0), [`Item::EndpointId`] (tag 1) and
//! [`Item::Raw`] (tag 2). At most [`MAX_ITEMS`] items are read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use postern::config::{Endpoint, EndpointState, Endpoints};
use postern::net::proxy_header::{MAX_HEADER_BYTES, PP2_SUBTYPE_AWS_VPCE_ID, PP2_TYPE_AWS};
use postern::policy::admission::{Gate, ProxyHeader, Rules};
use ppp::v2::{Addresses, Builder, Command, IPv4, IPv6, Protocol, Unix, Version};

/// Maximum number of items decoded from one input.
pub const MAX_ITEMS: usize = 32;

/// Length of a Unix socket path in a v2 header.
const UNIX_PATH_BYTES: usize = 108;

/// The address family field of a v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
    Unix,
    Unspecified,
}

/// One piece of the payload after the addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A TLV of any type, written with its true length.
    Tlv { kind: u8, value: Vec<u8> },
    /// The AWS TLV (type 0xEA) with subtype 0x01 and these endpoint id bytes.
    EndpointId(Vec<u8>),
    /// Bytes written as they are, so that they can break the TLV framing.
    Raw(Vec<u8>),
}

/// A PROXY v2 header, described field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderCase {
    /// The PROXY command when true, LOCAL when false.
    pub proxy: bool,
    pub family: Family,
    pub protocol: Protocol,
    pub source: [u8; 16],
    pub destination: [u8; 16],
    pub source_port: u16,
    pub destination_port: u16,
    /// A declared payload length that replaces the true one.
    pub length_override: Option<u16>,
    pub items: Vec<Item>,
}

/// Reads bytes front to back and returns zeros once the input runs out.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        for slot in out.iter_mut() {
            *slot = self.byte();
        }
        out
    }

    /// Takes up to `len` bytes: fewer when the input ends first.
    fn take(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.bytes.split_at(len.min(self.bytes.len()));
        self.bytes = rest;
        taken.to_vec()
    }
}

// === impl HeaderCase ===

impl HeaderCase {
    /// Decodes a case from fuzzer input. Every byte string decodes.
    pub fn decode(input: &[u8]) -> HeaderCase {
        let mut reader = Reader { bytes: input };
        let flags = reader.byte();
        let family = match (flags >> 1) & 0b11 {
            0 => Family::Ipv4,
            1 => Family::Ipv6,
            2 => Family::Unix,
            _ => Family::Unspecified,
        };
        let protocol = match (flags >> 3) & 0b11 {
            0 => Protocol::Unspecified,
            2 => Protocol::Datagram,
            _ => Protocol::Stream,
        };
        let source = reader.array();
        let destination = reader.array();
        let source_port = reader.u16();
        let destination_port = reader.u16();
        let length_override = (flags & 0b10_0000 != 0).then(|| reader.u16());

        let mut items = Vec::new();
        while !reader.is_empty() && items.len() < MAX_ITEMS {
            let item = match reader.byte() % 3 {
                0 => {
                    let kind = reader.byte();
                    let len = usize::from(reader.byte());
                    Item::Tlv {
                        kind,
                        value: reader.take(len),
                    }
                }
                1 => {
                    let len = usize::from(reader.byte());
                    Item::EndpointId(reader.take(len))
                }
                _ => {
                    let len = usize::from(reader.byte());
                    Item::Raw(reader.take(len))
                }
            };
            items.push(item);
        }

        HeaderCase {
            proxy: flags & 1 != 0,
            family,
            protocol,
            source,
            destination,
            source_port,
            destination_port,
            length_override,
            items,
        }
    }

    /// Encodes the case so that [`HeaderCase::decode`] returns it again.
    ///
    /// # Panics
    ///
    /// Panics when an item is longer than 255 bytes, which the one-byte
    /// length of the encoding cannot express.
    pub fn encode(&self) -> Vec<u8> {
        let family_bits = match self.family {
            Family::Ipv4 => 0,
            Family::Ipv6 => 1,
            Family::Unix => 2,
            Family::Unspecified => 3,
        };
        let protocol_bits = match self.protocol {
            Protocol::Unspecified => 0,
            Protocol::Stream => 1,
            Protocol::Datagram => 2,
        };
        let override_bit = u8::from(self.length_override.is_some());
        let flags =
            u8::from(self.proxy) | family_bits << 1 | protocol_bits << 3 | override_bit << 5;

        let mut out = vec![flags];
        out.extend_from_slice(&self.source);
        out.extend_from_slice(&self.destination);
        out.extend_from_slice(&self.source_port.to_be_bytes());
        out.extend_from_slice(&self.destination_port.to_be_bytes());
        if let Some(length) = self.length_override {
            out.extend_from_slice(&length.to_be_bytes());
        }

        let item_len =
            |bytes: &[u8]| u8::try_from(bytes.len()).expect("item longer than 255 bytes");
        for item in &self.items {
            match item {
                Item::Tlv { kind, value } => {
                    out.extend_from_slice(&[0, *kind, item_len(value)]);
                    out.extend_from_slice(value);
                }
                Item::EndpointId(id) => {
                    out.extend_from_slice(&[1, item_len(id)]);
                    out.extend_from_slice(id);
                }
                Item::Raw(bytes) => {
                    out.extend_from_slice(&[2, item_len(bytes)]);
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    /// Builds the header bytes with ppp's `Builder`.
    pub fn build(&self) -> Vec<u8> {
        let command = if self.proxy {
            Command::Proxy
        } else {
            Command::Local
        };
        let mut builder =
            Builder::with_addresses(Version::Two | command, self.protocol, self.addresses());
        if let Some(length) = self.length_override {
            builder = builder.set_length(length);
        }
        // Item lengths fit in one byte and there are at most MAX_ITEMS of
        // them, so the payload stays far below the u16 length that would
        // make the builder fail.
        for item in &self.items {
            builder = match item {
                Item::Tlv { kind, value } => builder.write_tlv(*kind, value),
                Item::EndpointId(id) => builder.write_tlv(PP2_TYPE_AWS, &aws_endpoint_value(id)),
                Item::Raw(bytes) => builder.write_payload(bytes.as_slice()),
            }
            .expect("an item fits in a v2 header");
        }
        builder.build().expect("the payload fits in a v2 header")
    }

    fn addresses(&self) -> Addresses {
        let ipv4 = |bytes: &[u8; 16]| [bytes[0], bytes[1], bytes[2], bytes[3]];
        match self.family {
            Family::Ipv4 => IPv4::new(
                ipv4(&self.source),
                ipv4(&self.destination),
                self.source_port,
                self.destination_port,
            )
            .into(),
            Family::Ipv6 => IPv6::new(
                self.source,
                self.destination,
                self.source_port,
                self.destination_port,
            )
            .into(),
            Family::Unix => Unix::new(unix_path(&self.source), unix_path(&self.destination)).into(),
            Family::Unspecified => Addresses::Unspecified,
        }
    }

    /// Computes the client address that the header declares, as `parse`
    /// reports it.
    pub fn source_address(&self) -> Option<SocketAddr> {
        let ip = match self.family {
            Family::Ipv4 => {
                let [a, b, c, d, ..] = self.source;
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(self.source)),
            Family::Unix | Family::Unspecified => return None,
        };
        Some(SocketAddr::new(ip, self.source_port))
    }

    /// Predicts what `parse` returns for the built header: the header, or
    /// `Err(())` for a malformed one.
    ///
    /// Returns `None` when the case is outside the model, because raw items
    /// or a length override can produce any framing.
    pub fn expected_parse(&self) -> Option<Result<ProxyHeader, ()>> {
        let has_raw = self.items.iter().any(|i| matches!(i, Item::Raw(_)));
        if has_raw || self.length_override.is_some() {
            return None;
        }
        if self.build().len() > MAX_HEADER_BYTES {
            return Some(Err(()));
        }

        // The parser walks every TLV, skips types other than AWS, skips AWS
        // subtypes other than the endpoint id, rejects an empty AWS value and
        // rejects a second endpoint id.
        let mut endpoint_id = None;
        for item in &self.items {
            let value = match item {
                Item::Tlv { kind, value } if *kind == PP2_TYPE_AWS => value.clone(),
                Item::EndpointId(id) => aws_endpoint_value(id),
                Item::Tlv { .. } | Item::Raw(_) => continue,
            };
            let Some((&subtype, id)) = value.split_first() else {
                return Some(Err(()));
            };
            if subtype != PP2_SUBTYPE_AWS_VPCE_ID {
                continue;
            }
            if endpoint_id.is_some() {
                return Some(Err(()));
            }
            endpoint_id = Some(String::from_utf8_lossy(id).into_owned());
        }

        if !self.proxy {
            return Some(Ok(ProxyHeader::Local));
        }
        Some(Ok(ProxyHeader::Proxy {
            source: self.source_address(),
            endpoint_id,
        }))
    }
}

/// Builds the AWS TLV value: the endpoint id subtype, then the id.
pub fn aws_endpoint_value(id: &[u8]) -> Vec<u8> {
    let mut value = vec![PP2_SUBTYPE_AWS_VPCE_ID];
    value.extend_from_slice(id);
    value
}

fn unix_path(prefix: &[u8; 16]) -> [u8; UNIX_PATH_BYTES] {
    let mut path = [0; UNIX_PATH_BYTES];
    path[..prefix.len()].copy_from_slice(prefix);
    path
}

// === admission fixture ===

/// Accounts of the allowed principals in [`private_rules`].
pub const ALLOWED_ACCOUNTS: [&str; 2] = ["012345678910", "109876543210"];

/// Returns the address of the balancer that sends the PROXY headers, which
/// both gates trust.
pub fn trusted_peer() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 40_000)
}

/// Private-gate rules that trust [`trusted_peer`].
pub fn private_rules() -> Rules {
    Rules {
        gate: Gate::Private,
        proxy_sources: vec![net("127.0.0.2/32")],
        vpc_cidrs: vec![net("10.0.0.0/16"), net("fd00::/8")],
        allowed_accounts: ALLOWED_ACCOUNTS.iter().map(|a| a.to_string()).collect(),
    }
}

/// Public-gate rules that trust [`trusted_peer`].
pub fn public_rules() -> Rules {
    Rules {
        gate: Gate::Public,
        proxy_sources: vec![net("127.0.0.2/32")],
        vpc_cidrs: Vec::new(),
        allowed_accounts: Vec::new(),
    }
}

/// The endpoints in [`endpoints`]: one for each way an endpoint can be
/// admitted or refused.
pub const ENDPOINTS: [(&str, &str, EndpointState); 5] = [
    // Admitted: available, owner allowed (17 hex digits).
    (
        "vpce-0a1b2c3d4e5f60001",
        "012345678910",
        EndpointState::Available,
    ),
    // Admitted: available, the other allowed owner (8 hex digits).
    ("vpce-11aa22bb", "109876543210", EndpointState::Available),
    // Refused: owner not allowed.
    (
        "vpce-0a1b2c3d4e5f60002",
        "999988887777",
        EndpointState::Available,
    ),
    // Refused: not available.
    (
        "vpce-0a1b2c3d4e5f60003",
        "012345678910",
        EndpointState::PendingAcceptance,
    ),
    // Refused: rejected.
    (
        "vpce-0a1b2c3d4e5f60004",
        "109876543210",
        EndpointState::Rejected,
    ),
];

/// The endpoints file of the fixture, built from [`ENDPOINTS`].
pub fn endpoints() -> Endpoints {
    Endpoints::from_list(ENDPOINTS.iter().map(|(id, owner, state)| Endpoint {
        id: id.to_string(),
        owner: owner.to_string(),
        state: *state,
        region: None,
    }))
}

fn net(cidr: &str) -> IpNet {
    cidr.parse().expect("a valid CIDR in the fixture")
}
