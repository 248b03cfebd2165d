//! Consents: at most one open per user; granting again supersedes it.

use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::schema::consents;
use super::sql_types::{DbTime, DbUuid};
use super::DbConnection;
use crate::domain::consent::DurationHours;
use crate::domain::impersonation::ConsentState;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consents, treat_none_as_default_value = false)]
pub struct Consent {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub duration_hours: i32,
    pub granted_at: DbTime,
    pub expires_at: DbTime,
    pub revoked_at: Option<DbTime>,
    pub superseded_at: Option<DbTime>,
}

impl Consent {
    pub fn state(&self) -> ConsentState {
        ConsentState {
            expires_at: *self.expires_at,
            revoked: self.revoked_at.is_some() || self.superseded_at.is_some(),
        }
    }

    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.state().is_active(now)
    }
}

/// Consents neither revoked nor superseded (they may have expired).
#[diesel::dsl::auto_type]
pub fn open_consents() -> _ {
    consents::revoked_at.is_null().and(consents::superseded_at.is_null())
}

/// The user's open consent (which may have expired), else the most recent one.
pub fn latest(conn: &mut DbConnection, user_id: Uuid) -> QueryResult<Option<Consent>> {
    // The open one, when there is one, whatever the clocks of the nodes that
    // stamped the others said.
    let open_first = open_consents().desc();
    consents::table
        .filter(consents::user_id.eq(DbUuid(user_id)))
        .order((open_first, consents::granted_at.desc(), consents::id.desc()))
        .select(Consent::as_select())
        .first(conn)
        .optional()
}

/// The open (neither revoked nor superseded) consent, which may have expired.
pub fn open(conn: &mut DbConnection, user_id: Uuid) -> QueryResult<Option<Consent>> {
    consents::table
        .filter(consents::user_id.eq(DbUuid(user_id)))
        .filter(open_consents())
        .select(Consent::as_select())
        .first(conn)
        .optional()
}

/// Active consents of several users (for list pages).
pub fn active_for(conn: &mut DbConnection, user_ids: &[Uuid], now: OffsetDateTime) -> QueryResult<Vec<Consent>> {
    consents::table
        .filter(consents::user_id.eq_any(user_ids.iter().copied().map(DbUuid)))
        .filter(open_consents())
        .filter(consents::expires_at.gt(DbTime(now)))
        .select(Consent::as_select())
        .load(conn)
}

/// Supersedes the open consent (if any) and records a new one. Call inside a
/// write transaction holding the user's lock.
pub fn grant(
    conn: &mut DbConnection,
    user_id: Uuid,
    hours: DurationHours,
    now: OffsetDateTime,
) -> QueryResult<Consent> {
    diesel::update(consents::table.filter(consents::user_id.eq(DbUuid(user_id))).filter(open_consents()))
        .set(consents::superseded_at.eq(Some(DbTime(now))))
        .execute(conn)?;
    let consent = Consent {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        duration_hours: hours.hours(),
        granted_at: DbTime(now),
        expires_at: DbTime(now + hours.duration()),
        revoked_at: None,
        superseded_at: None,
    };
    diesel::insert_into(consents::table).values(consent.clone()).execute(conn)?;
    Ok(consent)
}

/// Revokes the open consent; returns it if there was one.
pub fn revoke(conn: &mut DbConnection, user_id: Uuid, now: OffsetDateTime) -> QueryResult<Option<Consent>> {
    let Some(mut consent) = open(conn, user_id)? else { return Ok(None) };
    diesel::update(consents::table.find(consent.id)).set(consents::revoked_at.eq(Some(DbTime(now)))).execute(conn)?;
    consent.revoked_at = Some(DbTime(now));
    Ok(Some(consent))
}
