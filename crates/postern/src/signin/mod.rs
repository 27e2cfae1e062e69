//! Sign-in for people on `auth.<cluster hostname>`.

pub mod csrf;
pub mod login;
pub mod login_page;
pub mod redirect;
