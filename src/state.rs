//! Everything a request needs, built once at start and shared by reference.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use time::Duration;
use uuid::Uuid;

use crate::config::Config;
use crate::crypto::keys::SigningKeys;
use crate::crypto::password::PasswordHasher;
use crate::crypto::tokens::TokenIssuer;
use crate::domain::rate_limit::Limit;
use crate::store::pool::{Backend, Pool};

pub use crate::clock::Clock;

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
    /// PostgreSQL: the requests of one impersonation session, in turn.
    pub session_turns: Arc<SessionTurns>,
}

/// One queue per impersonation session on this node. On PostgreSQL the
/// requests of a session run one at a time anyway (each holds the session's
/// rows locked to its commit); beyond the one running and the one next in
/// line (already connected, so the hand-over is immediate), they wait here
/// holding no pooled connection, so a frontend firing many parallel calls as
/// one customer cannot take the pool from everyone else.
#[derive(Default)]
pub struct SessionTurns {
    queues: Mutex<HashMap<Uuid, Weak<tokio::sync::Semaphore>>>,
}

impl SessionTurns {
    /// Requests of one session holding a connection at once on this node.
    pub const CONNECTED: usize = 2;

    /// Waits, asynchronously, for one of the session's turns on this node.
    pub async fn wait(&self, session: Uuid) -> tokio::sync::OwnedSemaphorePermit {
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            match queues.get(&session).and_then(Weak::upgrade) {
                Some(queue) => queue,
                None => {
                    // Queues live as long as someone holds or awaits them.
                    queues.retain(|_, queue| queue.strong_count() > 0);
                    let queue = Arc::new(tokio::sync::Semaphore::new(Self::CONNECTED));
                    queues.insert(session, Arc::downgrade(&queue));
                    queue
                }
            }
        };
        // Never closed, so acquiring cannot fail; fall back to a fresh permit anyway.
        match queue.acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().expect("a fresh permit"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_requests_of_a_session_at_a_time_and_no_queue_outlives_its_users() {
        let turns = SessionTurns::default();
        let (one, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let running = turns.wait(one).await;
        let next = turns.wait(one).await;
        // Another session is not held up.
        let elsewhere = tokio::time::timeout(std::time::Duration::from_secs(1), turns.wait(other)).await.unwrap();
        // A third request of the same session waits until one of the two ends.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), turns.wait(one)).await;
        assert!(waiting.is_err(), "a third request of the session got a connection");
        drop(running);
        let second = tokio::time::timeout(std::time::Duration::from_secs(1), turns.wait(one)).await.unwrap();
        drop((second, next, elsewhere));
        let _later = turns.wait(Uuid::from_u128(3)).await;
        assert_eq!(turns.queues.lock().unwrap().len(), 1, "finished sessions' queues are dropped");
    }
}
