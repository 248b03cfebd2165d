//! Credential attempts counted in the database, so limits hold across nodes.
//! An attempt is recorded as *pending* before it is checked, so that
//! concurrent attempts see each other and a burst cannot slip past the limit;
//! a wrong credential then turns it into a failure, a right one removes it.
//! One never settled (a process that died mid-check) counts as a failure.

use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::schema::auth_attempts;
use super::sql_types::{DbTime, DbUuid};
use super::DbConnection;

/// What is being counted; the subject is an email, an IP or a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    LoginEmail,
    LoginIp,
    /// A logged-in user confirming their own password: to start an
    /// impersonation (or token exchange), or to change it. One count for
    /// both, so that a stolen login token buys no extra guesses per action.
    Reauthentication,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::LoginEmail => "login_email",
            Scope::LoginIp => "login_ip",
            Scope::Reauthentication => "reauthentication",
        }
    }
}

/// How long a check may take before its pending attempt counts as failed.
pub const SETTLE_WITHIN: time::Duration = time::Duration::minutes(1);

/// Records a pending attempt.
pub fn record(conn: &mut DbConnection, scope: Scope, subject: &str, now: OffsetDateTime) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    diesel::insert_into(auth_attempts::table)
        .values((
            auth_attempts::id.eq(DbUuid(id)),
            auth_attempts::scope.eq(scope.as_str()),
            auth_attempts::subject.eq(subject),
            auth_attempts::attempted_at.eq(DbTime(now)),
            auth_attempts::pending.eq(true),
        ))
        .execute(conn)?;
    Ok(id)
}

/// The attempts of one subject within a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// When the failures were, oldest first.
    pub failures: Vec<OffsetDateTime>,
    /// Still being checked.
    pub pending: u64,
}

pub fn in_window(
    conn: &mut DbConnection,
    scope: Scope,
    subject: &str,
    since: OffsetDateTime,
    now: OffsetDateTime,
) -> QueryResult<Window> {
    let rows: Vec<(DbTime, bool)> = auth_attempts::table
        .filter(auth_attempts::scope.eq(scope.as_str()))
        .filter(auth_attempts::subject.eq(subject))
        .filter(auth_attempts::attempted_at.gt(DbTime(since)))
        .select((auth_attempts::attempted_at, auth_attempts::pending))
        .load(conn)?;
    let mut window = Window { failures: Vec::new(), pending: 0 };
    for (at, pending) in rows {
        let at: OffsetDateTime = at.into();
        if pending && at > now - SETTLE_WITHIN {
            window.pending += 1;
        } else {
            window.failures.push(at);
        }
    }
    window.failures.sort();
    Ok(window)
}

/// The credential was wrong: the pending attempts become failures.
pub fn fail(conn: &mut DbConnection, ids: &[Uuid]) -> QueryResult<()> {
    diesel::update(auth_attempts::table.filter(auth_attempts::id.eq_any(ids.iter().copied().map(DbUuid))))
        .set(auth_attempts::pending.eq(false))
        .execute(conn)
        .map(|_| ())
}

/// Serializes admission per subject on PostgreSQL for the rest of the
/// transaction (SQLite's write transactions are serial already), so two
/// attempts cannot both take the last free place.
pub fn lock_subjects(conn: &mut DbConnection, subjects: &[(Scope, &str)]) -> QueryResult<()> {
    if let DbConnection::Postgresql(_) = conn {
        let mut keys: Vec<String> =
            subjects.iter().map(|(scope, subject)| format!("{}:{subject}", scope.as_str())).collect();
        keys.sort();
        for key in keys {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<diesel::sql_types::Text, _>(key)
                .execute(conn)?;
        }
    }
    Ok(())
}

pub fn forget(conn: &mut DbConnection, ids: &[Uuid]) -> QueryResult<()> {
    diesel::delete(auth_attempts::table.filter(auth_attempts::id.eq_any(ids.iter().copied().map(DbUuid))))
        .execute(conn)
        .map(|_| ())
}

pub fn clear(conn: &mut DbConnection, scope: Scope, subject: &str) -> QueryResult<()> {
    diesel::delete(
        auth_attempts::table.filter(auth_attempts::scope.eq(scope.as_str())).filter(auth_attempts::subject.eq(subject)),
    )
    .execute(conn)
    .map(|_| ())
}

/// Drops attempts older than every window (housekeeping, run now and then).
pub fn prune(conn: &mut DbConnection, before: OffsetDateTime) -> QueryResult<usize> {
    diesel::delete(auth_attempts::table.filter(auth_attempts::attempted_at.lt(DbTime(before)))).execute(conn)
}
