//! argon2id password hashes: making one (`postern passwd`), checking that a
//! configured one is sound, and verifying a password against it.
//!
//! Hashes are PHC strings, such as
//! `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`, so their parameters
//! travel with them and can be raised later without a config change.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Parameters of new hashes: 19 MiB of memory, 2 passes, 1 lane, the first
/// configuration that the OWASP Password Storage Cheat Sheet recommends for
/// argon2id (and the argon2 crate's default).
pub const NEW_HASH_M_COST: u32 = 19 * 1024;
pub const NEW_HASH_T_COST: u32 = 2;
pub const NEW_HASH_P_COST: u32 = 1;

/// Weakest accepted cost, as memory in KiB times passes. OWASP lists
/// equivalent argon2id settings from m=47104,t=1 to m=7168,t=5; every one
/// of them has m×t of at least 7168×5.
const MIN_MEMORY_TIMES_PASSES: u64 = 7168 * 5;
/// Caps that keep a typo in a configured hash from making each sign-in
/// attempt take gigabytes of memory or seconds of CPU.
const MAX_M_COST: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;
/// Shortest salt accepted, in bytes (RFC 9106 recommends 16).
const MIN_SALT_BYTES: usize = 8;
/// Bounds on the hash output, in bytes.
const MIN_OUTPUT_BYTES: usize = 16;
const MAX_OUTPUT_BYTES: usize = 64;

/// Shortest and longest password `postern passwd` accepts, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes `password` with argon2id, the parameters above and a random
/// 16-byte salt.
pub fn hash(password: &str) -> Result<String, String> {
    let params = Params::new(NEW_HASH_M_COST, NEW_HASH_T_COST, NEW_HASH_P_COST, None)
        .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("cannot encode the salt: {e}"))?;
    hasher
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Checks that `text` is an argon2id PHC string with sound parameters, and
/// returns it unchanged. The message names what is wrong and how to fix it.
pub fn check(text: &str) -> Result<String, String> {
    let fix = "make a new hash with `postern passwd NAME`";
    let hash = PasswordHash::new(text).map_err(|e| {
        format!("invalid password hash: {e}; expected a PHC string such as $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH ({fix})")
    })?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "the password hash uses {}, not argon2id; {fix}",
            hash.algorithm
        ));
    }
    if hash.version != Some(0x13) {
        return Err(format!(
            "the password hash must be argon2 version 19 (v=19); {fix}"
        ));
    }
    let params = Params::try_from(&hash)
        .map_err(|e| format!("invalid argon2 parameters in the password hash: {e}; {fix}"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if u64::from(m) * u64::from(t) < MIN_MEMORY_TIMES_PASSES {
        return Err(format!(
            "the password hash is too cheap to compute (m={m}, t={t}); use at least \
             m=19456,t=2 or m=7168,t=5; {fix}"
        ));
    }
    if m > MAX_M_COST || t > MAX_T_COST || p > MAX_P_COST {
        return Err(format!(
            "the password hash is too expensive to check on every sign-in (m={m}, t={t}, \
             p={p}); at most m={MAX_M_COST}, t={MAX_T_COST}, p={MAX_P_COST}; {fix}"
        ));
    }
    let salt_len = hash.salt.map_or(0, |s| s.len() * 3 / 4);
    if salt_len < MIN_SALT_BYTES {
        return Err(format!(
            "the password hash's salt is shorter than {MIN_SALT_BYTES} bytes; {fix}"
        ));
    }
    let output_len = hash.hash.map_or(0, |h| h.len());
    if !(MIN_OUTPUT_BYTES..=MAX_OUTPUT_BYTES).contains(&output_len) {
        return Err(format!(
            "the password hash's output must be {MIN_OUTPUT_BYTES} to {MAX_OUTPUT_BYTES} \
             bytes long; {fix}"
        ));
    }
    Ok(text.to_owned())
}

/// Verifies `password` against a PHC string that [`check`] accepted. Takes
/// tens of milliseconds by design: call it off the async workers.
pub fn verify(phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    // Argon2::default() takes its algorithm, version and parameters from the
    // PHC string being verified, not from its own defaults.
    Argon2::default().verify_password(password, &hash).is_ok()
}

/// Makes a hash with the same parameters as `phc`, of a random password
/// that is then forgotten. Verifying against it costs the same as verifying against
/// `phc`, so an unknown user name takes as long as a wrong password. Costs
/// one hash computation.
pub fn decoy_like(phc: &str) -> Result<String, String> {
    let params = PasswordHash::new(phc)
        .ok()
        .and_then(|h| Params::try_from(&h).ok())
        .map_or_else(
            || Params::new(NEW_HASH_M_COST, NEW_HASH_T_COST, NEW_HASH_P_COST, None),
            Ok,
        )
        .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("cannot encode the salt: {e}"))?;
    hasher
        .hash_password(&rand::random::<[u8; 32]>(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(check(&phc).unwrap(), phc);
        assert!(verify(&phc, b"correct horse battery"));
        assert!(!verify(&phc, b"correct horse batterY"));
    }

    #[test]
    fn decoy_has_same_parameters() {
        let phc = hash("a password").unwrap();
        let decoy = decoy_like(&phc).unwrap();
        assert_eq!(check(&decoy).unwrap(), decoy);
        let params = |s: &str| s.split('$').nth(3).unwrap().to_owned();
        assert_eq!(params(&decoy), params(&phc));
        assert!(!verify(&decoy, b"a password"));
    }

    #[test]
    fn check_rejects_other_algorithms_and_weak_parameters() {
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let out = "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE";
        let cases = [
            (
                format!("$argon2i$v=19$m=19456,t=2,p=1${salt}${out}"),
                "argon2i",
            ),
            (
                format!("$argon2d$v=19$m=19456,t=2,p=1${salt}${out}"),
                "argon2d",
            ),
            (
                "$2b$12$abcdefghijklmnopqrstuv".to_owned(),
                "invalid password hash",
            ),
            (
                format!("$argon2id$v=16$m=19456,t=2,p=1${salt}${out}"),
                "version 19",
            ),
            (
                format!("$argon2id$v=19$m=4096,t=1,p=1${salt}${out}"),
                "too cheap",
            ),
            (
                format!("$argon2id$v=19$m=4194304,t=2,p=1${salt}${out}"),
                "too expensive",
            ),
            (
                format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${out}"),
                "salt",
            ),
            ("plain text".to_owned(), "invalid password hash"),
        ];
        for (text, expected) in cases {
            let error = check(&text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("postern passwd"), "{text}: {error}");
        }
    }
}
