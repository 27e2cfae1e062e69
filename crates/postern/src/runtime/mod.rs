//! The running gateway: its live state, reloads and shutdown.

pub mod reload;
pub mod serve;
pub mod state;
pub mod workers;
