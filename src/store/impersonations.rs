//! Impersonation sessions: what an impersonation token's `sid` names.

use std::collections::HashMap;

use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::organizations::Organization;
use super::schema::{impersonation_sessions as sessions, login_sessions, organizations, users};
use super::sql_types::{DbTime, DbUuid};
use super::users::{self as users_store, User};
use super::DbConnection;
use crate::clock::Clock;
use crate::domain::impersonation::{session_state, whole_seconds, EndReason, SessionStatus};
use crate::domain::types::UserStatus;

/// Sessions nobody ended that still run at `at`.
#[diesel::dsl::auto_type]
pub fn running_at(at: DbTime) -> _ {
    sessions::ended_at.is_null().and(sessions::expires_at.gt(at))
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, treat_none_as_default_value = false)]
pub struct ImpersonationSession {
    pub id: DbUuid,
    pub impersonator_id: DbUuid,
    pub target_id: DbUuid,
    pub consent_id: DbUuid,
    pub login_session_id: DbUuid,
    pub reason: Option<String>,
    pub started_at: DbTime,
    pub expires_at: DbTime,
    pub ended_at: Option<DbTime>,
    pub end_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ImpersonationSession {
    /// Status and (possibly implied) end as clients see them at `now`.
    pub fn state(&self, now: OffsetDateTime) -> (SessionStatus, Option<(OffsetDateTime, EndReason)>) {
        let ended = match (self.ended_at, self.end_reason.as_deref().and_then(EndReason::parse)) {
            (Some(at), Some(reason)) => Some((*at, reason)),
            // A stored end without a known reason cannot be shown as running.
            (Some(at), None) => Some((*at, EndReason::Stopped)),
            (None, _) => None,
        };
        session_state(ended, *self.expires_at, now)
    }
}

pub fn insert(conn: &mut DbConnection, session: &ImpersonationSession) -> QueryResult<()> {
    diesel::insert_into(sessions::table).values(session.clone()).execute(conn).map(|_| ())
}

pub fn find(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<ImpersonationSession>> {
    sessions::table.find(DbUuid(id)).select(ImpersonationSession::as_select()).first(conn).optional()
}

/// Whether the session is live, and kept so until the caller's transaction
/// ends. On PostgreSQL it holds the rows every ending locks first (its two
/// users, `users::hold_unchanged`, which other sessions of the same people
/// may hold too), then locks the session row itself: a revocation,
/// suspension or stop then waits for the caller's commit, or the caller sees
/// it ended. The requests of one session thus take turns (as they would at
/// the audit chain anyway), and one that ends its own session never meets
/// another holding the row. On SQLite the single writer serializes all this.
/// `people` are the impersonator and the target, as the session's token names them.
pub fn hold_live(conn: &mut DbConnection, id: Uuid, people: [Uuid; 2], now: OffsetDateTime) -> QueryResult<bool> {
    if let DbConnection::Postgresql(pg) = conn {
        // The session's requests queue here, before holding any user's row:
        // one waiting for the session's row while holding its users' rows
        // would keep the running one from changing those users (a cycle
        // PostgreSQL breaks by failing one of them). Nothing else takes this
        // lock, so it closes no cycle with enders.
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind::<diesel::sql_types::Integer, _>(SESSION_QUEUE_LOCK_CLASS)
            .bind::<diesel::sql_types::Text, _>(id.to_string())
            .execute(pg)?;
    }
    users_store::hold_unchanged(conn, &people)?;
    lock(conn, id)?;
    // The token's names must still be the session's: checked again here.
    let live = find_live(conn, id, now)?;
    Ok(live.is_some_and(|(_, target, _, impersonator)| [*impersonator.id, *target.id] == people))
}

/// First key of the advisory locks that queue a session's requests (the
/// second is the session id's hash); the two-key space is ours alone.
const SESSION_QUEUE_LOCK_CLASS: i32 = 0x6163_7473;

/// Locks one session's row (PostgreSQL) until the transaction ends: it waits
/// for the session's requests in flight, which hold it (`hold_live`).
pub fn lock(conn: &mut DbConnection, id: Uuid) -> QueryResult<()> {
    if let DbConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT id FROM impersonation_sessions WHERE id = $1 FOR UPDATE")
            .bind::<diesel::sql_types::Uuid, _>(id)
            .execute(pg)?;
    }
    Ok(())
}

/// Whether a session is still open, holding its row shared until the
/// transaction ends (PostgreSQL): every ending updates that row, so an ender
/// waits for the holder, while holders do not wait for each other. For a
/// request that only reads: it is then ordered against the session's end
/// without queueing behind the session's other reads.
pub fn share_if_open(conn: &mut DbConnection, id: Uuid, now: OffsetDateTime) -> QueryResult<bool> {
    let open = sessions::table.filter(sessions::id.eq(DbUuid(id))).filter(running_at(DbTime(now))).select(sessions::id);
    let found = match conn {
        DbConnection::Postgresql(pg) => open.for_share().first::<DbUuid>(pg).optional()?,
        DbConnection::Sqlite(sqlite) => open.first::<DbUuid>(sqlite).optional()?,
    };
    Ok(found.is_some())
}

/// A running session with its target (and organization) and its impersonator,
/// provided both users are active and the impersonator's login session is open.
pub fn find_live(
    conn: &mut DbConnection,
    id: Uuid,
    now: OffsetDateTime,
) -> QueryResult<Option<(ImpersonationSession, User, Organization, User)>> {
    let Some((session, target, org)) = sessions::table
        .inner_join(users::table.on(users::id.eq(sessions::target_id)))
        .inner_join(organizations::table.on(organizations::id.eq(users::organization_id)))
        .filter(sessions::id.eq(DbUuid(id)))
        .filter(running_at(DbTime(now)))
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .select((ImpersonationSession::as_select(), User::as_select(), Organization::as_select()))
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let impersonator = login_sessions::table
        .inner_join(users::table)
        .filter(login_sessions::id.eq(session.login_session_id))
        .filter(login_sessions::ended_at.is_null())
        .filter(users::id.eq(session.impersonator_id))
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .select(User::as_select())
        .first(conn)
        .optional()?;
    Ok(impersonator.map(|impersonator| (session, target, org, impersonator)))
}

#[derive(Default)]
pub struct ListFilter {
    pub impersonator_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub status: Option<SessionStatus>,
    pub before_id: Option<Uuid>,
    pub limit: i64,
}

/// Newest first.
pub fn list(
    conn: &mut DbConnection,
    filter: ListFilter,
    now: OffsetDateTime,
) -> QueryResult<Vec<ImpersonationSession>> {
    let mut query = sessions::table.select(ImpersonationSession::as_select()).into_boxed();
    if let Some(id) = filter.impersonator_id {
        query = query.filter(sessions::impersonator_id.eq(DbUuid(id)));
    }
    if let Some(id) = filter.target_id {
        query = query.filter(sessions::target_id.eq(DbUuid(id)));
    }
    let reasons = |status: SessionStatus| -> Vec<&'static str> {
        EndReason::ALL.into_iter().filter(|r| r.status() == status).map(EndReason::as_str).collect()
    };
    query = match filter.status {
        None => query,
        Some(SessionStatus::Ongoing) => query.filter(running_at(DbTime(now))),
        Some(SessionStatus::Expired) => query.filter(
            sessions::ended_at
                .is_null()
                .and(sessions::expires_at.le(DbTime(now)))
                .or(sessions::end_reason.eq(EndReason::Expired.as_str())),
        ),
        Some(status) => query.filter(sessions::end_reason.eq_any(reasons(status))),
    };
    if let Some(before) = filter.before_id {
        query = query.filter(sessions::id.lt(DbUuid(before)));
    }
    query.order(sessions::id.desc()).limit(filter.limit).load(conn)
}

/// The users named by sessions, by id (for views).
pub fn users_of(conn: &mut DbConnection, sessions: &[ImpersonationSession]) -> QueryResult<HashMap<Uuid, User>> {
    let mut ids: Vec<DbUuid> = sessions.iter().flat_map(|s| [s.impersonator_id, s.target_id]).collect();
    ids.sort();
    ids.dedup();
    let found = users::table.filter(users::id.eq_any(ids)).select(User::as_select()).load(conn)?;
    Ok(found.into_iter().map(|u| (*u.id, u)).collect())
}

/// Which running sessions to end.
pub enum Running {
    Id(Uuid),
    Target(Uuid),
    Impersonator(Uuid),
    LoginSession(Uuid),
    /// Started from any login session of this impersonator except one.
    ImpersonatorExceptLogin {
        impersonator: Uuid,
        keep: Uuid,
    },
}

/// Ends the running sessions that match any selection, each with the reason of
/// the first selection it matches; returns them with their reasons. Use
/// `audit::end_sessions`, which also records the events.
/// `now` selects what is still running; with a `clock`, the end is timed
/// again once the sessions' rows are held (PostgreSQL), after the reads of
/// them in flight. Returns the time recorded too.
pub fn end(
    conn: &mut DbConnection,
    selections: &[(Running, EndReason)],
    now: OffsetDateTime,
    clock: Option<&Clock>,
) -> QueryResult<(Vec<(ImpersonationSession, EndReason)>, OffsetDateTime)> {
    let mut matched = std::collections::BTreeMap::new();
    for (which, reason) in selections {
        let running =
            sessions::table.filter(running_at(DbTime(now))).select(ImpersonationSession::as_select()).into_boxed();
        let running = match *which {
            Running::Id(id) => running.filter(sessions::id.eq(DbUuid(id))),
            Running::Target(id) => running.filter(sessions::target_id.eq(DbUuid(id))),
            Running::Impersonator(id) => running.filter(sessions::impersonator_id.eq(DbUuid(id))),
            Running::LoginSession(id) => running.filter(sessions::login_session_id.eq(DbUuid(id))),
            Running::ImpersonatorExceptLogin { impersonator, keep } => running
                .filter(sessions::impersonator_id.eq(DbUuid(impersonator)))
                .filter(sessions::login_session_id.ne(DbUuid(keep))),
        };
        for session in running.load(conn)? {
            matched.entry(*session.id).or_insert((session, *reason));
        }
    }
    // Row locks in id order, as in every statement that ends several sessions:
    // two transactions never wait for each other in a circle.
    if let DbConnection::Postgresql(pg) = conn {
        let ids: Vec<Uuid> = matched.keys().copied().collect();
        if !ids.is_empty() {
            diesel::sql_query("SELECT id FROM impersonation_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
                .execute(pg)?;
        }
    }
    let now = clock.map_or(now, Clock::now).max(now);
    let mut ended = Vec::new();
    for (mut session, reason) in matched.into_values() {
        // A session that ran out while its end waited ended by then.
        let ended_at = now.min(*session.expires_at);
        // Only if still open: when another transaction ended it meanwhile
        // (PostgreSQL re-checks the condition after waiting for its row
        // lock), it is not ours to report.
        let updated =
            diesel::update(sessions::table.filter(sessions::id.eq(session.id)).filter(sessions::ended_at.is_null()))
                .set((sessions::ended_at.eq(Some(DbTime(ended_at))), sessions::end_reason.eq(Some(reason.as_str()))))
                .execute(conn)?;
        if updated == 1 {
            session.ended_at = Some(DbTime(ended_at));
            session.end_reason = Some(reason.as_str().to_owned());
            ended.push((session, reason));
        }
    }
    Ok((ended, now))
}

/// Sessions past their expiry that nobody ended.
pub fn expired_unended(conn: &mut DbConnection, now: OffsetDateTime) -> QueryResult<Vec<ImpersonationSession>> {
    sessions::table
        .filter(sessions::ended_at.is_null())
        .filter(sessions::expires_at.le(DbTime(now)))
        .order(sessions::id)
        .select(ImpersonationSession::as_select())
        .load(conn)
}

/// Records that a session ended by reaching its expiry, at that time.
/// Returns false when something else ended it first.
pub fn mark_expired(conn: &mut DbConnection, id: Uuid) -> QueryResult<bool> {
    diesel::update(sessions::table.filter(sessions::id.eq(DbUuid(id))).filter(sessions::ended_at.is_null()))
        .set((
            sessions::ended_at.eq(sessions::expires_at.nullable()),
            sessions::end_reason.eq(Some(EndReason::Expired.as_str())),
        ))
        .execute(conn)
        .map(|n| n == 1)
}

/// A newer, possibly shorter consent bounds the target's running sessions.
pub fn clamp_expiry_for_target(
    conn: &mut DbConnection,
    target: Uuid,
    latest_end: OffsetDateTime,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    diesel::update(
        sessions::table.filter(sessions::target_id.eq(DbUuid(target))).filter(running_at(DbTime(latest_end.max(now)))),
    )
    // Whole seconds, like every expiry handed out (JWT `exp` has no fractions).
    .set(sessions::expires_at.eq(DbTime(whole_seconds(latest_end))))
    .execute(conn)
}
