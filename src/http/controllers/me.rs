use actix_web::{get, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::impersonation::{self, EndReason, Permission};
use crate::domain::types::NewPassword;
use crate::http::attempts;
use crate::http::client::ClientInfo;
use crate::http::json::JsonBody;
use crate::http::principal::{OwnToken, Principal};
use crate::http::problem::{ApiError, Problem};
use crate::http::views::{OrganizationView, PersonRef, UserView};
use crate::state::AppState;
use crate::store::attempts::{self as attempt_store, Scope};
use crate::store::audit;
use crate::store::impersonations::Running;
use crate::store::sessions::{self, LoginEnd};
use crate::store::{users, write_transaction};

/// The caller, with their organization.
#[derive(Serialize, ToSchema)]
pub struct MeUser {
    #[serde(flatten)]
    pub user: UserView,
    pub organization: OrganizationView,
}

/// Who is really acting, for a banner with a countdown.
#[derive(Serialize, ToSchema)]
#[schema(example = banner_example)]
pub struct ImpersonationBanner {
    pub session_id: Uuid,
    pub impersonator: PersonRef,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Seconds left when this answer was made: count down from it rather than
    /// from `expires_at` and the browser's clock, which may be off.
    #[schema(example = 1800)]
    pub expires_in: i64,
}

fn banner_example() -> serde_json::Value {
    json!({
        "session_id": "0193a5d0-1111-7222-8333-944455556666",
        "impersonator": {"id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31", "email": "sam@support.example", "name": "Sam Support"},
        "started_at": "2026-11-21T10:00:00Z",
        "expires_at": "2026-11-21T10:30:00Z",
        "expires_in": 1800
    })
}

#[derive(Serialize, ToSchema)]
#[schema(example = own_token_example)]
pub struct MeResponse {
    pub user: MeUser,
    /// What the caller may do beyond their role's basics, to decide which
    /// tools to show: `impersonate:users` (super admins: anyone but another
    /// super admin), `impersonate:customers` (other owner-organization users:
    /// users of organizations below it). Empty while impersonating.
    pub permissions: Vec<Permission>,
    /// `null` unless the token is an impersonation token.
    #[schema(required = true)]
    pub impersonation: Option<ImpersonationBanner>,
}

fn own_token_example() -> serde_json::Value {
    me_example(false)
}

fn me_example(impersonating: bool) -> serde_json::Value {
    json!({
        "user": {
            "id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b", "email": "ada@acme.example", "name": "Ada Lovelace",
            "organization_id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40", "role": "member", "status": "active",
            "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:30:00Z",
            "organization": {"id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40", "name": "Acme Corp",
                "parent_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e30", "depth": 1, "is_owner": false, "created_at": "2026-11-21T09:00:00Z"}
        },
        "permissions": [],
        "impersonation": if impersonating { banner_example() } else { serde_json::Value::Null }
    })
}

/// The caller: user, organization, and whether someone is acting as them.
///
/// With an impersonation token, `user` is the impersonated user and
/// `impersonation` names the impersonator and the session's start and expiry:
/// everything a banner with a countdown needs.
#[utoipa::path(operation_id = "get_me", 
    tag = "me",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = MeResponse, examples(
        ("impersonating" = (summary = "With an impersonation token: show a banner until `expires_at`", value = json!(me_example(true)))),
        ("own token" = (summary = "With your own token", value = json!(me_example(false)))),
    ))),
)]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, principal: Principal) -> web::Json<MeResponse> {
    let now = state.clock.now();
    let impersonation = principal.impersonation.as_ref().map(|i| ImpersonationBanner {
        session_id: *i.session.id,
        impersonator: PersonRef::of(Some(&i.impersonator), *i.impersonator.id),
        started_at: *i.session.started_at,
        expires_at: *i.session.expires_at,
        expires_in: (*i.session.expires_at - now).whole_seconds().max(0),
    });
    let org = principal.organization.org_path();
    let permissions = impersonation::permissions(&principal.party(&org), principal.impersonation.is_some());
    web::Json(MeResponse {
        permissions,
        user: MeUser {
            user: UserView::from(&principal.user),
            organization: OrganizationView::from(&principal.organization),
        },
        impersonation,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery staple", "new_password": "a much longer passphrase 2026"}))]
pub struct ChangePasswordRequest {
    #[schema(min_length = 1, format = Password)]
    pub current_password: String,
    /// At least 12 characters (at most 1024 bytes).
    #[schema(min_length = 12, format = Password)]
    pub new_password: String,
}

/// Change your own password.
///
/// Requires the current password (wrong guesses are rate limited like logins).
/// Every other login session of yours ends; the one making this call stays.
#[utoipa::path(
    tag = "me",
    security(("bearer" = [])),
    request_body(content = ChangePasswordRequest, description = "Your current password and the new one"),
    responses(
        (status = 204, description = "Password changed; other sessions ended"),
        (status = 403, description = "The current password is wrong (`reauthentication_failed`), or the token is an impersonation token (`impersonation-restricted`)", body = Problem, content_type = "application/problem+json",
            examples(
                ("reauthentication_failed" = (value = json!({"type": "urn:actas:problem:reauthentication_failed", "title": "Forbidden", "status": 403, "detail": "the current password is incorrect", "code": "reauthentication_failed"}))),
                ("impersonation-restricted" = (value = json!({"type": "urn:actas:problem:impersonation-restricted", "title": "Forbidden", "status": 403, "detail": "this action is not allowed while impersonating", "code": "impersonation-restricted"}))),
            )),
        (status = 429, description = "Too many wrong passwords (`rate_limited`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait")),
            example = json!({"type": "urn:actas:problem:rate_limited", "title": "Too many attempts", "status": 429, "detail": "too many failed attempts; try again in 840 seconds", "code": "rate_limited"})),
    )
)]
#[put("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    principal: Principal,
    _own: OwnToken,
    client: ClientInfo,
    body: JsonBody<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let ChangePasswordRequest { current_password, new_password } = body.into_inner();
    if current_password.is_empty() {
        return Err(ApiError::invalid_field("current_password", "must not be empty"));
    }
    let new_password = NewPassword::parse("new_password", &new_password)?;
    if new_password.expose() == current_password {
        return Err(ApiError::invalid_field("new_password", "must differ from the current password"));
    }
    let user_id = *principal.user.id;
    let subject = user_id.to_string();
    let attempt = attempts::admit(&state, &[(Scope::Reauthentication, subject.clone())]).await?;
    if !attempt.verify(&state, current_password, Some(principal.user.password_hash.clone())).await? {
        attempt.failed(&state).await;
        return Err(ApiError::forbidden("reauthentication_failed", "the current password is incorrect"));
    }
    let hash = match state.hasher.hash(new_password.expose().to_owned()).await {
        Ok(hash) => hash,
        Err(error) => {
            attempt.withdraw(&state).await;
            return Err(error.into());
        }
    };
    let attempt_ids = attempt.ids;
    let keep = principal.session_id;
    let verified_hash = principal.user.password_hash.clone();
    let clock = state.clock.clone();
    let ended = state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                users::lock(conn, &[user_id])?;
                let now = clock.now();
                let ctx = client.ending(user_id, &clock);
                // The password was right: its attempt is settled, not a failure,
                // even if the change itself is refused below.
                attempt_store::forget(conn, &attempt_ids)?;
                // What was verified must still hold: a change, suspension or
                // logout that committed meanwhile wins over this request.
                if sessions::find_live(conn, keep, now)?.is_none() {
                    return Ok(Err(ApiError::unauthorized("the session has ended")));
                }
                let current = users::find_with_org(conn, user_id)?;
                if current.is_none_or(|(user, _)| user.password_hash != verified_hash) {
                    let changed = "the current password was changed by another request meanwhile";
                    return Ok(Err(ApiError::forbidden("reauthentication_failed", changed)));
                }
                attempt_store::clear(conn, Scope::Reauthentication, &subject)?;
                users::set_password_hash(conn, user_id, &hash, now)?;
                // Impersonations started from the sessions that end, end too.
                audit::end_sessions(
                    conn,
                    Running::ImpersonatorExceptLogin { impersonator: user_id, keep },
                    EndReason::Logout,
                    &ctx,
                )?;
                Ok(Ok(sessions::end_all_for_user(conn, user_id, Some(keep), LoginEnd::PasswordChanged, now)?))
            })
        })
        .await??;
    tracing::info!(user_id = %user_id, other_sessions_ended = ended, "password changed");
    Ok(HttpResponse::NoContent().finish())
}
