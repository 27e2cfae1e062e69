//! Listeners: the two gates and the admin endpoints.

mod activity;
pub mod admin;
mod balance;
mod connection;
mod flushed;
pub mod listener;
mod protocol;
mod stream_watch;
pub mod tls;
