//! `postern token new`: a fresh machine token and its vars entry.

use sha2::{Digest, Sha256};

/// The prefix of every token postern makes, so secret scanners can find
/// leaked ones.
pub const TOKEN_PREFIX: &str = "pst_";

/// Generates a new token: the prefix and 32 random bytes in lowercase hex (256 bits
/// from the operating system's generator).
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks whether `name` is a valid machine name or client id: 1 to 128 letters,
/// digits, '-', '_', '.' or '@'.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// Formats the text that `postern token new NAME` prints.
pub fn new_entry(name: &str) -> Result<String, String> {
    if !is_valid_name(name) {
        return Err(format!(
            "invalid machine name {name:?}; use letters, digits, '-', '_', '.' or '@'"
        ));
    }
    let token = generate();
    let hash = sha256_hex(&token);
    Ok(format!(
        "# Give this token to the machine once; postern keeps only its hash.\n\
         token: {token}\n\
         \n\
         # Add the entry to identities.machines in the vars file:\n\
         identities:\n\
         \x20 machines:\n\
         \x20   - name: {name}\n\
         \x20     token_sha256: {hash}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hash() {
        assert_eq!(
            sha256_hex("pst_example_build_bot_token_0001"),
            "ef713a9461487506d9f18c43e4e5968697a8c95e2db69a36d67fb8660dab6a5f"
        );
    }

    #[test]
    fn entry_matches_token() {
        let text = new_entry("ci-runner").unwrap();
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 64);
        assert!(text.contains(&format!("token_sha256: {}", sha256_hex(token))));
        assert!(new_entry("bad name").is_err());
    }
}
