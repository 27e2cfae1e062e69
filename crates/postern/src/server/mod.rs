//! Listeners: the two gates and the admin endpoints.

pub mod admin;
mod connection;
pub mod listener;
pub mod tls;
