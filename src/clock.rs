//! The service's clock: one source of "now" that tests can move.

use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

/// The service's notion of "now", truncated to microseconds so that both
/// backends store exactly what was computed. Tests may move it forward.
#[derive(Clone, Default)]
pub struct Clock {
    offset: Arc<Mutex<Duration>>,
}

impl Clock {
    pub fn now(&self) -> OffsetDateTime {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        let now = OffsetDateTime::now_utc() + offset;
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).expect("truncating nanoseconds stays in range")
    }

    /// Moves this clock (and every clone of it) forward; for tests of expiry.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}
