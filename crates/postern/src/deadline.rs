//! Deadline arithmetic that cannot overflow.
//!
//! `Instant + Duration` panics when the sum does not fit, and a deadline
//! built from a configured duration must never take a worker down. The
//! config decoder caps durations too, but the timers must hold without it.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: the wait of a deadline too far away to represent, as
/// tokio's own `sleep` uses for a duration that does not fit.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Returns `start + limit`, or a deadline about 30 years away when that
/// sum does not fit in an `Instant`.
pub fn after(start: Instant, limit: Duration) -> Instant {
    start
        .checked_add(limit)
        .or_else(|| start.checked_add(FAR_FUTURE))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_limit_adds() {
        let start = Instant::now();

        assert_eq!(
            after(start, Duration::from_secs(5)),
            start + Duration::from_secs(5)
        );
    }

    #[test]
    fn huge_limit_saturates() {
        let start = Instant::now();

        let deadline = after(start, Duration::MAX);

        assert!(deadline >= start + Duration::from_secs(86_400 * 365));
    }
}
