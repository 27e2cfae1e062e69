//! People provisioned in postern: password verification for the login
//! page.
//!
//! A wrong user name and a wrong password take the same path and the same
//! time, and return the same result. An unknown name is verified against a
//! decoy hash with the same parameters as a real one.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::identity::User;

/// Most password checks running at once. Each takes about 19 MiB (the
/// parameters `postern passwd` uses) and tens of milliseconds of CPU, so a
/// flood of attempts waits here instead of exhausting memory.
const MAX_CONCURRENT_CHECKS: usize = 8;

/// The users of one config.
pub struct Users {
    by_name: HashMap<String, Arc<User>>,
    /// A hash no password matches, verified when the name is unknown.
    decoy: Arc<str>,
    checks: Arc<Semaphore>,
}

// === impl Users ===

impl Users {
    /// Builds the table; makes the decoy hash, which costs one hash
    /// computation, only when there are users.
    pub fn new(users: &[User]) -> Result<Self, String> {
        let decoy = match users.first() {
            Some(first) => super::password::decoy_like(&first.password_argon2id)?,
            None => String::new(),
        };
        Ok(Users {
            by_name: users
                .iter()
                .map(|u| (u.name.clone(), Arc::new(u.clone())))
                .collect(),
            decoy: Arc::from(decoy),
            checks: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Returns the user whose name and password these are, or `None` for an
    /// unknown name or a wrong password alike. The argon2 check runs on
    /// tokio's blocking pool, off the async workers.
    pub async fn verify(&self, name: &str, password: &str) -> Option<Arc<User>> {
        let user = self.by_name.get(name).cloned();
        let hash: Arc<str> = match &user {
            Some(user) => Arc::from(user.password_argon2id.as_str()),
            None => self.decoy.clone(),
        };
        let _permit = self.checks.acquire().await.ok()?;
        let password = password.as_bytes().to_vec();
        let matched =
            tokio::task::spawn_blocking(move || super::password::verify(&hash, &password))
                .await
                .unwrap_or(false);
        // Both outcomes are known only now, so the time taken does not
        // depend on whether the name exists.
        user.filter(|_| matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str) -> User {
        User {
            name: name.to_owned(),
            email: Some(format!("{name}@example.test")),
            groups: vec!["staff".to_owned()],
            password_argon2id: super::super::password::hash(password).unwrap(),
        }
    }

    #[tokio::test]
    async fn right_password_only() {
        let users =
            Users::new(&[user("alice", "alice password"), user("bob", "bob password")]).unwrap();
        let alice = users.verify("alice", "alice password").await.unwrap();
        assert_eq!(alice.name, "alice");
        assert!(users.verify("alice", "bob password").await.is_none());
        assert!(users.verify("bob", "alice password").await.is_none());
        assert!(users.verify("carol", "alice password").await.is_none());
        assert!(users.verify("", "").await.is_none());
    }

    /// An unknown name costs as much as a known one: the decoy has the
    /// same parameters, so the two medians stay within a factor of two
    /// (loose, because the test machine may be busy).
    #[tokio::test]
    async fn unknown_name_takes_as_long() {
        let users = Users::new(&[user("alice", "alice password")]).unwrap();
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..5 {
            let started = std::time::Instant::now();
            users.verify("alice", "wrong password").await;
            known.push(started.elapsed());
            let started = std::time::Instant::now();
            users.verify("mallory", "wrong password").await;
            unknown.push(started.elapsed());
        }
        known.sort();
        unknown.sort();
        let (known, unknown) = (known[2], unknown[2]);
        assert!(
            unknown * 2 > known && known * 2 > unknown,
            "known {known:?}, unknown {unknown:?}"
        );
    }
}
