//! Signing in on postern's login page, `auth.<cluster hostname>/login`, as
//! the page's own form does.

use std::net::{IpAddr, SocketAddr};

use super::LOCALHOST;
use super::client::{HttpResponse, connect_from, full_body, request, send_http1};
use super::gateway::{Gateway, public_host};

pub fn auth_host() -> String {
    public_host("auth")
}

/// POSTs the login form from `source`, as the login page itself sends it.
pub async fn post_login(
    source: IpAddr,
    gate: SocketAddr,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> HttpResponse {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut builder = request("POST", &auth_host(), "/login")
        .header("content-type", "application/x-www-form-urlencoded");
    let same_origin = extra.iter().all(|(name, _)| *name != "sec-fetch-site");
    if same_origin {
        builder = builder.header("sec-fetch-site", "same-origin");
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let stream = connect_from(source, gate).await;
    send_http1(stream, builder.body(full_body(body)).unwrap())
        .await
        .unwrap_or_else(|e| panic!("POST /login: {e}"))
}

/// Signs `user` in on the login page of `gateway` and returns the
/// session's Cookie header.
pub async fn sign_in_with_password(gateway: &Gateway, user: &str, password: &str) -> String {
    let signed_in = post_login(
        LOCALHOST,
        gateway.public,
        &[("username", user), ("password", password), ("rd", "/")],
        &[],
    )
    .await;
    assert_eq!(
        signed_in.status,
        http::StatusCode::SEE_OTHER,
        "{}",
        signed_in.text()
    );
    cookie_header(&signed_in)
}

/// Joins the Set-Cookie values of a response into one Cookie header.
pub fn cookie_header(response: &HttpResponse) -> String {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}
