//! Sliding-window limit on failed credential checks. The attempts themselves
//! are counted in the database (so the limit holds across nodes); this decides.

use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_failures: u32,
    pub window: Duration,
}

impl Limit {
    pub fn window_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.window
    }

    /// Decides one more attempt given the failures in the window, oldest
    /// first: refused once they reach the limit, with the whole seconds until
    /// enough of them have left the window for it (the first to leave is not
    /// always enough: attempts never settled become failures late).
    pub fn check(&self, failures_oldest_first: &[OffsetDateTime], now: OffsetDateTime) -> Result<(), u64> {
        let max = self.max_failures as usize;
        if failures_oldest_first.len() < max {
            return Ok(());
        }
        // (A limit of zero admits nothing: a whole window, from now.)
        let first_to_leave = failures_oldest_first.get(failures_oldest_first.len() - max).copied();
        let frees_at = first_to_leave.unwrap_or(now) + self.window;
        let wait = (frees_at - now).whole_seconds() + 1;
        Err(wait.clamp(1, self.window.whole_seconds().max(1)) as u64)
    }

    /// Whether one more attempt fits beside `counted` attempts (failed or
    /// still being checked).
    pub fn has_room(&self, counted: u64) -> bool {
        counted < u64::from(self.max_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const LIMIT: Limit = Limit { max_failures: 5, window: Duration::minutes(15) };

    #[test]
    fn a_limit_of_zero_admits_nothing_and_does_not_panic() {
        let now = datetime!(2026-11-21 10:00 UTC);
        let none = Limit { max_failures: 0, window: Duration::minutes(15) };
        assert_eq!(none.check(&[], now), Err(900));
        assert_eq!(none.check(&[now - Duration::minutes(1)], now), Err(900));
        assert!(!none.has_room(0));
    }

    #[test]
    fn allows_up_to_the_limit() {
        let now = datetime!(2026-01-01 12:00 UTC);
        assert_eq!(LIMIT.check(&[now; 4], now), Ok(()));
        assert!(LIMIT.has_room(4) && !LIMIT.has_room(5));
    }

    #[test]
    fn refuses_beyond_and_says_when_enough_have_left_the_window() {
        let now = datetime!(2026-01-01 12:00 UTC);
        let oldest = now - Duration::minutes(10);
        assert_eq!(LIMIT.check(&[oldest, now, now, now, now], now), Err(5 * 60 + 1));
        assert_eq!(LIMIT.check(&[now; 5], now), Err(15 * 60));
        // Seven failures: three must leave, so the third oldest decides.
        let at = |minutes_ago| now - Duration::minutes(minutes_ago);
        assert_eq!(LIMIT.check(&[at(14), at(12), at(9), at(1), at(1), at(1), at(1)], now), Err(6 * 60 + 1));
    }
}
