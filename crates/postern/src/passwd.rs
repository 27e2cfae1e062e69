//! `postern passwd`: an argon2id hash of a password, and the
//! `identities.users` entry that uses it.

use std::io::{IsTerminal, Read};

use crate::identity::password::{self, MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};

/// Reads a password and returns the text to print: the vars entry for
/// `name`, or the bare hash when no name is given.
pub fn run(name: Option<&str>) -> Result<String, String> {
    if let Some(name) = name
        && !crate::token::is_valid_name(name)
    {
        return Err(format!(
            "invalid user name {name:?}; use letters, digits, '-', '_', '.' or '@'"
        ));
    }
    let password = read_password()?;
    check_length(&password)?;
    let hash = password::hash(&password)?;
    Ok(match name {
        Some(name) => entry(name, &hash),
        None => format!("{hash}\n"),
    })
}

/// Formats the vars entry for a user.
fn entry(name: &str, hash: &str) -> String {
    format!(
        "# Add the entry to identities.users in the vars file; email and groups are\n\
         # optional. postern keeps only this hash, never the password.\n\
         identities:\n\
         \x20 users:\n\
         \x20   - name: {name}\n\
         \x20     # email: {name}@your-domain.example\n\
         \x20     # groups: [your-group]\n\
         \x20     password_argon2id: \"{hash}\"\n"
    )
}

/// Reads the password from the terminal without echo, asking twice, or
/// from standard input when it is not a terminal (one trailing newline is
/// dropped), as in `printf %s "$PASSWORD" | postern passwd alice`.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        let second = rpassword::prompt_password("Repeat the password: ")
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))?;
        if first != second {
            return Err("the two passwords differ; run postern passwd again".to_owned());
        }
        return Ok(first);
    }
    let mut bytes = Vec::new();
    // Reading one byte more than allowed, plus a line ending, detects a
    // password that is too long.
    let limit = (MAX_PASSWORD_BYTES + 3) as u64;
    std::io::stdin()
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let mut text = String::from_utf8(bytes)
        .map_err(|_| "the password on standard input is not valid UTF-8".to_owned())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

fn check_length(password: &str) -> Result<(), String> {
    if password.len() < MIN_PASSWORD_BYTES {
        return Err(format!(
            "the password is shorter than {MIN_PASSWORD_BYTES} bytes; choose a longer one"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes; choose a shorter one"
        ));
    }
    Ok(())
}
