//! The PrivateLink side as AWS reports it, as plain data.

use std::collections::BTreeSet;

/// Everything one run reads from AWS before it plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The private gate's network load balancer, found by its tags.
    pub balancer: Option<Balancer>,
    /// The cluster's endpoint service, found by its tags or its balancer.
    pub service: Option<Service>,
    /// The service's allowed principals (empty without a service).
    pub principals: BTreeSet<String>,
    /// The service's endpoint connections (empty without a service).
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancer {
    pub arn: String,
    pub name: String,
}

/// A VPC endpoint service configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `vpce-svc-...`.
    pub id: String,
    /// `com.amazonaws.vpce.<region>.vpce-svc-...`, which client VPCs name.
    pub name: String,
    /// `Available`, `Pending`, `Deleting`, ... as EC2 reports it.
    pub state: String,
    pub acceptance_required: bool,
    pub balancer_arns: BTreeSet<String>,
    pub private_dns_name: Option<String>,
    pub dns_verification: Option<DnsVerification>,
    /// Regions whose endpoints may connect, as EC2 lists them. The home
    /// region may be missing from the list and is supported all the same.
    pub supported_regions: BTreeSet<String>,
}

/// The record that proves ownership of the private DNS name's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsVerification {
    /// `pendingVerification`, `verified` or `failed`.
    pub state: String,
    /// The record type, `TXT`.
    pub record_type: String,
    pub name: String,
    pub value: String,
}

/// An interface endpoint's connection to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub endpoint_id: String,
    /// The 12-digit account that owns the endpoint.
    pub owner: String,
    /// `pendingAcceptance`, `available`, `rejected`, ... as EC2 reports it.
    pub state: String,
    /// The endpoint's region, when EC2 reports one; otherwise the home
    /// region.
    pub region: Option<String>,
}

/// The states in which a connection carries traffic or is about to.
pub const STATE_PENDING_ACCEPTANCE: &str = "pendingAcceptance";
pub const STATE_PENDING: &str = "pending";
pub const STATE_AVAILABLE: &str = "available";
pub const STATE_REJECTED: &str = "rejected";
/// The private DNS verification state that needs no more work.
pub const DNS_VERIFIED: &str = "verified";
