//! Gauges for `GET /metrics`, read from the shared database.

use diesel::prelude::*;
use time::OffsetDateTime;

use super::schema::{audit_chain_heads, consents, impersonation_sessions, login_sessions};
use super::sql_types::DbTime;
use super::DbConnection;

pub struct Gauges {
    pub impersonations_active: u64,
    pub logins_active: u64,
    pub consents_active: u64,
    pub request_log_rows: u64,
    pub audit_event_rows: u64,
}

pub fn gauges(conn: &mut DbConnection, now: OffsetDateTime) -> QueryResult<Gauges> {
    let impersonations_active: i64 = impersonation_sessions::table
        .filter(super::impersonations::running_at(DbTime(now)))
        .count()
        .get_result(conn)?;
    let logins_active: i64 = login_sessions::table
        .filter(login_sessions::ended_at.is_null())
        .filter(login_sessions::expires_at.gt(DbTime(now)))
        .count()
        .get_result(conn)?;
    let consents_active: i64 = consents::table
        .filter(super::consents::open_consents())
        .filter(consents::expires_at.gt(DbTime(now)))
        .count()
        .get_result(conn)?;
    // The chain heads hold the row counts: no table scan.
    let chain = |conn: &mut DbConnection, name: &str| -> QueryResult<i64> {
        audit_chain_heads::table.filter(audit_chain_heads::chain.eq(name)).select(audit_chain_heads::seq).first(conn)
    };
    Ok(Gauges {
        impersonations_active: impersonations_active as u64,
        logins_active: logins_active as u64,
        consents_active: consents_active as u64,
        request_log_rows: chain(conn, "request_log")? as u64,
        audit_event_rows: chain(conn, "audit_events")? as u64,
    })
}
