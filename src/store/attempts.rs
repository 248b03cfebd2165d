//! Credential attempts counted in the database, so limits hold across nodes.
//! An attempt is recorded *before* it is checked: concurrent attempts then see
//! each other and a burst cannot slip past the limit.

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
    PasswordChange,
    /// An impersonator confirming their password to start a session.
    Reauthentication,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::LoginEmail => "login_email",
            Scope::LoginIp => "login_ip",
            Scope::PasswordChange => "password_change",
            Scope::Reauthentication => "reauthentication",
        }
    }
}

pub fn record(conn: &mut DbConnection, scope: Scope, subject: &str, now: OffsetDateTime) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    diesel::insert_into(auth_attempts::table)
        .values((
            auth_attempts::id.eq(DbUuid(id)),
            auth_attempts::scope.eq(scope.as_str()),
            auth_attempts::subject.eq(subject),
            auth_attempts::attempted_at.eq(DbTime(now)),
        ))
        .execute(conn)?;
    Ok(id)
}

/// How many attempts fall in the window, and when the oldest of them was.
pub fn in_window(
    conn: &mut DbConnection,
    scope: Scope,
    subject: &str,
    since: OffsetDateTime,
) -> QueryResult<(u64, Option<OffsetDateTime>)> {
    let rows = auth_attempts::table
        .filter(auth_attempts::scope.eq(scope.as_str()))
        .filter(auth_attempts::subject.eq(subject))
        .filter(auth_attempts::attempted_at.gt(DbTime(since)));
    let count: i64 = rows.count().get_result(conn)?;
    let oldest = rows
        .select(auth_attempts::attempted_at)
        .order(auth_attempts::attempted_at.asc())
        .first::<DbTime>(conn)
        .optional()?;
    Ok((count as u64, oldest.map(Into::into)))
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
