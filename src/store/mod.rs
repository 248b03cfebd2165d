//! Persistence: diesel schema, models and queries. Knows SQL, not HTTP.

pub mod attempts;
pub mod audit;
pub mod consents;
pub mod impersonations;
pub mod metrics;
pub mod organizations;
pub mod pool;
pub mod schema;
pub mod sessions;
pub mod sql_types;
pub mod users;

pub use pool::{write_transaction, Backend, DbConnection, Pool};

/// Escapes `%`, `_` and `\` so user input matches literally in `LIKE … ESCAPE '\'`.
pub fn like_literal(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 2);
    for c in input.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether a database error is a unique-constraint violation.
pub fn is_unique_violation(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// Whether a transaction lost to a concurrent one and may simply be tried
/// again: a serialization failure, or a deadlock PostgreSQL broke by aborting
/// this side. (diesel reports no SQLSTATE for deadlocks, only the message,
/// which each connection asks to be English; see `pool`.)
pub fn is_conflict_with_concurrent(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => info.message().starts_with("deadlock detected"),
        _ => false,
    }
}

/// Whether the database could not serve the request right now, through no
/// fault of the request: the connection dropped, a row lock stayed taken past
/// PostgreSQL's `lock_timeout` (English messages, as for deadlocks), or
/// SQLite's writer lock stayed taken (another process, such as a migration)
/// past the busy timeout.
pub fn is_unavailable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            matches!(info.message(), "database is locked" | "database table is locked")
                || info.message().starts_with("canceling statement due to lock timeout")
        }
        _ => false,
    }
}
