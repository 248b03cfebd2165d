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
