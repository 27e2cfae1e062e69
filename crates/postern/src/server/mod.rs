//! Listeners: the two gates and the admin endpoints.

mod activity;
pub mod admin;
mod balance;
mod connection;
mod flushed;
pub mod listener;
mod protocol;
pub mod tls;
