use std::collections::HashMap;

use crate::http::query::QueryParams;
use actix_web::http::header;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::crypto::tokens::{ActorClaim, TokenRequest};
use crate::domain::consent::parse_reason;
use crate::domain::events::Event;
use crate::domain::impersonation::{
    may_impersonate, may_look_up_target, token_expiry, EndReason, Party, Refusal, SessionStatus,
};
use crate::http::attempts;
use crate::http::client::ClientInfo;
use crate::http::json::JsonBody;
use crate::http::paging::{List, Page};
use crate::http::principal::{NotChained, Principal};
use crate::http::problem::{ApiError, Problem};
use crate::http::views::{PersonRef, TokenType, UserView};
use crate::state::AppState;
use crate::store::attempts::{self as attempt_store, Scope};
use crate::store::audit;
use crate::store::impersonations::{self, ImpersonationSession, Running};
use crate::store::organizations::Organization;
use crate::store::sql_types::{DbTime, DbUuid};
use crate::store::users::User;
use crate::store::{consents, sessions, users, write_transaction, DbConnection};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"target_user_id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b", "password": "my own password", "reason": "Ticket #4711: invoice totals look wrong"}))]
pub struct StartImpersonationRequest {
    /// The user to act as.
    pub target_user_id: Uuid,
    /// Your own password, to confirm it is really you.
    #[schema(min_length = 1, format = Password)]
    pub password: String,
    /// Why, in at most 500 characters; shown to the user in their history.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "session_id": "0193a5d0-1111-7222-8333-944455556666",
    "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIuLi4iLCJhY3QiOnsic3ViIjoiLi4uIn19.c2ln",
    "token_type": "Bearer",
    "expires_at": "2026-11-21T10:00:00Z",
    "expires_in": 1800,
    "target": {
        "id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b", "email": "ada@acme.example", "name": "Ada Lovelace",
        "organization_id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40", "role": "member", "status": "active",
        "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:30:00Z"
    }
}))]
pub struct StartImpersonationResponse {
    pub session_id: Uuid,
    /// JWT whose `sub` is the target and whose `act.sub` is you (RFC 8693 §4.1).
    pub access_token: String,
    pub token_type: TokenType,
    /// `min(consent expiry, start + ACTAS_MAX_IMPERSONATION_MINUTES)`; not renewable.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub expires_in: i64,
    pub target: UserView,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5d0-1111-7222-8333-944455556666",
    "impersonator_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31",
    "target_id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b",
    "consent_id": "0193a5cf-0000-7000-8000-0000000000a1",
    "impersonator": {"id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31", "email": "sam@support.example", "name": "Sam Support"},
    "target": {"id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b", "email": "ada@acme.example", "name": "Ada Lovelace"},
    "reason": "Ticket #4711",
    "status": "ended",
    "started_at": "2026-11-21T09:30:00Z",
    "expires_at": "2026-11-21T10:00:00Z",
    "ended_at": "2026-11-21T09:42:10Z",
    "end_reason": "stopped",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0"
}))]
pub struct ImpersonationView {
    pub id: Uuid,
    pub impersonator_id: Uuid,
    pub target_id: Uuid,
    /// The consent the session was started under.
    pub consent_id: Uuid,
    /// The impersonator's name and email, for display.
    pub impersonator: PersonRef,
    /// The target's name and email, for display.
    pub target: PersonRef,
    #[schema(required = true)]
    pub reason: Option<String>,
    pub status: SessionStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// For an expired session, its expiry time.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub ended_at: Option<OffsetDateTime>,
    /// `null` while ongoing.
    #[schema(required = true)]
    pub end_reason: Option<EndReason>,
    /// Where the session was started from.
    #[schema(required = true)]
    pub ip: Option<String>,
    #[schema(required = true)]
    pub user_agent: Option<String>,
}

impl ImpersonationView {
    pub fn of(session: &ImpersonationSession, users: &HashMap<Uuid, User>, now: OffsetDateTime) -> Self {
        let (status, ended) = session.state(now);
        Self {
            id: *session.id,
            impersonator_id: *session.impersonator_id,
            target_id: *session.target_id,
            consent_id: *session.consent_id,
            impersonator: PersonRef::of(users.get(&session.impersonator_id), *session.impersonator_id),
            target: PersonRef::of(users.get(&session.target_id), *session.target_id),
            reason: session.reason.clone(),
            status,
            started_at: *session.started_at,
            expires_at: *session.expires_at,
            ended_at: ended.map(|(at, _)| at),
            end_reason: ended.map(|(_, reason)| reason),
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImpersonationListQuery {
    /// Only sessions in this state.
    #[param(example = "ongoing")]
    pub status: Option<SessionStatus>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(example = "AQGTpcSMHn0inzprHS4_Sls")]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImpersonationList {
    pub items: Vec<ImpersonationView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Checks every rule of SPEC §2 but the password, against fresh rows.
fn check_rules(
    conn: &mut DbConnection,
    actor: (&User, &Organization),
    actor_has_act: bool,
    target_id: Uuid,
    now: OffsetDateTime,
) -> Result<(User, consents::Consent), ApiError> {
    let actor_org = actor.1.org_path();
    let actor_party = Party { id: *actor.0.id, role: actor.0.role(), status: actor.0.status(), org: &actor_org };
    may_look_up_target(&actor_party, actor_has_act, target_id).map_err(ApiError::impersonation_refused)?;
    let (target, target_org) = users::find_with_org(conn, target_id)?.ok_or_else(|| ApiError::not_found("user"))?;
    let consent = consents::open(conn, target_id)?;
    let target_org = target_org.org_path();
    let target_party = Party { id: *target.id, role: target.role(), status: target.status(), org: &target_org };
    may_impersonate(&actor_party, actor_has_act, &target_party, consent.as_ref().map(|c| c.state()), now)
        .map_err(ApiError::impersonation_refused)?;
    let consent = consent.ok_or_else(|| ApiError::impersonation_refused(Refusal::ConsentRequired))?;
    Ok((target, consent))
}

/// Start impersonating a user who has consented.
///
/// Confirm with your own password. The returned token acts with exactly the
/// target's permissions; its `act` claim names you; it expires at
/// `min(consent expiry, now + ACTAS_MAX_IMPERSONATION_MINUTES)` and cannot be
/// renewed. Wrong passwords are limited per impersonator (default 5 per 15 minutes).
#[utoipa::path(
    operation_id = "start_impersonation",
    tag = "impersonations",
    security(("bearer" = [])),
    request_body(content = StartImpersonationRequest, description = "Whom to act as, your own password to confirm, and optionally why"),
    responses(
        (status = 201, description = "Session started", body = StartImpersonationResponse,
            headers(("Location" = String, description = "URL of the session"))),
        (status = 403, description = "Refused. `code` says why: `not_permitted`, `self_impersonation`, `target_privileged`, `target_inactive`, `consent_required`, `chained_impersonation` (with an impersonation token; problem type `impersonation-restricted`), `reauthentication_failed` (wrong password)",
            body = Problem, content_type = "application/problem+json",
            examples(
                ("consent_required" = (value = json!({"type": "urn:actas:problem:consent_required", "title": "Forbidden", "status": 403, "detail": "the user has not granted impersonation consent, or it has expired or been revoked; ask them to grant it again", "code": "consent_required"}))),
                ("not_permitted" = (value = json!({"type": "urn:actas:problem:not_permitted", "title": "Forbidden", "status": 403, "detail": "you may not impersonate this user", "code": "not_permitted"}))),
                ("self_impersonation" = (value = json!({"type": "urn:actas:problem:self_impersonation", "title": "Forbidden", "status": 403, "detail": "you cannot impersonate yourself", "code": "self_impersonation"}))),
                ("target_privileged" = (value = json!({"type": "urn:actas:problem:target_privileged", "title": "Forbidden", "status": 403, "detail": "super admins cannot be impersonated", "code": "target_privileged"}))),
                ("target_inactive" = (value = json!({"type": "urn:actas:problem:target_inactive", "title": "Forbidden", "status": 403, "detail": "the user is suspended or deleted", "code": "target_inactive"}))),
                ("chained_impersonation" = (value = json!({"type": "urn:actas:problem:impersonation-restricted", "title": "Forbidden", "status": 403, "detail": "an impersonation token cannot start another impersonation", "code": "chained_impersonation"}))),
                ("reauthentication_failed" = (value = json!({"type": "urn:actas:problem:reauthentication_failed", "title": "Forbidden", "status": 403, "detail": "the password is incorrect", "code": "reauthentication_failed"}))),
            )),
        (status = 404, description = "No user with this id (`not_found`); asked only when you may impersonate at all", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:not_found", "title": "Not found", "status": 404, "detail": "user not found", "code": "not_found"})),
        (status = 429, description = "Too many wrong passwords (`rate_limited`); see `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait")),
            example = json!({"type": "urn:actas:problem:rate_limited", "title": "Too many attempts", "status": 429, "detail": "too many failed attempts; try again in 840 seconds", "code": "rate_limited"})),
    )
)]
#[post("/impersonations")]
pub async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    _not_chained: NotChained,
    client: ClientInfo,
    body: JsonBody<StartImpersonationRequest>,
) -> Result<HttpResponse, ApiError> {
    let StartImpersonationRequest { target_user_id, password, reason } = body.into_inner();
    let started = start_session(&state, &principal, client, target_user_id, password, reason.as_deref()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/impersonations/{}", started.session_id)))
        .json(started))
}

/// Starts an impersonation session for `principal` (SPEC §2), for both
/// `POST /api/v1/impersonations` and the RFC 8693 token exchange.
pub async fn start_session(
    state: &AppState,
    principal: &Principal,
    client: ClientInfo,
    target_user_id: Uuid,
    password: String,
    reason: Option<&str>,
) -> Result<StartImpersonationResponse, ApiError> {
    let reason = parse_reason(reason)?;
    if password.is_empty() {
        return Err(ApiError::invalid_field("password", "must not be empty: confirm with your own password"));
    }
    let actor_has_act = principal.impersonation.is_some();
    let now = state.clock.now();

    // Refuse what the rules refuse before asking for the password.
    let (actor, actor_org) = (principal.user.clone(), principal.organization.clone());
    let subject = actor.id.to_string();
    state
        .db(move |conn| check_rules(conn, (&actor, &actor_org), actor_has_act, target_user_id, now).map(|_| ()))
        .await?;
    let attempt = attempts::admit(state, &[(Scope::Reauthentication, subject.clone())]).await?;
    if !attempt.verify(state, password, Some(principal.user.password_hash.clone())).await? {
        attempt.failed(state).await;
        return Err(ApiError::forbidden("reauthentication_failed", "the password is incorrect"));
    }
    let attempt_ids = attempt.ids;

    // Decide again under the users' row locks: a revocation or suspension that
    // committed meanwhile wins; one that comes later will see this session.
    let cap = Duration::minutes(state.config.max_impersonation_minutes);
    let (actor_id, login_session_id) = (*principal.user.id, principal.session_id);
    let confirmed_hash = principal.user.password_hash.clone();
    let clock = state.clock.clone();
    let (session, target, now) = state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                users::lock(conn, &[actor_id, target_user_id])?;
                // Timed once its turn has come: the consent is judged, and
                // the session starts, at the moment it is written.
                let now = clock.now();
                let decided = (|| {
                    // A logout or password change that ended the admin's login
                    // session meanwhile wins: no session may hang off a dead one.
                    if sessions::find_live(conn, login_session_id, now)?.is_none() {
                        return Err(ApiError::unauthorized("the session has ended"));
                    }
                    let (actor, actor_org) = users::find_with_org(conn, actor_id)?
                        .ok_or_else(|| ApiError::unauthorized("the session has ended"))?;
                    // The password confirmed is the one the admin still has (a
                    // change from this same login session keeps it open).
                    if actor.password_hash != confirmed_hash {
                        return Err(ApiError::forbidden("reauthentication_failed", "the password is incorrect"));
                    }
                    let (target, consent) =
                        check_rules(conn, (&actor, &actor_org), actor_has_act, target_user_id, now)?;
                    let expires_at = token_expiry(*consent.expires_at, now, Some(cap))
                        .ok_or_else(|| ApiError::impersonation_refused(Refusal::ConsentRequired))?;
                    Ok((actor, target, consent, expires_at))
                })();
                // The password was right when it was checked: whatever is
                // decided now, it never counts as a failed confirmation. (The
                // decision only reads, so a refusal commits just this; a read
                // that failed decided nothing, and rolls back.)
                let (actor, target, consent, expires_at) = match decided {
                    Err(failure) if failure.status.is_server_error() => return Err(failure),
                    Err(refusal) => {
                        attempt_store::forget(conn, &attempt_ids)?;
                        return Ok(Err(refusal));
                    }
                    Ok(decided) => decided,
                };
                attempt_store::forget(conn, &attempt_ids)?;
                let session = ImpersonationSession {
                    id: DbUuid(Uuid::now_v7()),
                    impersonator_id: actor.id,
                    target_id: target.id,
                    consent_id: consent.id,
                    login_session_id: DbUuid(login_session_id),
                    reason,
                    started_at: DbTime(now),
                    expires_at: DbTime(expires_at),
                    ended_at: None,
                    end_reason: None,
                    ip: client.ip.clone(),
                    user_agent: client.user_agent.clone(),
                };
                impersonations::insert(conn, &session)?;
                let event = Event::ImpersonationStarted {
                    impersonator_id: *actor.id,
                    reason: session.reason.clone(),
                    expires_at,
                };
                let ctx = client.event(actor_id, now);
                audit::record(conn, &ctx, &event, *target.id, Some(*session.id))?;
                attempt_store::clear(conn, Scope::Reauthentication, &subject)?;
                Ok::<_, ApiError>(Ok((session, target, now)))
            })
        })
        .await??;

    let token = state.tokens().sign(TokenRequest {
        subject: *target.id,
        session_id: *session.id,
        organization_id: *target.organization_id,
        role: target.role(),
        actor: Some(ActorClaim { sub: *principal.user.id, email: principal.user.email.clone(), act: None }),
        issued_at: now,
        expires_at: *session.expires_at,
    });
    tracing::info!(session_id = %*session.id, impersonator_id = %*principal.user.id, target_id = %*target.id, "impersonation started");
    Ok(StartImpersonationResponse {
        session_id: *session.id,
        access_token: token,
        token_type: TokenType::Bearer,
        expires_at: *session.expires_at,
        // Whole seconds, exactly `exp - iat` of the token.
        expires_in: session.expires_at.unix_timestamp() - now.unix_timestamp(),
        target: UserView::from(&target),
    })
}

/// Stop a session you started, with your own token or the impersonation token.
///
/// The impersonation token is refused from the next request on.
#[utoipa::path(
    operation_id = "stop_impersonation",
    tag = "impersonations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Impersonation session id", example = "0193a5d0-1111-7222-8333-944455556666")),
    responses(
        (status = 204, description = "Stopped (also when it had already ended)"),
        (status = 403, description = "Only the impersonator may stop a session (`forbidden`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "only the impersonator may stop a session", "code": "forbidden"})),
    )
)]
#[post("/impersonations/{id}/stop")]
pub async fn stop(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let caller = principal.real_user_id();
    let session = state.db(move |conn| Ok(impersonations::find(conn, id)?)).await?;
    let session =
        session.filter(|s| may_read(&principal, s)).ok_or_else(|| ApiError::not_found("impersonation session"))?;
    if *session.impersonator_id != caller {
        return Err(ApiError::forbidden("forbidden", "only the impersonator may stop a session"));
    }
    let clock = state.clock.clone();
    state
        .db_write(move |conn| {
            Ok(write_transaction(conn, |conn| {
                // Timed after the session's own requests in flight have committed.
                impersonations::lock(conn, id)?;
                let ctx = client.ending(caller, &clock);
                audit::end_sessions(conn, Running::Id(id), EndReason::Stopped, &ctx)
            })?)
        })
        .await?;
    tracing::info!(session_id = %id, impersonator_id = %caller, "impersonation stopped");
    Ok(HttpResponse::NoContent().finish())
}

fn may_read(principal: &Principal, session: &ImpersonationSession) -> bool {
    principal.session_reader().may_read_session(*session.id, *session.impersonator_id)
}

/// Sessions you started (super admins: all sessions), newest first.
///
/// Each with its target, reason, start, expiry, end and `status` (`ongoing`,
/// `ended`, `expired`, `revoked`); filter with `status`.
#[utoipa::path(
    operation_id = "list_impersonations",
    tag = "impersonations",
    security(("bearer" = [])),
    params(ImpersonationListQuery),
    responses((status = 200, description = "A page of sessions", body = ImpersonationList)),
)]
#[get("/impersonations")]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: QueryParams<ImpersonationListQuery>,
) -> Result<web::Json<ImpersonationList>, ApiError> {
    let query = query.into_inner();
    let page = Page::by_id(List::Impersonations, query.limit, query.cursor.as_deref())?;
    let all = principal.session_reader().reads_everything();
    let filter = impersonations::ListFilter {
        impersonator_id: (!all).then_some(*principal.user.id),
        target_id: None,
        status: query.status,
        before_id: page.before_id,
        limit: page.fetch_limit(),
    };
    let now = state.clock.now();
    let (mut rows, people) = state
        .db(move |conn| {
            let rows = impersonations::list(conn, filter, now)?;
            let people = impersonations::users_of(conn, &rows)?;
            Ok((rows, people))
        })
        .await?;
    let next_cursor = page.finish(&mut rows, |s| *s.id);
    Ok(web::Json(ImpersonationList {
        items: rows.iter().map(|s| ImpersonationView::of(s, &people, now)).collect(),
        next_cursor,
    }))
}

/// One session you started (super admins: any).
///
/// With the impersonation token itself, this session also answers (so an exit
/// button can show what it ends); any other session answers 404.
#[utoipa::path(
    operation_id = "get_impersonation",
    tag = "impersonations",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Impersonation session id", example = "0193a5d0-1111-7222-8333-944455556666")),
    responses((status = 200, description = "The session", body = ImpersonationView)),
)]
#[get("/impersonations/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<web::Json<ImpersonationView>, ApiError> {
    let id = id.into_inner();
    let found = state
        .db(move |conn| {
            let Some(session) = impersonations::find(conn, id)? else { return Ok(None) };
            let people = impersonations::users_of(conn, std::slice::from_ref(&session))?;
            Ok(Some((session, people)))
        })
        .await?;
    match found {
        Some((session, people)) if may_read(&principal, &session) => {
            Ok(web::Json(ImpersonationView::of(&session, &people, state.clock.now())))
        }
        _ => Err(ApiError::not_found("impersonation session")),
    }
}

/// Whether the impersonation feature is available for `target`, as `caller` sees it.
pub fn availability(
    caller: &Principal,
    caller_org: &crate::domain::policy::OrgPath,
    target: &User,
    target_org: &crate::domain::policy::OrgPath,
    consent: Option<&consents::Consent>,
    now: OffsetDateTime,
) -> crate::http::views::ImpersonationAvailability {
    let actor = caller.party(caller_org);
    let target_party = Party { id: *target.id, role: target.role(), status: target.status(), org: target_org };
    let has_act = caller.impersonation.is_some();
    let shown =
        crate::domain::impersonation::availability(&actor, has_act, &target_party, consent.map(|c| c.state()), now);
    crate::http::views::ImpersonationAvailability {
        available: shown.available,
        consent_expires_at: shown.consent_expires_at,
    }
}
