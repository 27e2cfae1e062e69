//! Decoding of `identities.users`: people provisioned in postern, who sign
//! in on postern's login page with a password.

use super::super::decode::{Cursor, Decoder, index};
use super::super::identity::User;
use super::{parse_name, required};

/// Reads the list and checks that names and emails are unique.
pub(super) fn users(d: &mut Decoder, at: Cursor<'_>) -> Option<Vec<User>> {
    let users = d.list(at, user)?;
    let mut complete = true;
    for (i, u) in users.iter().enumerate() {
        let earlier = &users[..i];
        let same_email = |e: &User| matches!((&e.email, &u.email), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
        let duplicate = if earlier.iter().any(|e| e.name == u.name) {
            Some(format!("duplicate user name {:?}", u.name))
        } else if earlier.iter().any(same_email) {
            Some(format!(
                "user {:?} has the same email as another user; an email belongs to one person",
                u.name
            ))
        } else {
            None
        };
        if let Some(message) = duplicate
            && let Some(items) = d.sequence(at)
        {
            let path = index(at.path(), i);
            d.report(path.cursor(&items[i]), message);
            complete = false;
        }
    }
    complete.then_some(users)
}

fn user(d: &mut Decoder, at: Cursor<'_>) -> Option<User> {
    let map = d.mapping(at, &["name", "email", "groups", "password_argon2id"])?;
    let name = required(d, &map, "name").and_then(|(p, n)| d.parse(p.cursor(n), parse_name));
    let email = match map.get("email") {
        Some((p, n)) => d.parse(p.cursor(n), parse_email).map(Some),
        None => Some(None),
    };
    let groups = match map.get("groups") {
        Some((p, n)) => d.list(p.cursor(n), |d, item| d.parse(item, parse_group)),
        None => Some(Vec::new()),
    };
    let password = required(d, &map, "password_argon2id")
        .and_then(|(p, n)| d.parse(p.cursor(n), crate::identity::password::check));
    Some(User {
        name: name?,
        email: email?,
        groups: groups?,
        password_argon2id: password?,
    })
}

/// Accepts `local@domain` in printable ASCII, at most 254 characters (the
/// longest address SMTP can carry). Full RFC 5322 syntax is not the point:
/// the value is compared with access rules and sent to apps in a header.
fn parse_email(text: &str) -> Result<String, String> {
    let ok = text.len() <= 254
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        && text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid email {text:?}; expected an address such as alice@example.com"
        ))
    }
}

/// Accepts printable ASCII without spaces or commas, because apps receive
/// the groups comma-separated in `X-Auth-Request-Groups`.
fn parse_group(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid group {text:?}; expected at most 128 printable characters without spaces \
             or commas, such as admins or org:platform"
        ))
    }
}
