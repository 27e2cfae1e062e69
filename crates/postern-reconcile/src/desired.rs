//! The PrivateLink side that the vars file requests.

use std::collections::BTreeSet;
use std::path::PathBuf;

use postern::config::Config;

/// The desired state of one cluster's private gate in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `cluster.hostname`, which tags the balancer and the service.
    pub cluster: String,
    /// `cluster.region`, where the balancer and the service live.
    pub home_region: String,
    /// `None` when the private gate is disabled.
    pub gate: Option<DesiredGate>,
}

/// The endpoint service that an enabled private gate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGate {
    /// `*.internal.<cluster.hostname>`.
    pub private_dns_name: String,
    /// ARNs of `allowed_principals`.
    pub principals: BTreeSet<String>,
    /// The accounts of those principals: their endpoints are accepted.
    pub allowed_accounts: BTreeSet<String>,
    /// The home region and `supported_regions`.
    pub regions: BTreeSet<String>,
    /// `privatelink.endpoints_file`, if the vars file names one.
    pub endpoints_file: Option<PathBuf>,
}

// === impl Desired ===

impl Desired {
    pub fn from_config(config: &Config) -> Desired {
        let cluster = &config.cluster;
        let gate = config.private.as_ref().map(|private| {
            let mut regions: BTreeSet<String> = private.supported_regions.iter().cloned().collect();
            regions.insert(cluster.region.clone());
            DesiredGate {
                private_dns_name: format!("*.internal.{}", cluster.hostname),
                principals: private
                    .allowed_principals
                    .iter()
                    .map(|p| p.arn().to_owned())
                    .collect(),
                allowed_accounts: private
                    .allowed_principals
                    .iter()
                    .map(|p| p.account().to_owned())
                    .collect(),
                regions,
                endpoints_file: private.endpoints_file.as_ref().map(|f| f.path.clone()),
            }
        });
        Desired {
            cluster: cluster.hostname.clone(),
            home_region: cluster.region.clone(),
            gate,
        }
    }
}
