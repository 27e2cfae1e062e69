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
    windows: Mutex<quick_cache::unsync::Cache<K, Window>>,
}

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

    /// Returns how long until `user` from `client` may try again, or `None`
    /// when neither is over its limit.
    pub fn retry_after(&self, user: &str, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let user_wait = self.users.blocked_for(&user_key(user), now);
        let address_wait = self.addresses.blocked_for(&address_key(client), now);
        user_wait.max(address_wait)
    }

    /// Counts a failed attempt against both keys.
    pub fn failed(&self, user: &str, client: IpAddr) {
        let now = Instant::now();
        self.users.record(user_key(user), now);
        self.addresses.record(address_key(client), now);
    }

    /// Clears the user's failures after a successful sign-in. The address
    /// keeps its count: one good password must not reset a guessing run
    /// against other names from the same address.
    pub fn succeeded(&self, user: &str) {
        self.users.clear(&user_key(user));
    }
}

/// The user-name key: the name as typed, cut to a length no real name
/// reaches, so a huge form field cannot make a huge key.
fn user_key(user: &str) -> String {
    let mut end = user.len().min(256);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_owned()
}

/// The address key: an IPv4 address, or the /64 network of an IPv6 address,
/// because one IPv6 host usually has a whole /64 to pick addresses from.
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

    fn blocked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.peek(key)?;
        let ends = window.opened + self.limit.window;
        (window.failures >= self.limit.max_failures && now < ends).then(|| ends - now)
    }

    fn record(&self, key: K, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
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

    fn clear(&self, key: &K) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.remove(key);
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
            assert_eq!(attempts.retry_after("alice", CLIENT), None);
            attempts.failed("alice", CLIENT);
        }
        assert_eq!(
            attempts.retry_after("alice", CLIENT),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            attempts.retry_after("alice", OTHER),
            Some(Duration::from_secs(60))
        );
        assert_eq!(attempts.retry_after("bob", CLIENT), None);
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(
            attempts.retry_after("alice", CLIENT),
            Some(Duration::from_secs(15))
        );
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(attempts.retry_after("alice", CLIENT), None);
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
            attempts.failed(name, CLIENT);
        }
        assert!(attempts.retry_after("d", CLIENT).is_some());
        assert_eq!(attempts.retry_after("d", OTHER), None);
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_user_only() {
        let attempts = Attempts::new(LIMIT, LIMIT);
        attempts.failed("alice", CLIENT);
        attempts.failed("alice", CLIENT);
        attempts.succeeded("alice");
        attempts.failed("alice", CLIENT);
        assert_eq!(attempts.retry_after("alice", OTHER), None);
        assert!(attempts.retry_after("bob", CLIENT).is_some());
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
