//! Reading the audit trail: the impersonated user's own history, a session's
//! request log, lifecycle events, and the hash-chain check.

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::events::EventKind;
use crate::domain::impersonation::{EndReason, SessionStatus};
use crate::http::paging::{List, Page};
use crate::http::principal::Principal;
use crate::http::problem::ApiError;
use crate::http::query::QueryParams;
use crate::http::views::PersonRef;
use crate::state::AppState;
use crate::store::audit::{self, EventRow, RequestLogRow};
use crate::store::impersonations::{self, ImpersonationSession};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(example = "AQGTpcSMHn0inzprHS4_Sls")]
    pub cursor: Option<String>,
}

/// One call made with an impersonation token, as stored (secrets redacted).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5d1-2222-7333-8444-955566667777",
    "at": "2026-11-21T09:31:12.503211Z",
    "method": "PATCH",
    "path": "/api/v1/users/0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b",
    "query": null,
    "status": 200,
    "duration_ms": 14,
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0",
    "body": "{\"name\":\"Ada Lovelace\",\"password\":\"[REDACTED]\"}"
}))]
pub struct RequestLogView {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub method: String,
    pub path: String,
    /// The query string, sensitive parameters redacted.
    #[schema(required = true)]
    pub query: Option<String>,
    pub status: i32,
    pub duration_ms: i32,
    #[schema(required = true)]
    pub ip: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// The request body, sensitive fields redacted, cut at 16 KiB.
    #[schema(required = true)]
    pub body: Option<String>,
}

impl From<&RequestLogRow> for RequestLogView {
    fn from(row: &RequestLogRow) -> Self {
        Self {
            id: *row.id,
            at: *row.at,
            method: row.method.clone(),
            path: row.path.clone(),
            query: row.query.clone(),
            status: row.status,
            duration_ms: row.duration_ms,
            ip: row.ip.clone(),
            user_agent: row.user_agent.clone(),
            body: row.body.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RequestLogPage {
    pub items: Vec<RequestLogView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// A session in which someone acted as you.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5d0-1111-7222-8333-944455556666",
    "impersonator": {"id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31", "email": "sam@support.example", "name": "Sam Support"},
    "reason": "Ticket #4711",
    "started_at": "2026-11-21T09:30:00Z",
    "ended_at": "2026-11-21T09:42:10Z",
    "duration_seconds": 730,
    "status": "ended",
    "end_reason": "stopped",
    "request_count": 12
}))]
pub struct MySessionView {
    pub id: Uuid,
    pub impersonator: PersonRef,
    #[schema(required = true)]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub ended_at: Option<OffsetDateTime>,
    /// From start to end, or to now while ongoing.
    pub duration_seconds: i64,
    pub status: SessionStatus,
    /// `null` while ongoing.
    #[schema(required = true)]
    pub end_reason: Option<EndReason>,
    /// Calls made as you in this session.
    pub request_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct MySessionPage {
    pub items: Vec<MySessionView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Sessions in which someone acted as you, newest first.
///
/// With who acted (name and email), when, for how long, how it ended, and how
/// many calls were made. Open one with its audit log to see every call.
#[utoipa::path(operation_id = "list_my_impersonation_sessions", 
    tag = "audit",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "Who impersonated you, when, and how many calls they made", body = MySessionPage)),
)]
#[get("/me/impersonation-sessions")]
pub async fn my_sessions(
    state: web::Data<AppState>,
    principal: Principal,
    query: QueryParams<PageQuery>,
) -> Result<web::Json<MySessionPage>, ApiError> {
    let page = Page::by_id(List::SessionsOfMe, query.limit, query.cursor.as_deref())?;
    let me = *principal.user.id;
    let now = state.clock.now();
    let filter = impersonations::ListFilter {
        target_id: Some(me),
        before_id: page.before_id,
        limit: page.fetch_limit(),
        ..Default::default()
    };
    let (mut rows, people, counts) = state
        .db(move |conn| {
            let rows = impersonations::list(conn, filter, now)?;
            let people = impersonations::users_of(conn, &rows)?;
            let ids: Vec<Uuid> = rows.iter().map(|s| *s.id).collect();
            let counts = audit::request_counts(conn, &ids)?;
            Ok((rows, people, counts))
        })
        .await?;
    let next_cursor = page.finish(&mut rows, |s| *s.id);
    let items = rows
        .iter()
        .map(|s| {
            let (status, ended) = s.state(now);
            let end = ended.map(|(at, _)| at);
            MySessionView {
                id: *s.id,
                impersonator: PersonRef::of(people.get(&s.impersonator_id), *s.impersonator_id),
                reason: s.reason.clone(),
                started_at: *s.started_at,
                ended_at: end,
                duration_seconds: (end.unwrap_or(now) - *s.started_at).whole_seconds().max(0),
                status,
                end_reason: ended.map(|(_, r)| r),
                request_count: counts.get(&s.id).copied().unwrap_or(0),
            }
        })
        .collect();
    Ok(web::Json(MySessionPage { items, next_cursor }))
}

async fn session_log(
    state: &AppState,
    session: ImpersonationSession,
    page: Page,
) -> Result<web::Json<RequestLogPage>, ApiError> {
    let (fetch, before) = (page.fetch_limit(), page.before_seq);
    let mut rows = state.db(move |conn| Ok(audit::requests_of_session(conn, *session.id, before, fetch)?)).await?;
    let next_cursor = page.finish_seq(&mut rows, |r| r.seq);
    Ok(web::Json(RequestLogPage { items: rows.iter().map(RequestLogView::from).collect(), next_cursor }))
}

async fn find_session(state: &AppState, id: Uuid) -> Result<Option<ImpersonationSession>, ApiError> {
    state.db(move |conn| Ok(impersonations::find(conn, id)?)).await
}

/// Every call made as you in one session, newest first.
///
/// Method, path, query and body (secrets redacted), status, duration, IP and
/// user agent of each request made with that session's token. Another user's
/// session answers 404.
#[utoipa::path(operation_id = "get_my_session_audit_log", 
    tag = "audit",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Impersonation session id", example = "0193a5d0-1111-7222-8333-944455556666"), PageQuery),
    responses((status = 200, description = "The session's request log", body = RequestLogPage)),
)]
#[get("/me/impersonation-sessions/{id}/audit-log")]
pub async fn my_session_log(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    query: QueryParams<PageQuery>,
) -> Result<web::Json<RequestLogPage>, ApiError> {
    let page = Page::by_seq(List::RequestLog, query.limit, query.cursor.as_deref())?;
    match find_session(&state, id.into_inner()).await? {
        // Another user's session is not found, not forbidden: ids reveal nothing.
        Some(session) if principal.session_reader().may_read_as_target(*session.target_id) => {
            session_log(&state, session, page).await
        }
        _ => Err(ApiError::not_found("impersonation session")),
    }
}

/// The request log of a session you started (super admins: any session).
///
/// The same rows the impersonated user reads. A session you did not start
/// answers 404.
#[utoipa::path(operation_id = "get_impersonation_audit_log", 
    tag = "audit",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Impersonation session id", example = "0193a5d0-1111-7222-8333-944455556666"), PageQuery),
    responses((status = 200, description = "The session's request log", body = RequestLogPage)),
)]
#[get("/impersonations/{id}/audit-log")]
pub async fn impersonation_log(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
    query: QueryParams<PageQuery>,
) -> Result<web::Json<RequestLogPage>, ApiError> {
    let page = Page::by_seq(List::RequestLog, query.limit, query.cursor.as_deref())?;
    let reader = principal.session_reader();
    match find_session(&state, id.into_inner()).await? {
        Some(session) if reader.may_read_log_as_impersonator(*session.impersonator_id) => {
            session_log(&state, session, page).await
        }
        _ => Err(ApiError::not_found("impersonation session")),
    }
}

fn require_super_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.session_reader().reads_everything() {
        Ok(())
    } else {
        Err(ApiError::forbidden("forbidden", "only super admins may read the audit trail"))
    }
}

/// A consent or impersonation lifecycle event.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5d0-1111-7222-8333-944455550000",
    "kind": "impersonation_started",
    "at": "2026-11-21T09:30:00Z",
    "actor_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31",
    "subject_id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b",
    "session_id": "0193a5d0-1111-7222-8333-944455556666",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0",
    "detail": {"reason": "Ticket #4711", "expires_at": "2026-11-21T10:00:00Z", "impersonator_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31"}
}))]
pub struct AuditEventView {
    pub id: Uuid,
    pub kind: EventKind,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who acted (for impersonation, the impersonator); `null` when the service did (expiry).
    #[schema(required = true)]
    pub actor_id: Option<Uuid>,
    /// Whose consent or impersonation it is.
    #[schema(required = true)]
    pub subject_id: Option<Uuid>,
    #[schema(required = true)]
    pub session_id: Option<Uuid>,
    #[schema(required = true)]
    pub ip: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
    #[schema(value_type = EventDetail)]
    pub detail: serde_json::Value,
}

/// Kind-specific facts of an event; which keys appear depends on `kind`.
/// (Documentation of the stored JSON, which is passed through as recorded.)
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EventDetail {
    /// `consent_granted`: for how many hours.
    #[schema(nullable = false)]
    duration_hours: Option<i64>,
    /// `consent_granted`: when the consent ends; `impersonation_started`: when the session does.
    #[schema(nullable = false)]
    expires_at: Option<OffsetDateTime>,
    /// `consent_revoked`: when the revoked consent had been granted.
    #[schema(nullable = false)]
    consent_granted_at: Option<OffsetDateTime>,
    /// `impersonation_*`: who impersonated.
    #[schema(nullable = false)]
    impersonator_id: Option<Uuid>,
    /// `impersonation_started`: the reason the impersonator gave, if any.
    reason: Option<String>,
    /// `impersonation_stopped`, `impersonation_ended`: why it ended.
    #[schema(nullable = false)]
    end_reason: Option<EndReason>,
    /// `impersonation_ended`: `role_changed` when a role change ended it (`end_reason` is then `stopped`).
    #[schema(nullable = false)]
    cause: Option<String>,
}

impl TryFrom<&EventRow> for AuditEventView {
    type Error = ApiError;

    /// A row the service did not write this way is reported, never relabelled.
    fn try_from(row: &EventRow) -> Result<Self, ApiError> {
        let unreadable = |what: &str| ApiError::internal(format!("audit event {} has {what}", *row.id));
        Ok(Self {
            id: *row.id,
            kind: EventKind::parse(&row.kind).ok_or_else(|| unreadable("an unknown kind"))?,
            at: *row.at,
            actor_id: row.actor_id.map(Into::into),
            subject_id: row.subject_id.map(Into::into),
            session_id: row.session_id.map(Into::into),
            ip: row.ip.clone(),
            user_agent: row.user_agent.clone(),
            detail: serde_json::from_str(&row.detail).map_err(|_| unreadable("a detail that is not JSON"))?,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Events where this user acted or was the subject, and every event of a
    /// session they impersonated in or were impersonated in.
    #[param(example = "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b")]
    pub user_id: Option<Uuid>,
    /// Events of this impersonation session.
    #[param(example = "0193a5d0-1111-7222-8333-944455556666")]
    pub session_id: Option<Uuid>,
    /// Events of this kind only.
    #[param(example = "impersonation_started")]
    pub kind: Option<EventKind>,
    /// From this instant (inclusive), RFC 3339.
    #[serde(default, with = "crate::http::query::utc_instant")]
    #[param(value_type = Option<String>, format = DateTime, example = "2026-11-21T00:00:00Z")]
    pub from: Option<OffsetDateTime>,
    /// Up to this instant (exclusive), RFC 3339.
    #[serde(default, with = "crate::http::query::utc_instant")]
    #[param(value_type = Option<String>, format = DateTime, example = "2026-11-22T00:00:00Z")]
    pub to: Option<OffsetDateTime>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(example = "AQGTpcSMHn0inzprHS4_Sls")]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventPage {
    pub items: Vec<AuditEventView>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Consent and impersonation events, newest first (super admins).
///
/// Consent granted and revoked; impersonation started, stopped and ended (with
/// its reason), each with actor, subject, session, IP and user agent. Filter by
/// user, session, kind and time range.
#[utoipa::path(
    operation_id = "list_audit_events",
    tag = "audit",
    security(("bearer" = [])),
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditEventPage),
        (status = 403, description = "Not a super admin (`forbidden`)", body = crate::http::problem::Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "only super admins may read the audit trail", "code": "forbidden"})),
    ),
)]
#[get("/audit/events")]
pub async fn events(
    state: web::Data<AppState>,
    principal: Principal,
    query: QueryParams<EventQuery>,
) -> Result<web::Json<AuditEventPage>, ApiError> {
    require_super_admin(&principal)?;
    let query = query.into_inner();
    if let (Some(from), Some(to)) = (query.from, query.to) {
        if from > to {
            return Err(ApiError::invalid_field("to", "must not be before `from`"));
        }
    }
    let page = Page::by_seq(List::Events, query.limit, query.cursor.as_deref())?;
    let filter = audit::EventFilter {
        user_id: query.user_id,
        session_id: query.session_id,
        kind: query.kind,
        from: query.from,
        to: query.to,
        before_seq: page.before_seq,
        limit: page.fetch_limit(),
    };
    let mut rows = state.db(move |conn| Ok(audit::list_events(conn, filter)?)).await?;
    let next_cursor = page.finish_seq(&mut rows, |r| r.seq);
    let items = rows.iter().map(AuditEventView::try_from).collect::<Result<_, _>>()?;
    Ok(web::Json(AuditEventPage { items, next_cursor }))
}

/// Check the audit hash chains (super admins).
///
/// Recomputes every link `hash = SHA-256(prev_hash ‖ canonical row)` and
/// reports the first row that was changed, removed or reordered.
#[utoipa::path(
    operation_id = "verify_audit_trail",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Verification result", body = audit::VerifyReport),
        (status = 403, description = "Not a super admin (`forbidden`)", body = crate::http::problem::Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "only super admins may read the audit trail", "code": "forbidden"})),
    ),
)]
#[get("/audit/verify")]
pub async fn verify(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<web::Json<audit::VerifyReport>, ApiError> {
    require_super_admin(&principal)?;
    Ok(web::Json(state.db(|conn| Ok(audit::verify(conn)?)).await?))
}
