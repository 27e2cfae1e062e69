//! Limits on failed sign-in attempts, per user name and per client address.
//!
//! Each key counts its failures in a fixed window that opens with its first
//! failure. Once a key has `max_failures` failures in the window, every
//! attempt with that key is rejected until the window ends, whether or not
//! the user exists, so the limit reveals nothing about which names exist.
//!
//! Written by hand on a bounded cache instead of with `governor`. governor
//! counts every check as a cell and cannot look at a key without spending
//! one, so it cannot count failures only. Its keyed store also grows with
//! every new key until `retain_recent` is called. Here the number of keys is
//! capped, and the least useful are evicted first (quick_cache's S3-FIFO).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How many failures a key may have in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_failures: u32,
    pub window: Duration,
}

/// Default limit per user name: 5 failures in 15 minutes.
pub const DEFAULT_USER_LIMIT: Limit = Limit {
    max_failures: 5,
    window: Duration::from_secs(15 * 60),
};
/// Default limit per client address: 20 failures in 15 minutes.
pub const DEFAULT_ADDRESS_LIMIT: Limit = Limit {
    max_failures: 20,
    window: Duration::from_secs(15 * 60),
};

/// Maximum number of user names and client addresses tracked at once. An
/// evicted key starts again from zero, so the caps are far above what a
/// real user base needs. The memory they take is a few megabytes at most.
const USER_KEYS: usize = 10_000;
const ADDRESS_KEYS: usize = 100_000;

/// The failure counters of one gate process.
pub struct Attempts {
    users: Counter<String>,
    addresses: Counter<IpAddr>,
}

/// Failure windows by key.
struct Counter<K> {
    limit: Limit,
    windows: Mutex<Windows<K>>,
}

type Windows<K> = quick_cache::unsync::Cache<K, Window>;

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

// === impl Attempts ===

impl Default for Attempts {
    fn default() -> Self {
        Self::new(DEFAULT_USER_LIMIT, DEFAULT_ADDRESS_LIMIT)
    }
}

impl Attempts {
    pub fn new(per_user: Limit, per_address: Limit) -> Self {
        Attempts {
            users: Counter::new(per_user, USER_KEYS),
            addresses: Counter::new(per_address, ADDRESS_KEYS),
        }
    }

    /// Counts an attempt of `user` from `client` as a failure before the
    /// password is checked, or returns how long until they may try again
    /// when either is over its limit. Counting first means that many
    /// attempts sent at once cannot all pass the check before the first
    /// failure is recorded.
    pub fn begin(&self, user: &str, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let (user, client) = (user_key(user), address_key(client));
        // Both locks are held, always in this order, so the check and the
        // count are one step.
        let mut users = self.users.lock();
        let mut addresses = self.addresses.lock();
        let user_wait = self.users.blocked_for(&users, &user, now);
        let address_wait = self.addresses.blocked_for(&addresses, &client, now);
        if let Some(wait) = user_wait.max(address_wait) {
            return Err(wait);
        }
        self.users.record(&mut users, user, now);
        self.addresses.record(&mut addresses, client, now);
        Ok(())
    }

    /// Takes back the failure that [`Attempts::begin`] counted, after a
    /// successful sign-in, and clears the user's earlier failures. The
    /// address keeps its earlier failures, so that one good password does
    /// not reset a guessing run against other names from the same address.
    pub fn succeeded(&self, user: &str, client: IpAddr) {
        let mut users = self.users.lock();
        users.remove(&user_key(user));
        drop(users);
        let mut addresses = self.addresses.lock();
        let key = address_key(client);
        if let Some(window) = addresses.peek(&key).copied() {
            let failures = window.failures.saturating_sub(1);
            addresses.insert(key, Window { failures, ..window });
        }
    }
}

/// Makes the user-name key: the name as typed, cut to a length no real name
/// reaches, so a huge form field cannot make a huge key.
fn user_key(user: &str) -> String {
    let mut end = user.len().min(256);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_owned()
}

/// Makes the address key: an IPv4 address, or the /64 network of an IPv6
/// address, because one IPv6 host usually has a whole /64 to pick from.
fn address_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

// === impl Counter ===

impl<K: Eq + std::hash::Hash + Clone> Counter<K> {
    fn new(limit: Limit, capacity: usize) -> Self {
        Counter {
            limit,
            windows: Mutex::new(quick_cache::unsync::Cache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows<K>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blocked_for(&self, windows: &Windows<K>, key: &K, now: Instant) -> Option<Duration> {
        let window = windows.peek(key)?;
        let ends = window.opened + self.limit.window;
        (window.failures >= self.limit.max_failures && now < ends).then(|| ends - now)
    }

    fn record(&self, windows: &mut Windows<K>, key: K, now: Instant) {
        let window = match windows.peek(&key) {
            Some(w) if now < w.opened + self.limit.window => Window {
                opened: w.opened,
                failures: w.failures.saturating_add(1),
            },
            _ => Window {
                opened: now,
                failures: 1,
            },
        };
        windows.insert(key, window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        max_failures: 3,
        window: Duration::from_secs(60),
    };
    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 10));

    #[tokio::test(start_paused = true)]
    async fn user_limit_opens_after_window() {
        let attempts = Attempts::new(
            LIMIT,
            Limit {
                max_failures: 100,
                ..LIMIT
            },
        );
        for _ in 0..3 {
            assert_eq!(attempts.begin("alice", CLIENT), Ok(()));
        }
        assert_eq!(
            attempts.begin("alice", CLIENT),
            Err(Duration::from_secs(60))
        );
        assert_eq!(attempts.begin("alice", OTHER), Err(Duration::from_secs(60)));
        assert_eq!(attempts.begin("bob", CLIENT), Ok(()));
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(
            attempts.begin("alice", CLIENT),
            Err(Duration::from_secs(15))
        );
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(attempts.begin("alice", CLIENT), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn address_limit_covers_every_name() {
        let attempts = Attempts::new(
            Limit {
                max_failures: 100,
                ..LIMIT
            },
            LIMIT,
        );
        for name in ["a", "b", "c"] {
            assert_eq!(attempts.begin(name, CLIENT), Ok(()));
        }
        assert!(attempts.begin("d", CLIENT).is_err());
        assert_eq!(attempts.begin("d", OTHER), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_user_only() {
        let attempts = Attempts::new(LIMIT, LIMIT);
        // Two failures, then a success that takes back its own count.
        assert_eq!(attempts.begin("alice", CLIENT), Ok(()));
        assert_eq!(attempts.begin("alice", CLIENT), Ok(()));
        assert_eq!(attempts.begin("alice", CLIENT), Ok(()));
        attempts.succeeded("alice", CLIENT);
        // The user starts from zero; the address keeps its two failures.
        assert_eq!(attempts.begin("alice", OTHER), Ok(()));
        assert_eq!(attempts.begin("bob", CLIENT), Ok(()));
        assert!(attempts.begin("carol", CLIENT).is_err());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        assert_eq!(address_key(mapped), CLIENT);
    }
}
