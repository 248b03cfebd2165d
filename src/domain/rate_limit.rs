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

    /// `attempts_in_window` counts the attempt being decided too (the caller
    /// adds it to those already counted). Returns the whole seconds to wait
    /// when the attempt must be refused.
    pub fn check(
        &self,
        attempts_in_window: u64,
        oldest: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), u64> {
        if attempts_in_window <= u64::from(self.max_failures) {
            return Ok(());
        }
        let frees_at = oldest.unwrap_or(now) + self.window;
        let wait = (frees_at - now).whole_seconds() + 1;
        Err(wait.clamp(1, self.window.whole_seconds().max(1)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const LIMIT: Limit = Limit { max_failures: 5, window: Duration::minutes(15) };

    #[test]
    fn allows_up_to_the_limit() {
        let now = datetime!(2026-01-01 12:00 UTC);
        assert_eq!(LIMIT.check(5, Some(now), now), Ok(()));
    }

    #[test]
    fn refuses_beyond_and_says_when_the_oldest_leaves_the_window() {
        let now = datetime!(2026-01-01 12:00 UTC);
        let oldest = now - Duration::minutes(10);
        assert_eq!(LIMIT.check(6, Some(oldest), now), Err(5 * 60 + 1));
        assert_eq!(LIMIT.check(6, Some(now), now), Err(15 * 60));
    }
}
