//! Everything a request needs, built once at start and shared by reference.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use crate::config::Config;
use crate::crypto::keys::SigningKeys;
use crate::crypto::password::PasswordHasher;
use crate::crypto::tokens::TokenIssuer;
use crate::domain::rate_limit::Limit;
use crate::store::pool::{Backend, Pool};

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

/// Counters of this node, for `GET /metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Responses by status class: 1xx … 5xx.
    pub responses: [AtomicU64; 5],
    /// Requests made with an impersonation token (each has its log row).
    pub impersonated_requests: AtomicU64,
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        if let Some(counter) = self.responses.get(usize::from(status / 100).wrapping_sub(1)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub backend: Backend,
    pub keys: Arc<SigningKeys>,
    pub hasher: PasswordHasher,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// SQLite has one writer at a time. Impersonated requests, each a write
    /// transaction from start to end, queue here and are woken the moment the
    /// previous one commits, instead of sleeping in SQLite's busy handler.
    /// `None` on PostgreSQL, where only the chain head is contended.
    pub sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl AppState {
    pub fn tokens(&self) -> TokenIssuer<'_> {
        TokenIssuer { keys: &self.keys, issuer: &self.config.issuer, audience: &self.config.audience }
    }

    pub fn failure_limit(&self) -> Limit {
        Limit {
            max_failures: self.config.rate_limit_max_failures,
            window: Duration::minutes(self.config.rate_limit_window_minutes),
        }
    }
}
