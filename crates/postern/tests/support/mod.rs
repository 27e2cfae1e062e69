//! Shared helpers for the integration tests: a real `postern serve` process,
//! small real upstream servers, and clients that connect from chosen
//! loopback addresses and speak raw HTTP, hyper HTTP/1.1 and HTTP/2, and the
//! PROXY protocol.
//!
//! Every test runs its own gateway on ports the kernel picks (listen port 0),
//! so tests can run in parallel. Loopback addresses stand in for networks:
//! 127.0.1.0/24 is the cluster's VPC, 127.0.0.2 is the internal load
//! balancer (the private gate's trusted PROXY source), and 127.0.0.1 and
//! 127.0.0.9 are hosts outside the VPC. The gateway listens on 127.0.0.1
//! (public gate), 127.0.0.3 (private gate) and 127.0.0.4 (admin).

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod client;
pub mod command;
pub mod gateway;
pub mod idp;
pub mod login;
pub mod proxy_protocol;
pub mod redis;
pub mod upstream;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub use browser::*;
pub use client::*;
pub use command::*;
pub use gateway::*;
pub use idp::*;
pub use login::*;
pub use proxy_protocol::*;
pub use redis::*;
pub use upstream::*;

/// A peer in the cluster's VPC (127.0.1.0/24).
pub const VPC_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 5));
/// The private gate's trusted PROXY source, playing the internal balancer.
pub const BALANCER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Hosts outside the VPC.
pub const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

/// Awaits `future`, or panics naming `what` once `limit` has passed.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}
