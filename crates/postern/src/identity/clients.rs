//! OAuth 2.0 clients of postern's token endpoint, each proven by a secret
//! whose SHA-256 the vars file stores.
//!
//! The secrets are 256 random bits that postern generates, so a fast hash
//! is enough: a slow password hash such as argon2id protects guessable
//! secrets, and would only make the token endpoint easy to overload.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::identity::OAuthClient;

/// The prefix of every client secret postern makes, so secret scanners
/// can find leaked ones.
pub const SECRET_PREFIX: &str = "pcs_";

/// The clients of a config.
pub struct Clients {
    clients: Vec<OAuthClient>,
}

// === impl Clients ===

impl Clients {
    pub fn new(clients: &[OAuthClient]) -> Self {
        Clients {
            clients: clients.to_vec(),
        }
    }

    /// Returns whether `secret` is the secret of client `id`. The hash is
    /// compared in constant time; an unknown id costs the same hashing.
    pub fn verify(&self, id: &str, secret: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        match self.clients.iter().find(|c| c.id == id) {
            Some(client) => bool::from(client.secret_sha256.ct_eq(&digest)),
            None => false,
        }
    }
}

/// Formats the text that `postern client new ID` prints: a new secret and
/// the vars entry that admits it.
pub fn new_entry(id: &str) -> Result<String, String> {
    if !crate::token::is_valid_name(id) {
        return Err(format!(
            "invalid client id {id:?}; use letters, digits, '-', '_', '.' or '@'"
        ));
    }
    let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    Ok(format!(
        "# Give this secret to the client once; postern keeps only its hash.\n\
         client_secret: {secret}\n\
         \n\
         # Add the entry to identities.clients in the vars file:\n\
         identities:\n\
         \x20 clients:\n\
         \x20   - id: {id}\n\
         \x20     secret_sha256: {hash}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_matches_secret() {
        let text = new_entry("ci-deployer").unwrap();
        let secret = text
            .lines()
            .find_map(|l| l.strip_prefix("client_secret: "))
            .unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 64);
        let hash = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret_sha256: "))
            .unwrap();
        let mut secret_sha256 = [0u8; 32];
        hex::decode_to_slice(hash, &mut secret_sha256).unwrap();
        let clients = Clients::new(&[OAuthClient {
            id: "ci-deployer".into(),
            secret_sha256,
        }]);
        assert!(clients.verify("ci-deployer", secret));
        assert!(!clients.verify("ci-deployer", "pcs_wrong"));
        assert!(!clients.verify("other", secret));
    }

    #[test]
    fn invalid_id_rejected() {
        assert!(new_entry("bad id").is_err());
        assert!(new_entry("").is_err());
    }
}
