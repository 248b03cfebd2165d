use crate::http::query::QueryParams;
use actix_web::http::header;
use actix_web::{delete, get, patch, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::impersonation::StandingChange;
use crate::domain::policy::{OrgPath, Subject, UserChanges, UserScope};
use crate::domain::types::{Email, Name, NewPassword, Role, UserStatus};
use crate::http::client::ClientInfo;
use crate::http::controllers::impersonations::availability;
use crate::http::json::{present, JsonBody};
use crate::http::paging::{List, Page};
use crate::http::principal::Principal;
use crate::http::problem::{denied, ApiError, Problem};
use crate::http::views::{UserItem, UserView};
use crate::state::AppState;
use crate::store::audit;
use crate::store::consents::{self, Consent};
use crate::store::organizations::{self, Organization};
use crate::store::sql_types::{DbTime, DbUuid};
use crate::store::users::{self, RowLock, User};
use crate::store::{is_unique_violation, write_transaction};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "email": "ada@acme.example", "name": "Ada Lovelace", "password": "correct horse battery staple",
    "organization_id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40", "role": "member"
}))]
pub struct CreateUserRequest {
    /// Unique (case-insensitive) among users that are not deleted.
    #[schema(max_length = 254, format = Email)]
    pub email: String,
    #[schema(schema_with = crate::http::openapi::display_name_schema)]
    pub name: String,
    /// At least 12 characters (at most 1024 bytes).
    #[schema(min_length = 12, format = Password)]
    pub password: String,
    /// Defaults to the caller's organization.
    pub organization_id: Option<Uuid>,
    /// Defaults to `member`. `super_admin` only for owner-organization users, granted by one.
    pub role: Option<Role>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "suspended"}))]
pub struct UpdateUserRequest {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::http::openapi::display_name_schema)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
    /// `active` or `suspended`; suspending ends the user's sessions at once.
    /// Use `DELETE` to delete.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<StatusChange>, nullable = false)]
    pub status: Option<UserStatus>,
}

/// The statuses a change may set (deleting is `DELETE /api/v1/users/{id}`).
// Documentation only: the request reads a `UserStatus`, and the rules answer
// `deleted` with a 422 that names the call that deletes.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum StatusChange {
    Active,
    Suspended,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserListQuery {
    /// Case-insensitive substring of email or name.
    #[param(max_length = 200, example = "ada")]
    pub q: Option<String>,
    /// Only users of this organization.
    #[param(example = "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40")]
    pub organization_id: Option<Uuid>,
    /// Only users with this status; without it, deleted users are left out.
    #[param(example = "suspended")]
    pub status: Option<UserStatus>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(example = "AQGTpcSMHn0inzprHS4_Sls")]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<UserItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

fn subject<'a>(user: &User, org_path: &'a OrgPath) -> Subject<'a> {
    Subject { id: *user.id, role: user.role(), org: org_path }
}

/// Create a user in an organization you administer.
///
/// The email must be unused (case-insensitive); the role may not be above
/// yours, and `super_admin` only for owner-organization users, granted by one.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    request_body(content = CreateUserRequest, description = "The new user: email, name, initial password, and optionally organization and role"),
    responses(
        (status = 201, description = "Created", body = UserView, headers(("Location" = String, description = "URL of the new user"))),
        (status = 403, description = "Not an administrator, or the role is above yours (`forbidden`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "super_admin can be assigned only by owner-organization users", "code": "forbidden"})),
        (status = 404, description = "`organization_id` names no organization you can see (`not_found`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:not_found", "title": "Not found", "status": 404, "detail": "organization not found", "code": "not_found"})),
        (status = 409, description = "The email is taken (`email_taken`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:email_taken", "title": "Conflict", "status": 409, "detail": "a user with this email already exists", "code": "email_taken"})),
    )
)]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    principal: Principal,
    body: JsonBody<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let actor = principal.actor();
    actor.may_administer().map_err(|d| denied("user", d))?;
    let body = body.into_inner();
    let parsed =
        (Email::parse(&body.email), Name::parse("name", &body.name), NewPassword::parse("password", &body.password));
    let (email, name, password) = match parsed {
        (Ok(e), Ok(n), Ok(p)) => (e, n, p),
        (e, n, p) => return Err(vec![e.err(), n.err(), p.err()].into_iter().flatten().collect::<Vec<_>>().into()),
    };
    let role = body.role.unwrap_or(Role::Member);
    let org_id = body.organization_id.unwrap_or(*principal.organization.id);
    // Decide, then hash, then write: while impersonating, the request's
    // transaction opens at its first use of it and must not wait for a hash
    // holding locks, so the organization is read outside it (organizations
    // are never removed, and the insert checks the reference again).
    let org = state
        .db_own(move |conn| Ok(organizations::find(conn, org_id)?))
        .await?
        .ok_or_else(|| ApiError::not_found("organization"))?;
    actor.may_create_user(&org.org_path(), role).map_err(|d| denied("organization", d))?;
    // A taken email is refused before the costly hash (the insert checks
    // again): a stream of duplicates would otherwise keep hashing places busy.
    let wanted = email.as_str().to_owned();
    if state.db_own(move |conn| Ok(users::find_live_by_email(conn, &wanted)?)).await?.is_some() {
        return Err(email_taken());
    }
    let hash = state.hasher.hash(password.expose().to_owned()).await?;

    let now = state.clock.now();
    let user = User {
        id: DbUuid(Uuid::now_v7()),
        email: email.as_str().to_owned(),
        name: name.into_string(),
        organization_id: org.id,
        role: role.as_str().to_owned(),
        status: UserStatus::Active.as_str().to_owned(),
        password_hash: hash,
        created_at: DbTime(now),
        updated_at: DbTime(now),
        deleted_at: None,
    };
    let stored = user.clone();
    let (caller, clock) = (principal.standing(), state.clock.clone());
    state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                caller.lock_with(conn, &[], &clock)?;
                match users::insert(conn, &stored) {
                    Err(e) if is_unique_violation(&e) => Err(email_taken()),
                    other => Ok(other?),
                }
            })
        })
        .await?;
    tracing::info!(user_id = %*user.id, by = %actor.id, "user created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/users/{}", *user.id)))
        .json(UserView::from(&user)))
}

fn email_taken() -> ApiError {
    ApiError::conflict("email_taken", "a user with this email already exists")
}

/// List the users you can see, newest first.
///
/// super_admin: everyone; admin: users of their organization's subtree;
/// member: only themself. Each item says whether you can impersonate that
/// user now (`impersonation.available`) and until when their consent runs.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 404, description = "`organization_id` names no organization you can see (`not_found`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:not_found", "title": "Not found", "status": 404, "detail": "organization not found", "code": "not_found"})),
    ),
)]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    principal: Principal,
    query: QueryParams<UserListQuery>,
) -> Result<web::Json<UserList>, ApiError> {
    let query = query.into_inner();
    let page = Page::by_id(List::Users, query.limit, query.cursor.as_deref())?;
    let actor = principal.actor();
    let search = query.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    if search.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::invalid_field("q", "must be at most 200 characters"));
    }
    if let Some(org_id) = query.organization_id {
        let org = state.db(move |conn| Ok(organizations::find(conn, org_id)?)).await?;
        if !org.is_some_and(|org| actor.may_filter_users_by(&org.org_path())) {
            return Err(ApiError::not_found("organization"));
        }
    }
    let (within, only_id) = match actor.listed_users() {
        UserScope::All => (None, None),
        UserScope::Subtree(org) => (Some(org.clone()), None),
        UserScope::Only(id) => (None, Some(id)),
    };
    let (fetch, before_id) = (page.fetch_limit(), page.before_id);
    let now = state.clock.now();
    let (mut rows, consents) = state
        .db(move |conn| {
            let filter = users::ListFilter {
                within: within.as_ref(),
                only_id,
                organization_id: query.organization_id,
                status: query.status,
                search: search.as_deref(),
                before_id,
                limit: fetch,
            };
            let rows = users::list(conn, filter)?;
            let ids: Vec<Uuid> = rows.iter().map(|(u, _)| *u.id).collect();
            Ok((rows, consents::active_for(conn, &ids, now)?))
        })
        .await?;
    let next_cursor = page.finish(&mut rows, |(user, _)| *user.id);
    let caller_org = principal.organization.org_path();
    let items = rows
        .iter()
        .map(|(user, org)| {
            let consent = consents.iter().find(|c| c.user_id == user.id);
            item(&principal, &caller_org, user, org, consent, now)
        })
        .collect();
    Ok(web::Json(UserList { items, next_cursor }))
}

fn item(
    principal: &Principal,
    caller_org: &OrgPath,
    user: &User,
    org: &Organization,
    consent: Option<&Consent>,
    now: time::OffsetDateTime,
) -> UserItem {
    UserItem {
        user: UserView::from(user),
        impersonation: availability(principal, caller_org, user, &org.org_path(), consent, now),
    }
}

/// Read one user you can see.
///
/// With `impersonation.available` as seen by you. A user outside your scope
/// answers 404.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id", example = "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b")),
    responses((status = 200, description = "The user", body = UserItem)),
)]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> Result<web::Json<UserItem>, ApiError> {
    let actor = principal.actor();
    let now = state.clock.now();
    let id = id.into_inner();
    let found = state
        .db(move |conn| {
            let Some(found) = users::find_with_org(conn, id)? else { return Ok(None) };
            let consent = consents::active_for(conn, &[id], now)?.pop();
            Ok(Some((found, consent)))
        })
        .await?;
    match found {
        Some(((user, org), consent)) if actor.sees_user(&subject(&user, &org.org_path())) => {
            let caller_org = principal.organization.org_path();
            Ok(web::Json(item(&principal, &caller_org, &user, &org, consent.as_ref(), now)))
        }
        _ => Err(ApiError::not_found("user")),
    }
}

/// Change a user's name, role or status.
///
/// Members may change only their own name. Nobody changes their own role or
/// status. Suspending a user ends all their sessions, including impersonations
/// of them or by them, on the next request; a role change ends their login
/// sessions (a token names its role) and the impersonations they take part
/// in: they log in and start again under the new role.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id", example = "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b")),
    request_body(content = UpdateUserRequest, description = "Only the fields to change: name, role, status"),
    responses(
        (status = 200, description = "The updated user, as `GET` shows it", body = UserItem),
        (status = 403, description = "Not allowed to make this change (`forbidden`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "you cannot change your own role or status", "code": "forbidden"})),
        (status = 409, description = "The user is deleted (`user_deleted`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:user_deleted", "title": "Conflict", "status": 409, "detail": "the user is deleted and cannot be changed", "code": "user_deleted"})),
    )
)]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
    body: JsonBody<UpdateUserRequest>,
) -> Result<web::Json<UserItem>, ApiError> {
    let actor = principal.actor();
    let body = body.into_inner();
    let name = body.name.as_deref().map(|n| Name::parse("name", n)).transpose()?;
    let changes = UserChanges { name: name.is_some(), role: body.role, status: body.status };
    let user_id = id.into_inner();
    let by = actor.id;
    let real_user = principal.real_user_id();
    let clock = state.clock.clone();
    let caller = principal.standing();
    let updated = state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                let decide = |conn: &mut _| {
                    let (user, org) =
                        users::find_with_org(conn, user_id)?.ok_or_else(|| ApiError::not_found("user"))?;
                    actor.may_change_user(&subject(&user, &org.org_path()), &changes).map_err(|d| denied("user", d))?;
                    Ok::<_, ApiError>(user)
                };
                // A change refused as the rows are now takes no lock (nor
                // waits for one). Otherwise decide again on the rows held
                // until done; only a status or role change affects who may
                // impersonate whom.
                decide(conn)?;
                let mode = if changes.change_standing() { RowLock::Change } else { RowLock::Edit };
                caller.lock_with(conn, &[(user_id, mode)], &clock)?;
                // Timed after the locks: the requests it waited for came first.
                let now = clock.now();
                let ctx = client.ending(real_user, &clock);
                let user = decide(conn)?;
                if user.status() == UserStatus::Deleted {
                    return Err(ApiError::conflict("user_deleted", "the user is deleted and cannot be changed"));
                }
                let name = name.map(Name::into_string);
                let update = users::Update { name: name.as_deref(), role: body.role, status: body.status, now };
                users::update(conn, user_id, update)?;
                for ending in changes.session_endings(user.role(), user.status()) {
                    audit::end_user_sessions(conn, user_id, ending, &ctx)?;
                }
                let Some(found) = users::find_with_org(conn, user_id)? else { return Ok(None) };
                let consent = consents::active_for(conn, &[user_id], now)?.pop();
                Ok(Some((found, consent, now)))
            })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let ((user, org), consent, now) = updated;
    tracing::info!(user_id = %user_id, by = %by, "user updated");
    let caller_org = principal.organization.org_path();
    Ok(web::Json(item(&principal, &caller_org, &user, &org, consent.as_ref(), now)))
}

/// Delete a user (soft): they can no longer log in and all their sessions end.
///
/// The row is kept for the audit trail; the email becomes free for a new user.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id", example = "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b")),
    responses(
        (status = 204, description = "Deleted (also when already deleted)"),
        (status = 403, description = "Not allowed to delete this user (`forbidden`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:forbidden", "title": "Forbidden", "status": 403, "detail": "you cannot delete yourself", "code": "forbidden"})),
    )
)]
#[delete("/users/{id}")]
pub async fn delete_user(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = principal.actor();
    let user_id = id.into_inner();
    let real_user = principal.real_user_id();
    let clock = state.clock.clone();
    let caller = principal.standing();
    let deleted = state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                let decide = |conn: &mut _| {
                    let (user, org) =
                        users::find_with_org(conn, user_id)?.ok_or_else(|| ApiError::not_found("user"))?;
                    actor.may_delete_user(&subject(&user, &org.org_path())).map_err(|d| denied("user", d))?;
                    Ok::<_, ApiError>(user)
                };
                // Refused as the rows are now: no lock taken. Else decided again under them.
                decide(conn)?;
                caller.lock_with(conn, &[(user_id, RowLock::Change)], &clock)?;
                let now = clock.now();
                let ctx = client.ending(real_user, &clock);
                let user = decide(conn)?;
                if user.status() == UserStatus::Deleted {
                    return Ok(false);
                }
                let update = users::Update { name: None, role: None, status: Some(UserStatus::Deleted), now };
                users::update(conn, user_id, update)?;
                audit::end_user_sessions(conn, user_id, StandingChange::Deleted, &ctx)?;
                Ok(true)
            })
        })
        .await?;
    if deleted {
        tracing::info!(user_id = %user_id, by = %principal.user.id.0, "user deleted");
    }
    Ok(HttpResponse::NoContent().finish())
}
