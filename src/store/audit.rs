//! The audit trail: request log rows and lifecycle events, each table one hash
//! chain (see `domain::chain`). Appending takes the chain head's row lock
//! (an UPDATE), so concurrent writers queue up and never fork a chain; the
//! lock is held to the end of the caller's transaction.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::consents;
use super::impersonations::{self, ImpersonationSession, Running};
use super::schema::{audit_chain_heads as heads, audit_events as events, impersonation_sessions, request_log};
use super::sessions::{self, LoginEnd};
use super::sql_types::{sqlite_time_text, DbTime, DbUuid};
use super::DbConnection;
use crate::clock::Clock;
use crate::domain::chain::{self, Stored};
use crate::domain::events::{Cause, Event, EventKind};
use crate::domain::impersonation::{EndReason, StandingChange};

/// The two hash chains: the request log and the audit events are linked separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    RequestLog,
    AuditEvents,
}

impl Chain {
    pub fn name(self) -> &'static str {
        match self {
            Chain::RequestLog => "request_log",
            Chain::AuditEvents => "audit_events",
        }
    }
}

/// Reserves the next link: returns its `seq` and the `prev_hash` to chain to.
fn reserve(conn: &mut DbConnection, chain: Chain) -> QueryResult<(i64, String)> {
    diesel::update(heads::table.filter(heads::chain.eq(chain.name())))
        .set(heads::seq.eq(heads::seq + 1))
        .execute(conn)?;
    heads::table.filter(heads::chain.eq(chain.name())).select((heads::seq, heads::hash)).first(conn)
}

fn advance(conn: &mut DbConnection, chain: Chain, hash: &str) -> QueryResult<()> {
    diesel::update(heads::table.filter(heads::chain.eq(chain.name())))
        .set(heads::hash.eq(hash))
        .execute(conn)
        .map(|_| ())
}

/// Instants in hashed rows: one text form for both
/// backends (the one SQLite stores), so a chain verifies wherever it is read.
fn canonical_time_text(t: OffsetDateTime) -> String {
    sqlite_time_text(t)
}

// ---- request log -------------------------------------------------------------

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = request_log, treat_none_as_default_value = false)]
pub struct RequestLogRow {
    pub id: DbUuid,
    pub seq: i64,
    pub session_id: DbUuid,
    pub at: DbTime,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: i32,
    pub duration_ms: i32,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub body: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl RequestLogRow {
    /// The bytes the hash covers: every column but the hashes, in a fixed order.
    pub fn canonical(&self) -> Vec<u8> {
        json!([
            self.seq,
            self.id.0,
            self.session_id.0,
            canonical_time_text(*self.at),
            self.method,
            self.path,
            self.query,
            self.status,
            self.duration_ms,
            self.ip,
            self.user_agent,
            self.body
        ])
        .to_string()
        .into_bytes()
    }
}

/// A request, already redacted, to append to the log.
#[derive(Clone)]
pub struct RequestEntry {
    pub session_id: Uuid,
    pub at: OffsetDateTime,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub duration_ms: u64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub body: Option<String>,
}

pub fn append_request(conn: &mut DbConnection, entry: RequestEntry) -> QueryResult<RequestLogRow> {
    let (seq, prev_hash) = reserve(conn, Chain::RequestLog)?;
    let mut row = RequestLogRow {
        id: DbUuid(Uuid::now_v7()),
        seq,
        session_id: DbUuid(entry.session_id),
        at: DbTime(entry.at),
        method: entry.method,
        path: entry.path,
        query: entry.query,
        status: i32::from(entry.status),
        duration_ms: i32::try_from(entry.duration_ms).unwrap_or(i32::MAX),
        ip: entry.ip,
        user_agent: entry.user_agent,
        body: entry.body,
        prev_hash,
        hash: String::new(),
    };
    row.hash = chain::link(&row.prev_hash, &row.canonical());
    diesel::insert_into(request_log::table).values(row.clone()).execute(conn)?;
    advance(conn, Chain::RequestLog, &row.hash)?;
    Ok(row)
}

/// A session's requests, newest first.
pub fn requests_of_session(
    conn: &mut DbConnection,
    session_id: Uuid,
    before_seq: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<RequestLogRow>> {
    let mut query = request_log::table
        .filter(request_log::session_id.eq(DbUuid(session_id)))
        .select(RequestLogRow::as_select())
        .into_boxed();
    if let Some(before) = before_seq {
        query = query.filter(request_log::seq.lt(before));
    }
    query.order(request_log::seq.desc()).limit(limit).load(conn)
}

pub fn request_counts(conn: &mut DbConnection, session_ids: &[Uuid]) -> QueryResult<HashMap<Uuid, i64>> {
    let counts: Vec<(DbUuid, i64)> = request_log::table
        .filter(request_log::session_id.eq_any(session_ids.iter().copied().map(DbUuid)))
        .group_by(request_log::session_id)
        .select((request_log::session_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(counts.into_iter().map(|(id, n)| (id.0, n)).collect())
}

// ---- events ----------------------------------------------------------------

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct EventRow {
    pub id: DbUuid,
    pub seq: i64,
    pub kind: String,
    pub at: DbTime,
    pub actor_id: Option<DbUuid>,
    pub subject_id: Option<DbUuid>,
    pub session_id: Option<DbUuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl EventRow {
    pub fn canonical(&self) -> Vec<u8> {
        json!([
            self.seq,
            self.id.0,
            self.kind,
            canonical_time_text(*self.at),
            self.actor_id.map(|i| i.0),
            self.subject_id.map(|i| i.0),
            self.session_id.map(|i| i.0),
            self.ip,
            self.user_agent,
            self.detail
        ])
        .to_string()
        .into_bytes()
    }
}

/// Who caused an event, from where, and when.
#[derive(Clone)]
pub struct EventContext {
    /// The user who really acted (the impersonator, when impersonating); `None` for the service itself.
    pub actor_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub at: OffsetDateTime,
    /// To time an ending again once the sessions' rows are held: reads of a
    /// session that slipped in before then come before its end.
    pub clock: Option<Clock>,
}

impl EventContext {
    /// Events the service causes by itself (expiry), at a given time.
    pub fn service(at: OffsetDateTime) -> Self {
        Self { actor_id: None, ip: None, user_agent: None, at, clock: None }
    }
}

pub fn record(
    conn: &mut DbConnection,
    ctx: &EventContext,
    event: &Event,
    subject_id: Uuid,
    session_id: Option<Uuid>,
) -> QueryResult<EventRow> {
    let (seq, prev_hash) = reserve(conn, Chain::AuditEvents)?;
    let mut row = EventRow {
        id: DbUuid(Uuid::now_v7()),
        seq,
        kind: event.kind().as_str().to_owned(),
        at: DbTime(ctx.at),
        actor_id: ctx.actor_id.map(DbUuid),
        subject_id: Some(DbUuid(subject_id)),
        session_id: session_id.map(DbUuid),
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        detail: event.detail().to_string(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = chain::link(&row.prev_hash, &row.canonical());
    diesel::insert_into(events::table).values(row.clone()).execute(conn)?;
    advance(conn, Chain::AuditEvents, &row.hash)?;
    Ok(row)
}

/// Ends the running sessions that match and records an event for each:
/// `impersonation_stopped` when the impersonator stopped it, otherwise
/// `impersonation_ended`.
pub fn end_sessions(
    conn: &mut DbConnection,
    which: Running,
    reason: EndReason,
    ctx: &EventContext,
) -> QueryResult<Vec<ImpersonationSession>> {
    end_sessions_all(conn, vec![(which, reason)], Cause::Reason, ctx)
}

/// Like `end_sessions` for several selections at once. All session rows are
/// updated before any event is recorded: one lock order everywhere (users,
/// then sessions in id order, then the events chain head; a stop and the
/// expiry sweep start at the sessions), so transactions cannot deadlock.
pub fn end_sessions_all(
    conn: &mut DbConnection,
    selections: Vec<(Running, EndReason)>,
    cause: Cause,
    ctx: &EventContext,
) -> QueryResult<Vec<ImpersonationSession>> {
    let (ended, at) = impersonations::end(conn, &selections, ctx.at, ctx.clock.as_ref())?;
    let ctx = EventContext { at, ..ctx.clone() };
    for (session, reason) in &ended {
        record_end(conn, &ctx, session, *reason, cause)?;
    }
    Ok(ended.into_iter().map(|(s, _)| s).collect())
}

/// The event of one session's end.
fn record_end(
    conn: &mut DbConnection,
    ctx: &EventContext,
    session: &ImpersonationSession,
    end_reason: EndReason,
    cause: Cause,
) -> QueryResult<()> {
    let event = Event::ImpersonationEnded { impersonator_id: *session.impersonator_id, end_reason, cause };
    record(conn, ctx, &event, *session.target_id, Some(*session.id)).map(|_| ())
}

/// Ends every session a user takes part in, login and impersonation, on
/// either side, as `change` requires.
pub fn end_user_sessions(
    conn: &mut DbConnection,
    user_id: Uuid,
    change: StandingChange,
    ctx: &EventContext,
) -> QueryResult<()> {
    let [as_target, as_impersonator] = change.end_reasons();
    let (login_end, cause) = match change {
        StandingChange::Suspended => (LoginEnd::UserSuspended, Cause::Reason),
        StandingChange::Deleted => (LoginEnd::UserDeleted, Cause::Reason),
        StandingChange::RoleChanged => (LoginEnd::RoleChanged, Cause::RoleChanged),
    };
    let both_sides = vec![(Running::Target(user_id), as_target), (Running::Impersonator(user_id), as_impersonator)];
    end_sessions_all(conn, both_sides, cause, ctx)?;
    sessions::end_all_for_user(conn, user_id, None, login_end, ctx.at)?;
    Ok(())
}

/// Revokes a user's consent and ends every running impersonation of them,
/// with the events. Rows change first, events come last (the lock order of
/// `end_sessions_all`). Returns the sessions ended.
pub fn revoke_consent(conn: &mut DbConnection, user_id: Uuid, ctx: &EventContext) -> QueryResult<usize> {
    let revoked = consents::revoke(conn, user_id, ctx.at)?;
    let revoking = [(Running::Target(user_id), EndReason::ConsentRevoked)];
    let (ended, at) = impersonations::end(conn, &revoking, ctx.at, ctx.clock.as_ref())?;
    let ctx = &EventContext { at, ..ctx.clone() };
    if let Some(consent) = revoked {
        record(conn, ctx, &Event::ConsentRevoked { granted_at: *consent.granted_at }, user_id, None)?;
    }
    for (session, reason) in &ended {
        record_end(conn, ctx, session, *reason, Cause::Reason)?;
    }
    Ok(ended.len())
}

/// Marks sessions past their expiry as ended (`expired`), with their events.
pub fn end_expired(conn: &mut DbConnection, now: OffsetDateTime) -> QueryResult<usize> {
    let mut expired = Vec::new();
    for session in impersonations::expired_unended(conn, now)? {
        if impersonations::mark_expired(conn, *session.id)? {
            expired.push(session);
        }
    }
    for session in &expired {
        let ctx = EventContext::service(*session.expires_at);
        record_end(conn, &ctx, session, EndReason::Expired, Cause::Reason)?;
    }
    Ok(expired.len())
}

#[derive(Default)]
pub struct EventFilter {
    /// As actor or as subject.
    pub user_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub kind: Option<EventKind>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub fn list_events(conn: &mut DbConnection, filter: EventFilter) -> QueryResult<Vec<EventRow>> {
    let mut query = events::table.select(EventRow::as_select()).into_boxed();
    if let Some(user) = filter.user_id {
        // Also every event of a session the user took part in: an expiry has
        // no actor, and a consent revocation names only the target.
        let their_sessions = impersonation_sessions::table
            .filter(
                impersonation_sessions::impersonator_id
                    .eq(DbUuid(user))
                    .or(impersonation_sessions::target_id.eq(DbUuid(user))),
            )
            .select(impersonation_sessions::id.nullable());
        query = query.filter(
            events::actor_id
                .eq(Some(DbUuid(user)))
                .or(events::subject_id.eq(Some(DbUuid(user))))
                .or(events::session_id.eq_any(their_sessions)),
        );
    }
    if let Some(session) = filter.session_id {
        query = query.filter(events::session_id.eq(Some(DbUuid(session))));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(events::kind.eq(kind.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(events::at.ge(DbTime(from)));
    }
    if let Some(to) = filter.to {
        query = query.filter(events::at.lt(DbTime(to)));
    }
    if let Some(before) = filter.before_seq {
        query = query.filter(events::seq.lt(before));
    }
    query.order(events::seq.desc()).limit(filter.limit).load(conn)
}

// ---- verification -----------------------------------------------------------

/// The result of checking the audit hash chains.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "ok": false, "checked": 1287, "first_bad_id": "0193a5d1-2222-7333-8444-955566667777",
    "chains": [
        {"chain": "request_log", "ok": false, "checked": 1043, "first_bad_id": "0193a5d1-2222-7333-8444-955566667777", "problem": "a row does not match its hash or does not follow its predecessor"},
        {"chain": "audit_events", "ok": true, "checked": 244, "first_bad_id": null, "problem": null}
    ]
}))]
pub struct VerifyReport {
    /// Whether every chain is intact.
    pub ok: bool,
    /// Rows checked, over all chains.
    pub checked: u64,
    /// The first row whose link does not hold (request log first, then events).
    #[schema(required = true)]
    pub first_bad_id: Option<Uuid>,
    /// One report per chain: the request log and the events are chained separately.
    pub chains: Vec<ChainReport>,
}

impl VerifyReport {
    fn of(chains: Vec<ChainReport>) -> Self {
        Self {
            ok: chains.iter().all(|c| c.ok),
            checked: chains.iter().map(|c| c.checked).sum(),
            first_bad_id: chains.iter().find_map(|c| c.first_bad_id),
            chains,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub chain: Chain,
    pub ok: bool,
    pub checked: u64,
    #[schema(required = true)]
    pub first_bad_id: Option<Uuid>,
    /// Why the chain is broken, when it is.
    #[schema(required = true)]
    pub problem: Option<String>,
}

const BATCH: i64 = 1000;

/// Verifies one chain up to its head as read first: rows appended while the
/// check runs are not part of it, and only one batch is held in memory.
///
/// `outsider` finds a row that is no link of the chain at all (a `seq` at or
/// below zero, or beyond the head as read in the same statement): inserted
/// behind the service's back, it would otherwise be shown without being checked.
fn verify_chain<R, F, C, O>(
    conn: &mut DbConnection,
    chain: Chain,
    mut load: F,
    stored: C,
    outsider: O,
) -> QueryResult<ChainReport>
where
    F: FnMut(&mut DbConnection, i64, i64) -> QueryResult<Vec<R>>,
    C: Fn(&R) -> Stored<Uuid>,
    O: FnOnce(&mut DbConnection) -> QueryResult<Option<DbUuid>>,
{
    // The head and the rows up to it are written in one transaction, so every
    // row up to this head is committed and visible.
    let (head_seq, head_hash): (i64, String) =
        heads::table.filter(heads::chain.eq(chain.name())).select((heads::seq, heads::hash)).first(conn)?;
    let mut verifier = chain::Verifier::default();
    let mut after = 0;
    'batches: loop {
        let batch = load(conn, after, head_seq)?;
        for row in &batch {
            let row = stored(row);
            after = row.seq;
            if !verifier.push(row) {
                break 'batches;
            }
        }
        if (batch.len() as i64) < BATCH {
            break;
        }
    }
    let tail_matches = verifier.last_link() == (head_seq, head_hash.as_str());
    let mut verdict = verifier.finish();
    let (ok, problem) = match (&verdict.first_bad, tail_matches) {
        (Some(_), _) => (false, Some("a row does not match its hash or does not follow its predecessor".to_owned())),
        (None, false) => (false, Some("rows at the end of the chain are missing".to_owned())),
        (None, true) => match outsider(conn)? {
            Some(id) => {
                verdict.first_bad = Some(id.0);
                (false, Some("a row was added outside the chain".to_owned()))
            }
            None => (true, None),
        },
    };
    Ok(ChainReport { chain, ok, checked: verdict.checked, first_bad_id: verdict.first_bad, problem })
}

/// A row of a chain, as the verifier sees it.
trait Link {
    fn stored(&self) -> Stored<Uuid>;
}

macro_rules! link_for {
    ($row:ty) => {
        impl Link for $row {
            fn stored(&self) -> Stored<Uuid> {
                Stored {
                    id: self.id.0,
                    seq: self.seq,
                    prev_hash: self.prev_hash.clone(),
                    hash: self.hash.clone(),
                    canonical: self.canonical(),
                }
            }
        }
    };
}

link_for!(RequestLogRow);
link_for!(EventRow);

pub fn verify(conn: &mut DbConnection) -> QueryResult<VerifyReport> {
    let requests = verify_chain(
        conn,
        Chain::RequestLog,
        |conn, after, upto| {
            request_log::table
                .filter(request_log::seq.gt(after).and(request_log::seq.le(upto)))
                .order(request_log::seq.asc())
                .limit(BATCH)
                .select(RequestLogRow::as_select())
                .load(conn)
        },
        RequestLogRow::stored,
        |conn| {
            let head = heads::table.filter(heads::chain.eq(Chain::RequestLog.name())).select(heads::seq);
            request_log::table
                .filter(request_log::seq.le(0).or(request_log::seq.gt(head.single_value().assume_not_null())))
                .select(request_log::id)
                .first(conn)
                .optional()
        },
    )?;
    let events = verify_chain(
        conn,
        Chain::AuditEvents,
        |conn, after, upto| {
            events::table
                .filter(events::seq.gt(after).and(events::seq.le(upto)))
                .order(events::seq.asc())
                .limit(BATCH)
                .select(EventRow::as_select())
                .load(conn)
        },
        EventRow::stored,
        |conn| {
            let head = heads::table.filter(heads::chain.eq(Chain::AuditEvents.name())).select(heads::seq);
            events::table
                .filter(events::seq.le(0).or(events::seq.gt(head.single_value().assume_not_null())))
                .select(events::id)
                .first(conn)
                .optional()
        },
    )?;
    Ok(VerifyReport::of(vec![requests, events]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column that is not a hash, changed behind the service's back,
    /// changes what the hash covers: no edit of a stored row goes unseen.
    #[test]
    fn the_hash_covers_every_column() {
        let at = DbTime(OffsetDateTime::UNIX_EPOCH);
        let id = || Some(DbUuid(Uuid::nil()));
        let event = EventRow {
            id: DbUuid(Uuid::nil()),
            seq: 1,
            kind: "consent_granted".into(),
            at,
            actor_id: id(),
            subject_id: id(),
            session_id: id(),
            ip: Some("127.0.0.1".into()),
            user_agent: Some("ua".into()),
            detail: "{}".into(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let other = Some(DbUuid(Uuid::max()));
        let edits: [fn(&mut EventRow, Option<DbUuid>); 10] = [
            |r, _| r.id = DbUuid(Uuid::max()),
            |r, _| r.seq = 2,
            |r, _| r.kind = "consent_revoked".into(),
            |r, _| r.at = DbTime(OffsetDateTime::UNIX_EPOCH + time::Duration::microseconds(1)),
            |r, o| r.actor_id = o,
            |r, o| r.subject_id = o,
            |r, o| r.session_id = o,
            |r, _| r.ip = Some("10.0.0.1".into()),
            |r, _| r.user_agent = None,
            |r, _| r.detail = "{\"a\":1}".into(),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut edited = event.clone();
            edit(&mut edited, other);
            assert_ne!(edited.canonical(), event.canonical(), "event column {i}");
        }

        let request = RequestLogRow {
            id: DbUuid(Uuid::nil()),
            seq: 1,
            session_id: DbUuid(Uuid::nil()),
            at,
            method: "GET".into(),
            path: "/api/v1/me".into(),
            query: None,
            status: 200,
            duration_ms: 1,
            ip: Some("127.0.0.1".into()),
            user_agent: Some("ua".into()),
            body: None,
            prev_hash: String::new(),
            hash: String::new(),
        };
        let edits: [fn(&mut RequestLogRow); 12] = [
            |r| r.id = DbUuid(Uuid::max()),
            |r| r.seq = 2,
            |r| r.session_id = DbUuid(Uuid::max()),
            |r| r.at = DbTime(OffsetDateTime::UNIX_EPOCH + time::Duration::microseconds(1)),
            |r| r.method = "POST".into(),
            |r| r.path = "/api/v1/users".into(),
            |r| r.query = Some("q=x".into()),
            |r| r.status = 418,
            |r| r.duration_ms = 2,
            |r| r.ip = None,
            |r| r.user_agent = Some("other".into()),
            |r| r.body = Some("{}".into()),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut edited = request.clone();
            edit(&mut edited);
            assert_ne!(edited.canonical(), request.canonical(), "request column {i}");
        }
    }
}
