//! postern-reconcile: the control plane of postern's private gate.
//!
//! One run reads the vars file, reads the PrivateLink side of the cluster
//! from AWS, plans the changes that bring AWS in line with the vars file,
//! applies them, and writes the endpoints file that the private gate
//! admits endpoints from. Planning is pure, so every decision is tested
//! without AWS; only [`aws`] and [`endpoints_file`] do I/O.
//!
//! Layout:
//! - [`desired`]: what the vars file asks for.
//! - [`observed`]: what AWS reports.
//! - [`plan`]: the changes from one to the other, and the endpoints file.
//! - [`aws`]: reading and changing AWS through the SDK.
//! - [`endpoints_file`]: the endpoints file's text and its atomic write.
//! - [`config_map`]: the endpoints file written into a Kubernetes
//!   ConfigMap instead.
//! - [`report`]: the plan and the service as printed for the operator.
//! - [`run`]: one run, and the `--watch` loop.
//! - [`args`]: the command line.

#![forbid(unsafe_code)]

pub mod args;
pub mod aws;
pub mod config_map;
pub mod desired;
pub mod endpoints_file;
pub mod observed;
pub mod plan;
pub mod report;
pub mod run;

/// The tag key that names the gate of a balancer or endpoint service. It is
/// the same key that `postern render` puts on the private balancer.
pub const GATEWAY_TAG: &str = "postern.io/gateway";
/// The value of [`GATEWAY_TAG`] on the private gate's resources.
pub const PRIVATE_GATEWAY: &str = "private";
/// The tag key whose value is `cluster.hostname`.
pub const CLUSTER_TAG: &str = "postern.io/cluster";
