//! Pure decisions: no I/O, no clocks, so every rule can be tested in a table.

pub mod access;
pub mod admission;
pub mod principal;
