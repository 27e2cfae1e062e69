//! postern: an ingress gateway with two gates.
//!
//! The public gate authenticates every request before it reaches an app. The
//! private gate requires no credential and instead admits connections by
//! network identity: same-VPC workloads, and AWS PrivateLink endpoints named in
//! a PROXY protocol v2 header.
//!
//! Layout:
//! - [`config`]: the vars file and the endpoints file, parsed and validated
//!   into plain data, with every problem reported at its file, line and key.
//! - [`policy`]: pure decisions (connection admission, IAM principals).
//! - [`routing`]: host normalization and the host-to-app table.
//! - [`auth`]: public-gate credentials.
//! - [`identity`]: bearer JWTs from trusted issuers and postern's own issuer.
//! - [`net`]: the PROXY protocol reader and byte-level stream helpers.
//! - [`http`]: header hygiene, framing checks and synthetic responses.
//! - [`proxy`]: the per-request pipeline and the upstream client.
//! - [`server`]: listeners, TLS, connection limits and the admin endpoints.
//! - [`telemetry`]: logging, the access log and metrics.
//! - [`runtime`]: the live state, reloads and shutdown.
//! - [`signin`]: sign-in for people on the auth host: the login page.
//! - [`quickstart`]: the embedded demo.
//! - [`render`]: Kubernetes manifests for a vars file.
//! - [`explain`]: the decision for a described request, without a server.
//! - [`redact`]: masking of secrets in printed and logged text.

#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod explain;
pub mod http;
pub mod identity;
pub mod net;
pub mod passwd;
pub mod policy;
pub mod proxy;
pub mod quickstart;
pub mod redact;
pub mod render;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod session;
pub mod signin;
pub mod telemetry;
pub mod token;
