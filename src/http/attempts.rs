//! Rate-limited credential checks (login, password confirmation).
//!
//! An attempt is admitted only while the failures in the window, plus the
//! attempts still being checked, leave room under the limit. A burst of
//! guesses is therefore held to the limit, while correct passwords checked at
//! the same moment merely wait their turn for a few milliseconds instead of
//! being refused for failures they never made.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::problem::ApiError;
use crate::domain::rate_limit::Limit;
use crate::state::AppState;
use crate::store::attempts::{self, Scope};
use crate::store::{write_transaction, DbConnection};

/// How long an attempt waits, in all, for room held by attempts still being
/// checked; it looks again after a pause that doubles up to `MAX_PAUSE`, so
/// that many waiters do not crowd the database.
const MAX_WAIT: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Attempts recorded for one credential check. Settle them: `forget` in the
/// transaction that acts on a right credential, [`Attempt::failed`] on a wrong
/// one. Left unsettled, they count as failures after a minute.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub ids: Vec<Uuid>,
    /// A login's attempt, not a signed-in user's confirmation: the two use
    /// different hashing places (see `PasswordHasher`).
    login: bool,
}

impl Attempt {
    /// Checks the password this attempt was admitted for. When no check can
    /// be made (every hashing place busy), the attempt is withdrawn, counting
    /// neither way, and the caller answers 503.
    pub async fn verify(&self, state: &AppState, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        let checked = match self.login {
            true => state.hasher.verify_login(password, stored).await,
            false => state.hasher.verify_confirmation(password, stored).await,
        };
        match checked {
            Ok(verdict) => Ok(verdict),
            Err(error) => {
                self.withdraw(state).await;
                Err(error.into())
            }
        }
    }

    /// Takes the attempt back: the request ends without acting on it, and
    /// through no fault of the credential.
    pub async fn withdraw(&self, state: &AppState) {
        let ids = self.ids.clone();
        if let Err(e) = state.db_write(move |conn| Ok(attempts::forget(conn, &ids)?)).await {
            tracing::warn!(error = %e.detail, "could not withdraw an attempt");
        }
    }

    pub async fn failed(self, state: &AppState) {
        if let Err(e) = state.db_write(move |conn| Ok(attempts::fail(conn, &self.ids)?)).await {
            // Unsettled attempts turn into failures on their own: fail closed.
            tracing::warn!(error = %e.detail, "could not record a failed attempt now");
        }
    }
}

/// Admits one attempt per `(scope, subject)`, waiting while attempts being
/// checked hold the last places; 429 when the failures alone reach the limit.
pub async fn admit(state: &AppState, subjects: &[(Scope, String)]) -> Result<Attempt, ApiError> {
    let limit = state.failure_limit();
    let login = subjects.iter().any(|(scope, _)| matches!(scope, Scope::LoginEmail | Scope::LoginIp));
    // Inside an audited request's transaction (which holds the SQLite writer,
    // or advisory locks on PostgreSQL, until it ends) waiting would hold up
    // the very attempts it waits for: no room means no.
    let may_wait = super::audit::REQUEST_DB.try_with(|_| ()).is_err();
    let started = std::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let subjects = subjects.to_vec();
        let now = state.clock.now();
        let admission = state
            .db_write(move |conn| {
                let subjects: Vec<(Scope, &str)> = subjects.iter().map(|(scope, s)| (*scope, s.as_str())).collect();
                write_transaction(conn, |conn| begin(conn, limit, now, &subjects))
            })
            .await?;
        match admission {
            Admission::Admitted(ids) => return Ok(Attempt { ids, login }),
            Admission::Busy if may_wait && started.elapsed() < MAX_WAIT => {
                // A little jitter, so that waiters released together spread out.
                let jitter = Duration::from_micros(u64::from(crate::crypto::random_bytes::<1>()[0]) * 40);
                actix_web::rt::time::sleep(pause + jitter).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Admission::Busy => {
                return Err(ApiError::rate_limited(1)
                    .with_detail("too many attempts are being checked at once; try again in a second"))
            }
        }
    }
}

enum Admission {
    Admitted(Vec<Uuid>),
    /// No room now, but only because of attempts still being checked.
    Busy,
}

fn begin(
    conn: &mut DbConnection,
    limit: Limit,
    now: OffsetDateTime,
    subjects: &[(Scope, &str)],
) -> Result<Admission, ApiError> {
    attempts::lock_subjects(conn, subjects)?;
    let mut wait = 0;
    let mut busy = false;
    for (scope, subject) in subjects {
        let window = attempts::in_window(conn, *scope, subject, limit.window_start(now), now)?;
        // Refused once the failures fill the window; only waiting while
        // attempts still being checked hold the last places.
        match limit.check(&window.failures, now) {
            Err(seconds) => wait = wait.max(seconds),
            Ok(()) => busy |= !limit.has_room(window.failures.len() as u64 + window.pending),
        }
    }
    if wait > 0 {
        return Err(ApiError::rate_limited(wait));
    }
    if busy {
        return Ok(Admission::Busy);
    }
    let ids = subjects.iter().map(|(scope, subject)| attempts::record(conn, *scope, subject, now));
    Ok(Admission::Admitted(ids.collect::<Result<_, _>>()?))
}
