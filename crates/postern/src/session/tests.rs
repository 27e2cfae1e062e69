use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::config::identity::SecretSource;

const KEY_A: &str = "key-a-0123456789abcdef0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef0123456789abcdef";

fn config(keys: &[&str]) -> SessionsConfig {
    SessionsConfig {
        keys: keys
            .iter()
            .map(|k| SecretSource::InsecureInline((*k).to_owned()))
            .collect(),
        lifetime: Duration::from_secs(3600),
        cookie_name: "_postern".to_owned(),
        domain: "postern.test".to_owned(),
        secure: true,
        redis: None,
    }
}

/// Returns the same session at each call: the time is read once per test
/// process, so that a test that builds its expected session again after a
/// second boundary still compares equal.
fn session(groups: usize) -> Session {
    static NOW: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let now = *NOW.get_or_init(crate::identity::now);
    Session {
        user: "alice".to_owned(),
        email: Some("alice@example.com".to_owned()),
        groups: (0..groups).map(|i| format!("group-{i:04}")).collect(),
        method: "oidc:idp".to_owned(),
        issued_at: now,
        expires_at: now + 3600,
        provider: Some(ProviderGrant {
            provider: "idp".to_owned(),
            refresh_token: Some("refresh".to_owned()),
            access_expires_at: Some(now + 60),
            id_token: Some("id.token.here".to_owned()),
        }),
    }
}

/// The Cookie header a browser sends back for these Set-Cookie values.
fn cookie_header(set: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<String> = set
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|text| !text.contains("Max-Age=0"))
        .map(|text| text.split(';').next().unwrap().to_owned())
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
    headers
}

/// Returns the Cookie header text that a browser sends for `set`.
fn cookie_text(set: &[HeaderValue]) -> String {
    let headers = cookie_header(set);
    headers.get(COOKIE).unwrap().to_str().unwrap().to_owned()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio_test::block_on(f)
}

#[test]
fn round_trip_with_attributes() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let set = block(sessions.save(&HeaderMap::new(), &session(2))).unwrap();
    assert_eq!(set.len(), 1);
    let text = set[0].to_str().unwrap();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Domain=postern.test",
        "Path=/",
    ] {
        assert!(text.contains(attribute), "{attribute} missing in {text}");
    }
    let loaded = block(sessions.load(&cookie_header(&set))).unwrap();
    assert_eq!(loaded, Some(session(2)));
    assert_eq!(&*loaded.unwrap().identity().name, "alice");
}

#[test]
fn large_sessions_are_chunked_and_rejoined() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let big = session(400);
    let set = block(sessions.save(&HeaderMap::new(), &big)).unwrap();
    assert!(set.len() > 1, "expected chunks");
    for value in &set {
        let pair = value.to_str().unwrap().split(';').next().unwrap();
        assert!(pair.len() <= 4000, "a chunk has {} bytes", pair.len());
        assert!(pair.starts_with("_postern_"), "{pair}");
    }
    let headers = cookie_header(&set);
    assert_eq!(block(sessions.load(&headers)).unwrap(), Some(big));

    // A smaller session replaces the chunks and removes the ones it leaves.
    let set = block(sessions.save(&headers, &session(1))).unwrap();
    assert!(set[0].to_str().unwrap().starts_with("_postern="));
    assert!(
        set[1..]
            .iter()
            .all(|v| v.to_str().unwrap().contains("Max-Age=0"))
    );
}

#[test]
fn tampered_truncated_and_mixed_cookies_are_no_session() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let one = cookie_header(&block(sessions.save(&HeaderMap::new(), &session(400))).unwrap());
    let two = cookie_header(&block(sessions.save(&HeaderMap::new(), &session(401))).unwrap());
    let text = |h: &HeaderMap| h[COOKIE].to_str().unwrap().to_owned();
    let pairs = |h: &HeaderMap| -> Vec<String> { text(h).split("; ").map(str::to_owned).collect() };

    let mut cases = Vec::new();
    // One byte of the first chunk changed.
    let mut flipped = text(&one).into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    cases.push(String::from_utf8(flipped).unwrap());
    // The last chunk missing, and the first chunk cut short.
    let p = pairs(&one);
    cases.push(p[..p.len() - 1].join("; "));
    let mut cut = p.clone();
    let keep = cut[0].len() - 10;
    cut[0].truncate(keep);
    cases.push(cut.join("; "));
    // The first chunk of one session with the rest of another.
    let mut mixed = pairs(&two);
    mixed[0] = p[0].clone();
    cases.push(mixed.join("; "));
    // Garbage.
    cases.push("_postern=not-sealed".to_owned());

    for case in cases {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&case).unwrap());
        assert_eq!(block(sessions.load(&headers)).unwrap(), None, "{case:.60}");
    }
}

#[test]
fn expired_sessions_are_no_session() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let mut old = session(1);
    old.expires_at = crate::identity::now() - 1;
    let set = block(sessions.save(&HeaderMap::new(), &old)).unwrap();
    assert_eq!(block(sessions.load(&cookie_header(&set))).unwrap(), None);
}

#[test]
fn old_keys_open_and_the_first_key_seals() {
    let before = Sessions::new(&config(&[KEY_A])).unwrap();
    let set = block(before.save(&HeaderMap::new(), &session(1))).unwrap();
    let rotated = Sessions::new(&config(&[KEY_B, KEY_A])).unwrap();
    assert_eq!(
        block(rotated.load(&cookie_header(&set))).unwrap(),
        Some(session(1))
    );
    let resealed = block(rotated.save(&HeaderMap::new(), &session(1))).unwrap();
    let only_b = Sessions::new(&config(&[KEY_B])).unwrap();
    assert!(
        block(only_b.load(&cookie_header(&resealed)))
            .unwrap()
            .is_some()
    );
    assert!(block(only_b.load(&cookie_header(&set))).unwrap().is_none());
}

#[test]
fn the_flow_cookie_is_not_a_session() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let flow = sessions.codec().seal_flow("{}", 600);
    let sealed = flow.to_str().unwrap().split(';').next().unwrap();
    let value = sealed.split_once('=').unwrap().1;
    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::from_str(&format!("_postern={value}")).unwrap(),
    );
    assert_eq!(block(sessions.load(&headers)).unwrap(), None);
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(sealed).unwrap());
    assert_eq!(sessions.codec().open_flow(&headers).as_deref(), Some("{}"));
}

#[test]
fn strip_keeps_the_app_cookies_byte_for_byte() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let mut headers = HeaderMap::new();
    headers.append(
        COOKIE,
        HeaderValue::from_static("a=1;_postern=x; _postern_0=y;b=\"q r\";_postern_flow=z"),
    );
    headers.append(COOKIE, HeaderValue::from_static("theme=dark;  lang=en"));
    headers.append(COOKIE, HeaderValue::from_static("_postern_1=w"));
    headers.append(
        COOKIE,
        HeaderValue::from_static("_postern_x=app; _posternal=app"),
    );
    sessions.strip_cookies(&mut headers);
    let left: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        left,
        [
            "a=1; b=\"q r\"",
            "theme=dark; lang=en",
            "_postern_x=app; _posternal=app"
        ]
    );

    // A header without postern's cookies is not touched at all.
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_static("theme=dark;  lang=en"));
    sessions.strip_cookies(&mut headers);
    assert_eq!(headers[COOKIE], "theme=dark;  lang=en");
}

/// Adds the app's raw bytes to the Cookie header a browser sends.
fn with_raw_cookies(mut headers: HeaderMap, before: &[u8], after: &[u8]) -> HeaderMap {
    let ours = headers.get(COOKIE).unwrap().as_bytes().to_vec();
    let mut value = before.to_vec();
    value.extend_from_slice(&ours);
    value.extend_from_slice(after);
    headers.insert(COOKIE, HeaderValue::from_bytes(&value).unwrap());
    headers
}

#[test]
fn non_ascii_cookies_neither_hide_nor_leak_the_session() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    for groups in [2, 400] {
        let set = block(sessions.save(&HeaderMap::new(), &session(groups))).unwrap();
        // UTF-8 sent raw, as browsers do, and a Latin-1 byte.
        let before = "name=Jos\u{e9}; ".as_bytes();
        let after = b"; legacy=caf\xe9;x=1";
        let mut headers = with_raw_cookies(cookie_header(&set), before, after);
        // HTTP/2 sends one Cookie header per cookie.
        headers.append(
            COOKIE,
            HeaderValue::from_bytes("emoji=\u{1f36a}".as_bytes()).unwrap(),
        );
        headers.append(COOKIE, HeaderValue::from_static("_postern_flow=abc"));

        let loaded = block(sessions.load(&headers)).unwrap();
        assert_eq!(loaded, Some(session(groups)), "{groups} groups");

        sessions.strip_cookies(&mut headers);
        let left: Vec<&[u8]> = headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(
            left,
            [
                &b"name=Jos\xc3\xa9; legacy=caf\xe9; x=1"[..],
                "emoji=\u{1f36a}".as_bytes()
            ]
        );
    }
}

#[test]
fn junk_session_cookies_ahead_of_the_real_one_do_not_hide_it() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let set = block(sessions.save(&HeaderMap::new(), &session(2))).unwrap();
    let headers = with_raw_cookies(
        cookie_header(&set),
        b"_postern=junk; _postern=bm90IGEgc2Vzc2lvbg==; ",
        b"",
    );
    assert_eq!(block(sessions.load(&headers)).unwrap(), Some(session(2)));

    // Past the bound, the request has no session: cookies planted first
    // must not push the real one out of those that are opened.
    let many = "_postern=junk; ".repeat(4);
    let headers = with_raw_cookies(cookie_header(&set), many.as_bytes(), b"");
    let loaded = block(sessions.load(&headers));
    assert!(matches!(loaded, Err(SessionError::Conflict)), "{loaded:?}");
}

#[test]
fn planted_sessions_past_bound_conflict() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let real = block(sessions.save(&HeaderMap::new(), &session(2))).unwrap();
    let mut other = session(2);
    other.user = "mallory".to_owned();
    let planted = block(sessions.save(&HeaderMap::new(), &other)).unwrap();
    let planted = cookie_text(&planted);
    let four = format!("{planted}; ").repeat(4);
    let headers = with_raw_cookies(cookie_header(&real), four.as_bytes(), b"");

    let loaded = block(sessions.load(&headers));
    assert!(matches!(loaded, Err(SessionError::Conflict)), "{loaded:?}");
}

#[test]
fn duplicate_chunk_names_conflict() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let real = block(sessions.save(&HeaderMap::new(), &session(400))).unwrap();
    assert!(cookie_text(&real).contains("_postern_1="));
    let mut other = session(2);
    other.user = "mallory".to_owned();
    let planted = block(sessions.save(&HeaderMap::new(), &other)).unwrap();
    // The planted whole value sent as the first chunk, before the real ones.
    let planted = cookie_text(&planted).replacen("_postern=", "_postern_0=", 1);
    let before = format!("{planted}; _postern_1=; ");
    let headers = with_raw_cookies(cookie_header(&real), before.as_bytes(), b"");

    let loaded = block(sessions.load(&headers));
    assert!(matches!(loaded, Err(SessionError::Conflict)), "{loaded:?}");
}

#[test]
fn apps_cannot_set_posterns_cookies() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let mut headers = HeaderMap::new();
    for line in [
        "_postern=x; Domain=postern.test; Path=/",
        "theme=dark; Path=/",
        "_postern_0=x; Path=/",
        "_postern_flow=x; Path=/oauth2/",
        " _postern_12 =x",
        "_postern_x=kept",
        "_Postern=kept",
        "_postern_=kept",
        "app_postern=kept",
    ] {
        headers.append(http::header::SET_COOKIE, HeaderValue::from_static(line));
    }
    assert_eq!(sessions.strip_set_cookies(&mut headers), 4);
    let left: Vec<&str> = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        left,
        [
            "theme=dark; Path=/",
            "_postern_x=kept",
            "_Postern=kept",
            "_postern_=kept",
            "app_postern=kept"
        ]
    );
}

#[test]
fn decide_one_value_or_conflict() {
    let one = |v: &str| v.to_owned();

    assert_eq!(cookie::decide([]), cookie::Opened::Absent);
    assert_eq!(cookie::decide([one("a")]), cookie::Opened::One(one("a")));
    assert_eq!(
        cookie::decide([one("a"), one("a")]),
        cookie::Opened::One(one("a"))
    );
    assert_eq!(
        cookie::decide([one("a"), one("b")]),
        cookie::Opened::Conflict
    );
    assert_eq!(
        cookie::decide([one("a"), one("a"), one("b")]),
        cookie::Opened::Conflict
    );
}

#[test]
fn two_valid_sessions_conflict() {
    let sessions = Sessions::new(&config(&[KEY_A])).unwrap();
    let alice = block(sessions.save(&HeaderMap::new(), &session(0))).unwrap();
    let mut other = session(0);
    other.user = "mallory".to_owned();
    let mallory = block(sessions.save(&HeaderMap::new(), &other)).unwrap();
    let pair = |set: &[HeaderValue]| {
        let header = cookie_header(set);
        header[COOKIE].to_str().unwrap().to_owned()
    };
    let mut headers = HeaderMap::new();
    let both = format!("{}; {}", pair(&mallory), pair(&alice));
    headers.insert(COOKIE, HeaderValue::from_str(&both).unwrap());

    let loaded = block(sessions.load(&headers));

    assert!(matches!(loaded, Err(SessionError::Conflict)), "{loaded:?}");
}
