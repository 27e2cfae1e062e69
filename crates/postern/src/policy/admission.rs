//! Connection admission: who may open a connection to each gate.
//!
//! Decided once per connection, before any HTTP is read, in two steps that
//! the listener calls around its I/O:
//!
//! 1. [`Rules::classify_peer`] looks only at the TCP peer address and decides
//!    whether a PROXY header must come first, must not come at all, or
//!    whether the connection is refused outright.
//! 2. [`Rules::admit_header`] decides on the PROXY header a trusted source
//!    sent.
//!
//! Private-gate rules:
//!
//! | peer | PROXY header | outcome |
//! |---|---|---|
//! | in `vpc_cidrs`, not a trusted source | none | same-VPC workload |
//! | trusted source | PROXY with the AWS endpoint TLV | the endpoint must be listed, `available`, and owned by an allowed account; the CIDR rule does not apply |
//! | trusted source | PROXY without that TLV | the header's source must be in `vpc_cidrs` |
//! | trusted source | LOCAL | health checks only |
//! | trusted source | missing or invalid | refused |
//! | anyone else, or any header from an untrusted peer | | refused |
//!
//! The public gate admits every peer; its trusted sources must still send a
//! PROXY header, and only theirs is believed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::config::endpoints::validate_endpoint_id;
use crate::config::{EndpointState, Endpoints};

/// The gate a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    Public,
    Private,
}

/// The admission rules of one gate.
#[derive(Debug, Clone)]
pub struct Rules {
    pub gate: Gate,
    /// Peers that must send a PROXY header, and whose header is believed.
    pub proxy_sources: Vec<IpNet>,
    /// The cluster's own networks (private gate only).
    pub vpc_cidrs: Vec<IpNet>,
    /// Accounts of the allowed principals (private gate only).
    pub allowed_accounts: Vec<String>,
}

/// A parsed PROXY header's declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The LOCAL command: the balancer's own connection, such as a health
    /// check.
    Local,
    /// The PROXY command, relaying a client.
    Proxy {
        /// The client, or `None` for `UNKNOWN` and unspecified families.
        source: Option<SocketAddr>,
        /// The AWS VPC endpoint id TLV, as sent (not yet validated).
        endpoint_id: Option<String>,
    },
}

/// What the peer address alone decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVerdict {
    /// A trusted source: a PROXY header must come first.
    ExpectProxyHeader,
    /// Admitted by address; a PROXY header would be a refusal.
    Admit(Admission),
    Refuse(Refusal),
}

/// The class of an admitted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionKind {
    /// Public gate: anyone may connect; requests still need credentials.
    Public,
    /// A workload in the cluster's VPC, connecting directly.
    VpcWorkload,
    /// A workload in the cluster's VPC behind the internal balancer.
    ProxiedVpc,
    /// A client VPC through an AWS PrivateLink interface endpoint.
    PrivateLink,
    /// The balancer's own health check: the gateway's health endpoint only.
    HealthCheck,
}

/// An admitted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub kind: AdmissionKind,
    /// The client: the PROXY header's source when one was believed,
    /// otherwise the TCP peer.
    pub client: SocketAddr,
}

/// An admitted PrivateLink connection's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointIdentity {
    pub id: String,
    pub owner: String,
}

/// Reason for refusing a connection. Each reason is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    NotInVpc,
    SourceNotInVpc,
    ProxyHeaderMissing,
    ProxyHeaderMalformed,
    ProxyHeaderTruncated,
    ProxyHeaderTimeout,
    ProxyHeaderRepeated,
    ProxyHeaderUntrusted,
    EndpointIdInvalid,
    EndpointUnknown,
    EndpointNotAvailable,
    EndpointOwnerNotAllowed,
    ConnectionLimit,
    /// The gate was disabled by a reload after its listener opened.
    GateDisabled,
}

// === impl Rules ===

impl Rules {
    pub fn classify_peer(&self, peer: SocketAddr) -> PeerVerdict {
        if contains(&self.proxy_sources, peer.ip()) {
            return PeerVerdict::ExpectProxyHeader;
        }
        match self.gate {
            Gate::Public => PeerVerdict::Admit(Admission {
                kind: AdmissionKind::Public,
                client: peer,
            }),
            Gate::Private if contains(&self.vpc_cidrs, peer.ip()) => {
                PeerVerdict::Admit(Admission {
                    kind: AdmissionKind::VpcWorkload,
                    client: peer,
                })
            }
            Gate::Private => PeerVerdict::Refuse(Refusal::NotInVpc),
        }
    }

    /// Decides on the PROXY header that the trusted source `peer` sent.
    /// `endpoints` is consulted only on the private gate.
    pub fn admit_header(
        &self,
        peer: SocketAddr,
        header: &ProxyHeader,
        endpoints: &Endpoints,
    ) -> Result<(Admission, Option<EndpointIdentity>), Refusal> {
        let admission = |kind, client| Admission { kind, client };
        let (source, endpoint_id) = match header {
            ProxyHeader::Local => {
                return Ok((admission(AdmissionKind::HealthCheck, peer), None));
            }
            ProxyHeader::Proxy {
                source,
                endpoint_id,
            } => (*source, endpoint_id.as_deref()),
        };

        if self.gate == Gate::Public {
            let client = source.unwrap_or(peer);
            return Ok((admission(AdmissionKind::Public, client), None));
        }

        let Some(endpoint_id) = endpoint_id else {
            return match source {
                Some(client) if contains(&self.vpc_cidrs, client.ip()) => {
                    Ok((admission(AdmissionKind::ProxiedVpc, client), None))
                }
                _ => Err(Refusal::SourceNotInVpc),
            };
        };

        // A PrivateLink connection: the endpoint decides, never the address.
        validate_endpoint_id(endpoint_id).map_err(|_| Refusal::EndpointIdInvalid)?;
        let endpoint = endpoints.get(endpoint_id).ok_or(Refusal::EndpointUnknown)?;
        if endpoint.state != EndpointState::Available {
            return Err(Refusal::EndpointNotAvailable);
        }
        if !self.allowed_accounts.contains(&endpoint.owner) {
            return Err(Refusal::EndpointOwnerNotAllowed);
        }
        let client = source.ok_or(Refusal::ProxyHeaderMalformed)?;
        let identity = EndpointIdentity {
            id: endpoint.id.clone(),
            owner: endpoint.owner.clone(),
        };
        Ok((
            admission(AdmissionKind::PrivateLink, client),
            Some(identity),
        ))
    }
}

impl Rules {
    /// Checks that a connection admitted earlier would still be admitted
    /// under these rules and endpoints, so that a reload which revokes an
    /// endpoint or narrows `vpc_cidrs` also ends access over connections
    /// that are already open. Only the private gate admits by network
    /// identity, so the public gate always passes.
    pub fn still_admits(
        &self,
        admission: &Admission,
        endpoint: Option<&EndpointIdentity>,
        endpoints: &Endpoints,
    ) -> Result<(), Refusal> {
        if self.gate == Gate::Public {
            return Ok(());
        }
        match admission.kind {
            AdmissionKind::Public | AdmissionKind::HealthCheck => Ok(()),
            AdmissionKind::VpcWorkload | AdmissionKind::ProxiedVpc => {
                if contains(&self.vpc_cidrs, admission.client.ip()) {
                    Ok(())
                } else {
                    Err(Refusal::NotInVpc)
                }
            }
            AdmissionKind::PrivateLink => {
                let id = endpoint.map(|e| e.id.as_str()).unwrap_or_default();
                let current = endpoints.get(id).ok_or(Refusal::EndpointUnknown)?;
                if current.state != EndpointState::Available {
                    return Err(Refusal::EndpointNotAvailable);
                }
                if !self.allowed_accounts.contains(&current.owner) {
                    return Err(Refusal::EndpointOwnerNotAllowed);
                }
                Ok(())
            }
        }
    }
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack
/// listener reports IPv4 peers) to plain IPv4, so IPv4 CIDRs match it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

// === impl Gate ===

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Public => "public",
            Gate::Private => "private",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl AdmissionKind ===

impl AdmissionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdmissionKind::Public => "public",
            AdmissionKind::VpcWorkload => "vpc_workload",
            AdmissionKind::ProxiedVpc => "proxied_vpc",
            AdmissionKind::PrivateLink => "privatelink",
            AdmissionKind::HealthCheck => "health_check",
        }
    }
}

// === impl Refusal ===

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotInVpc => "peer_not_in_vpc",
            Refusal::SourceNotInVpc => "proxy_source_not_in_vpc",
            Refusal::ProxyHeaderMissing => "proxy_header_missing",
            Refusal::ProxyHeaderMalformed => "proxy_header_malformed",
            Refusal::ProxyHeaderTruncated => "proxy_header_truncated",
            Refusal::ProxyHeaderTimeout => "proxy_header_timeout",
            Refusal::ProxyHeaderRepeated => "proxy_header_repeated",
            Refusal::ProxyHeaderUntrusted => "proxy_header_from_untrusted_peer",
            Refusal::EndpointIdInvalid => "endpoint_id_invalid",
            Refusal::EndpointUnknown => "endpoint_unknown",
            Refusal::EndpointNotAvailable => "endpoint_not_available",
            Refusal::EndpointOwnerNotAllowed => "endpoint_owner_not_allowed",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::GateDisabled => "gate_disabled",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
