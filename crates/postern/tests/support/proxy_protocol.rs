//! PROXY protocol headers as a load balancer sends them, built with ppp, plus
//! the broken forms that the gateway must refuse.

use std::net::SocketAddr;

use ppp::v2::{AddressFamily, Builder, Command, Protocol, Version};

/// The AWS TLV type (PP2_TYPE_AWS).
pub const PP2_TYPE_AWS: u8 = 0xEA;
/// The AWS subtype for the VPC endpoint id (PP2_SUBTYPE_AWS_VPCE_ID).
pub const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

/// Builds the value of an AWS VPC endpoint TLV: the subtype byte, then the id.
pub fn endpoint_tlv_value(endpoint_id: &[u8]) -> Vec<u8> {
    let mut value = vec![PP2_SUBTYPE_AWS_VPCE_ID];
    value.extend_from_slice(endpoint_id);
    value
}

/// Builds a v2 PROXY header for TCP from `source` to `destination` with `tlvs`.
pub fn proxy_v2(source: SocketAddr, destination: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut builder = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    );
    for (kind, value) in tlvs {
        builder = builder.write_tlv(*kind, value).expect("writing a TLV");
    }
    builder.build().expect("building a PROXY v2 header")
}

/// Builds a v2 PROXY header with the AWS VPC endpoint TLV, as an AWS network load
/// balancer sends it for a PrivateLink connection.
pub fn proxy_v2_endpoint(
    source: SocketAddr,
    destination: SocketAddr,
    endpoint_id: &str,
) -> Vec<u8> {
    let value = endpoint_tlv_value(endpoint_id.as_bytes());
    proxy_v2(source, destination, &[(PP2_TYPE_AWS, &value)])
}

/// Builds a v2 LOCAL header, as a balancer's health check sends it.
pub fn proxy_v2_local() -> Vec<u8> {
    Builder::new(
        Version::Two | Command::Local,
        AddressFamily::Unspecified | Protocol::Unspecified,
    )
    .build()
    .expect("building a PROXY v2 LOCAL header")
}

/// Builds a v1 PROXY line for TCP over IPv4.
pub fn proxy_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// Appends `payload` to a v2 header's TLV section and fixes the header's
/// length field to cover it, so `payload` can be any malformed TLV.
pub fn with_raw_payload(mut header: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    header.extend_from_slice(payload);
    let length = u16::try_from(header.len() - 16).expect("a short header");
    header[14..16].copy_from_slice(&length.to_be_bytes());
    header
}
