//! argon2id hashing on blocking threads, at most a few at a time.
//!
//! Hashing costs ~50 ms of CPU and 19 MiB of memory; running it on the async
//! workers would stall every other request, and running unbounded numbers at
//! once would let a login flood exhaust memory. Unknown users are verified
//! against a dummy hash so that they take the same time as a wrong password.
//! Work besides logins (new passwords, confirmations) gets at most half the
//! places, so logins always have some.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

/// OWASP's recommended argon2id parameters (m = 19 MiB, t = 2, p = 1).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing place stayed taken for `WAIT_FOR_TURN`: try again later.
    #[error("every password hashing place stayed busy")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Most hashes running at once, whatever the number of cores: each holds
/// 19 MiB while it runs.
pub const MAX_CONCURRENT: usize = 8;

/// How long a request waits for a hashing place before it is told "busy".
const WAIT_FOR_TURN: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Everything but logins (hashing new passwords, checking the password a
    /// signed-in user confirms with) takes at most half the places: the
    /// others stay for logins, whatever floods of those come from users.
    besides_login_permits: Arc<Semaphore>,
    wait_for_turn: std::time::Duration,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// `max_concurrent` bounds the hashes running at once (memory and CPU).
    pub fn new(max_concurrent: usize) -> Self {
        let dummy = hash_blocking("a password nobody has: only its cost matters")
            .expect("hashing a constant password cannot fail");
        let places = max_concurrent.clamp(1, MAX_CONCURRENT);
        Self {
            permits: Arc::new(Semaphore::new(places)),
            besides_login_permits: Arc::new(Semaphore::new((places / 2).max(1))),
            wait_for_turn: WAIT_FOR_TURN,
            dummy_hash: dummy.into(),
        }
    }

    /// A permit, waiting at most `WAIT_FOR_TURN`: under a flood of logins a
    /// request is told "busy" rather than queued without end.
    async fn turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, HashError> {
        Self::place(&self.permits, self.wait_for_turn).await
    }

    async fn place(
        places: &Arc<Semaphore>,
        wait: std::time::Duration,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, HashError> {
        match tokio::time::timeout(wait, Arc::clone(places).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(HashError::Failed(closed.to_string())),
            Err(_) => Err(HashError::Busy),
        }
    }

    /// A place for work other than a login: one of the half kept for such
    /// work, then a place among all.
    async fn place_besides_login(
        &self,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), HashError> {
        let started = tokio::time::Instant::now();
        let share = Self::place(&self.besides_login_permits, self.wait_for_turn).await?;
        let left = self.wait_for_turn.saturating_sub(started.elapsed());
        Ok((share, Self::place(&self.permits, left).await?))
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let permit = self.place_besides_login().await?;
        // The permit travels with the hash: a client that hangs up drops this
        // future, not the running hash, so the bound must not be released early.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_blocking(&password)
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))?
    }

    /// A login's check: true only when `stored` is present and matches. With
    /// no stored hash the dummy is verified anyway, so the caller cannot tell
    /// the cases apart by time. `Err` when no check could be made (too busy):
    /// no verdict at all.
    pub async fn verify_login(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        let permit = self.turn().await?;
        Ok(self.check(permit, password, stored).await)
    }

    /// The check of a password a signed-in user confirms with (starting an
    /// impersonation, changing their password), as `verify_login` but on the
    /// places besides logins.
    pub async fn verify_confirmation(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        let permit = self.place_besides_login().await?;
        Ok(self.check(permit, password, stored).await)
    }

    async fn check<P: Send + 'static>(&self, permit: P, password: String, stored: Option<String>) -> bool {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            argon2().verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await
        .unwrap_or_else(|e| {
            // Fail closed, but not silently: a crashed check is a bug.
            tracing::error!(error = %e, "a password check did not finish");
            false
        });
        known && matches
    }
}

pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    argon2().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| HashError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_what_it_hashed_and_nothing_else() {
        let hasher = PasswordHasher::new(2);
        let hash = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify_login("correct horse battery".into(), Some(hash.clone())).await.unwrap());
        assert!(!hasher.verify_login("wrong horse battery".into(), Some(hash)).await.unwrap());
        assert!(!hasher.verify_login("correct horse battery".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn an_abandoned_hash_keeps_its_permit_until_it_finishes() {
        let hasher = PasswordHasher::new(1);
        // The hash takes tens of milliseconds: the timeout drops the future mid-hash.
        let abandoned = tokio::time::timeout(std::time::Duration::from_millis(1), hasher.hash("a password".into()));
        assert!(abandoned.await.is_err(), "the hash outlived the timeout");
        assert_eq!(hasher.permits.available_permits(), 0, "the running hash still holds the only permit");
        hasher.hash("another password".into()).await.unwrap();
        assert_eq!(hasher.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn new_passwords_and_confirmations_never_take_the_places_logins_need() {
        let hasher = PasswordHasher { wait_for_turn: std::time::Duration::from_millis(50), ..PasswordHasher::new(4) };
        // Two new passwords or confirmations running (half the places): a
        // third of either waits, a login does not.
        let _hashing = [
            Arc::clone(&hasher.besides_login_permits).acquire_owned().await.unwrap(),
            Arc::clone(&hasher.besides_login_permits).acquire_owned().await.unwrap(),
        ];
        let _running = Arc::clone(&hasher.permits).acquire_many_owned(2).await.unwrap();
        assert!(hasher.hash("a password".into()).await.is_err_and(|e| matches!(e, HashError::Busy)));
        let confirmed = hasher.verify_confirmation("a password".into(), None).await;
        assert!(confirmed.is_err_and(|e| matches!(e, HashError::Busy)));
        assert!(!hasher.verify_login("a password".into(), None).await.unwrap());
        assert_eq!(PasswordHasher::new(1).besides_login_permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_request_that_finds_every_place_busy_is_told_so_not_queued_forever() {
        let hasher = PasswordHasher { wait_for_turn: std::time::Duration::from_millis(50), ..PasswordHasher::new(1) };
        let _taken = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();
        let verdict = hasher.verify_login("a password".into(), None).await;
        assert!(verdict.is_err_and(|e| matches!(e, HashError::Busy)), "no verdict without a check");
        assert!(hasher.hash("a password".into()).await.is_err_and(|e| matches!(e, HashError::Busy)));
        assert_eq!(PasswordHasher::new(1000).permits.available_permits(), MAX_CONCURRENT);
    }
}
