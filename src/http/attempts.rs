//! Rate-limited credential checks (login, password confirmation).

use time::OffsetDateTime;
use uuid::Uuid;

use super::problem::ApiError;
use crate::domain::rate_limit::Limit;
use crate::store::attempts::{self, Scope};
use crate::store::DbConnection;

/// Records one attempt per `(scope, subject)` and refuses with 429 when any of
/// them is over the limit (the refused attempt is then not counted). Returns
/// the ids of the recorded attempts, to forget them if the credential was right.
pub fn begin(
    conn: &mut DbConnection,
    limit: Limit,
    now: OffsetDateTime,
    subjects: &[(Scope, &str)],
) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::with_capacity(subjects.len());
    for (scope, subject) in subjects {
        ids.push(attempts::record(conn, *scope, subject, now)?);
    }
    let mut wait = 0;
    for (scope, subject) in subjects {
        let (count, oldest) = attempts::in_window(conn, *scope, subject, limit.window_start(now))?;
        if let Err(seconds) = limit.check(count, oldest, now) {
            wait = wait.max(seconds);
        }
    }
    if wait > 0 {
        attempts::forget(conn, &ids)?;
        return Err(ApiError::rate_limited(wait));
    }
    Ok(ids)
}
