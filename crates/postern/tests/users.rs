//! People provisioned in postern: `postern passwd`, and (once sessions
//! exist) signing in on the login page.

mod support;

use support::*;

/// The password hashed in these tests.
const PASSWORD: &str = "correct horse battery staple";

/// Runs `postern passwd` with `args`, the password on standard input.
fn passwd(args: &[&str], password: &str) -> std::process::Output {
    let mut full = vec!["passwd"];
    full.extend_from_slice(args);
    postern_with_input(&full, Some(password.as_bytes()))
}

#[test]
fn passwd_output_verifies() {
    let output = passwd(&["alice"], &format!("{PASSWORD}\n"));
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(
        printed.contains("  users:\n    - name: alice\n"),
        "{printed}"
    );
    let hash = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("password_argon2id: "))
        .unwrap_or_else(|| panic!("no password_argon2id line in {printed}"))
        .trim_matches('"')
        .to_owned();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    // The trailing newline is not part of the password.
    assert!(postern::identity::password::verify(
        &hash,
        PASSWORD.as_bytes()
    ));
    assert!(!postern::identity::password::verify(
        &hash,
        format!("{PASSWORD}\n").as_bytes()
    ));
    assert!(!printed.contains(PASSWORD), "the password was printed");
    assert!(
        !text(&output.stderr).contains(PASSWORD),
        "the password went to stderr"
    );
}

#[test]
fn passwd_without_name_prints_hash() {
    let output = passwd(&[], PASSWORD);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let printed = text(&output.stdout);
    let hash = printed.trim();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(postern::identity::password::verify(
        hash,
        PASSWORD.as_bytes()
    ));
    let again = text(&passwd(&[], PASSWORD).stdout);
    assert_ne!(again.trim(), hash, "the salt must be random");
}

#[test]
fn passwd_rejects_bad_input() {
    let short = passwd(&["alice"], "short\n");
    assert!(!short.status.success());
    assert!(text(&short.stdout).is_empty());
    assert!(
        text(&short.stderr).contains("shorter than 8"),
        "{}",
        text(&short.stderr)
    );

    let long = passwd(&["alice"], &"x".repeat(2000));
    assert!(!long.status.success());
    assert!(
        text(&long.stderr).contains("longer than 1024"),
        "{}",
        text(&long.stderr)
    );

    let name = passwd(&["bad name"], PASSWORD);
    assert!(!name.status.success());
    assert!(text(&name.stderr).contains("invalid user name \"bad name\""));

    let help = postern(&["passwd", "--help"]);
    let stdout = text(&help.stdout);
    assert!(stdout.contains("Usage: postern passwd [NAME]"), "{stdout}");
    assert!(stdout.contains("standard input"), "{stdout}");
}
