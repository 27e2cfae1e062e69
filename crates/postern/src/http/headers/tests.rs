use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    headers
}

#[test]
fn framing_rules() {
    assert_eq!(check_framing(&map(&[("content-length", "5")])), Ok(()));
    assert_eq!(
        check_framing(&map(&[("transfer-encoding", "chunked")])),
        Ok(())
    );
    assert_eq!(
        check_framing(&map(&[
            ("content-length", "5"),
            ("transfer-encoding", "chunked")
        ])),
        Err(FramingError::LengthAndChunked)
    );
    assert_eq!(
        check_framing(&map(&[("content-length", "5"), ("content-length", "6")])),
        Err(FramingError::ConflictingLengths)
    );
    assert_eq!(
        check_framing(&map(&[("content-length", "5, 6")])),
        Err(FramingError::ConflictingLengths)
    );
    assert_eq!(check_framing(&map(&[("content-length", "5, 5")])), Ok(()));
    assert_eq!(
        check_framing(&map(&[("content-length", "-1")])),
        Err(FramingError::InvalidLength)
    );
}

#[test]
fn hop_by_hop_removed() {
    let mut headers = map(&[
        ("connection", "keep-alive, x-secret-hop"),
        ("keep-alive", "timeout=5"),
        ("x-secret-hop", "1"),
        ("proxy-connection", "keep-alive"),
        ("proxy-authorization", "Bearer x"),
        ("te", "gzip"),
        ("trailer", "x-checksum"),
        ("upgrade", "h2c"),
        ("accept", "*/*"),
    ]);
    strip_hop_by_hop(&mut headers);
    let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["accept"]);

    let mut grpc = map(&[("te", "trailers")]);
    strip_hop_by_hop(&mut grpc);
    assert_eq!(grpc["te"], "trailers");
}

#[test]
fn identity_headers_removed_in_any_case() {
    let mut headers = map(&[
        ("X-Auth-Request-User", "admin"),
        ("x-auth-request-email", "a@b"),
        ("X-AUTH-REQUEST-GROUPS", "root"),
        ("X-Postern-Assertion", "forged"),
        ("x_auth_request_user", "admin"),
        ("X-Auth-Request_Email", "a@b"),
        ("x-auth-requested", "kept: not the prefix"),
    ]);
    strip_identity_headers(&mut headers);
    let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["x-auth-requested"]);
}

#[test]
fn forwarded_from_untrusted_client_replaced() {
    let mut headers = map(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.test"),
        ("x-real-ip", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/admin"),
        ("x_forwarded_for", "1.2.3.4"),
    ]);
    let origin = Origin {
        client: &forwarded_for("127.0.0.9:5555".parse().unwrap()),
        trusted: false,
        tls: false,
        host: "app.example.test",
    };
    set_forwarded(&mut headers, &origin);
    assert_eq!(headers["x-forwarded-for"], "127.0.0.9");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "app.example.test");
    assert!(!headers.contains_key("x-real-ip"));
    assert!(!headers.contains_key("forwarded"));
    assert!(!headers.contains_key("x-forwarded-port"));
    assert!(!headers.contains_key("x-forwarded-prefix"));
    assert!(!headers.contains_key("x_forwarded_for"));
}

#[test]
fn forwarded_from_trusted_client_appended() {
    let mut headers = map(&[
        ("x-forwarded-for", "203.0.113.5"),
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-proto", "https"),
    ]);
    let origin = Origin {
        client: &forwarded_for("[::ffff:10.0.0.7]:1".parse().unwrap()),
        trusted: true,
        tls: false,
        host: "app.example.test",
    };
    set_forwarded(&mut headers, &origin);
    assert_eq!(
        headers["x-forwarded-for"],
        "203.0.113.5, 198.51.100.1, 10.0.0.7"
    );
    assert_eq!(headers["x-forwarded-proto"], "https");
}

#[test]
fn websocket_upgrade_detection() {
    assert!(is_websocket_upgrade(&map(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
    ])));
    assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
    assert!(!is_websocket_upgrade(&map(&[
        ("connection", "upgrade"),
        ("upgrade", "h2c"),
    ])));
}

#[test]
fn request_id_validation() {
    assert_eq!(
        trusted_request_id(&map(&[("x-request-id", "abc-123")])),
        Some("abc-123")
    );
    assert_eq!(trusted_request_id(&map(&[("x-request-id", "a b")])), None);
    assert_eq!(trusted_request_id(&map(&[])), None);
}

#[test]
fn groups_header_encoding() {
    let groups: Vec<std::sync::Arc<str>> = ["admins", "Platform Team, EU", "100%", "Équipe"]
        .into_iter()
        .map(std::sync::Arc::from)
        .collect();
    let value = groups_value(&groups).expect("a valid header value");
    assert_eq!(value, "admins,Platform%20Team%2C%20EU,100%25,%C3%89quipe");
    assert_eq!(groups_value(&[]), None);
    assert_eq!(identity_value("alice@example.com"), "alice@example.com");
}
