use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use time::Duration;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::tokens::TokenRequest;
use crate::domain::impersonation::EndReason;
use crate::domain::types::{Email, NewPassword};
use crate::http::attempts;
use crate::http::client::ClientInfo;
use crate::http::json::JsonBody;
use crate::http::principal::{NoImpersonationToken, Principal};
use crate::http::problem::{ApiError, Problem};
use crate::http::views::{TokenType, UserView};
use crate::state::AppState;
use crate::store::attempts::{self as attempt_store, Scope};
use crate::store::audit;
use crate::store::impersonations::{self, Running};
use crate::store::sessions::{self, LoginEnd, LoginSession};
use crate::store::sql_types::{DbTime, DbUuid};
use crate::store::{users, write_transaction};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "admin@localhost", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, format = Password)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    "token_type": "Bearer",
    "expires_in": 3600,
    "user": {
        "id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b", "email": "admin@localhost", "name": "Administrator",
        "organization_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e30", "role": "super_admin", "status": "active",
        "created_at": "2026-11-21T09:00:00Z", "updated_at": "2026-11-21T09:00:00Z"
    }
}))]
pub struct LoginResponse {
    /// EdDSA-signed JWT (`typ: at+jwt`); send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: TokenType,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub user: UserView,
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "Unauthorized",
        "email or password is incorrect",
    )
    // Every 401 names a way to authenticate (RFC 9110 §15.5.2): the tokens this call issues.
    .with_header(actix_web::http::header::WWW_AUTHENTICATE, "Bearer")
}

/// Log in with email and password.
///
/// Returns a login token for the `Authorization: Bearer` header. Failed attempts
/// are limited per email and per client IP (default 5 per 15 minutes, then 429
/// with `Retry-After`). An unknown email, a wrong password and a suspended
/// account all answer the same `invalid_credentials`, in the same time.
#[utoipa::path(
    tag = "auth",
    request_body(content = LoginRequest, description = "Your email (any case) and password"),
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`")),
            example = json!({"type": "urn:actas:problem:invalid_credentials", "title": "Unauthorized", "status": 401, "detail": "email or password is incorrect", "code": "invalid_credentials"})),
        (status = 403, description = "Sent with an impersonation token (`impersonation-restricted`): log out of it first", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:impersonation-restricted", "title": "Forbidden", "status": 403, "detail": "send this request without the impersonation token in Authorization", "code": "impersonation-restricted"})),
        (status = 429, description = "Too many failed attempts (`rate_limited`); see `Retry-After`", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait")),
            example = json!({"type": "urn:actas:problem:rate_limited", "title": "Too many attempts", "status": 429, "detail": "too many failed attempts; try again in 840 seconds", "code": "rate_limited"})),
    )
)]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    _not_impersonating: NoImpersonationToken,
    client: ClientInfo,
    body: JsonBody<LoginRequest>,
) -> Result<web::Json<LoginResponse>, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    // Not parsed: a malformed email is just a wrong one, answered alike.
    let email = Email::normalize(&email);
    if email.is_empty() || password.is_empty() {
        return Err(ApiError::invalid_field(if email.is_empty() { "email" } else { "password" }, "must not be empty"));
    }
    if email.len() > Email::MAX_LEN {
        return Err(ApiError::invalid_field("email", format!("must be at most {} bytes", Email::MAX_LEN)));
    }
    // No password this long can be set: wrong, without hashing it.
    if password.len() > NewPassword::MAX_BYTES {
        return Err(invalid_credentials());
    }
    let now = state.clock.now();
    let ip = client.ip_key();

    let attempt = attempts::admit(&state, &[(Scope::LoginEmail, email.clone()), (Scope::LoginIp, ip)]).await?;
    let user = {
        let email = email.clone();
        state.db(move |conn| Ok(users::find_live_by_email(conn, &email)?)).await?
    };
    let verified = attempt.verify(&state, password, user.as_ref().map(|u| u.password_hash.clone())).await?;
    let user = match user {
        Some(user) if verified && user.is_active() => user,
        _ => {
            attempt.failed(&state).await;
            return Err(invalid_credentials());
        }
    };
    let attempt_ids = attempt.ids;

    let session = LoginSession {
        id: DbUuid(Uuid::now_v7()),
        user_id: user.id,
        created_at: DbTime(now),
        expires_at: DbTime(now + Duration::minutes(state.config.access_token_minutes)),
        ended_at: None,
        end_reason: None,
        ip: client.ip,
        user_agent: client.user_agent,
    };
    let token = state.tokens().sign(TokenRequest {
        subject: *user.id,
        session_id: *session.id,
        organization_id: *user.organization_id,
        role: user.role(),
        actor: None,
        issued_at: now,
        expires_at: *session.expires_at,
    });
    let stored = session.clone();
    let verified_hash = user.password_hash.clone();
    state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                // A password change, suspension or deletion that committed while
                // the hash was being checked wins: its end-all-sessions has run.
                users::lock(conn, &[*stored.user_id])?;
                let current = users::find_with_org(conn, *stored.user_id)?;
                if !current.is_some_and(|(u, _)| u.is_active() && u.password_hash == verified_hash) {
                    return Err(invalid_credentials());
                }
                // A successful login is not a failure, and clears the email's earlier failures.
                attempt_store::forget(conn, &attempt_ids)?;
                attempt_store::clear(conn, Scope::LoginEmail, &email)?;
                Ok(sessions::insert(conn, &stored)?)
            })
        })
        .await?;
    tracing::info!(user_id = %*user.id, session_id = %*session.id, "login");
    Ok(web::Json(LoginResponse {
        access_token: token,
        token_type: TokenType::Bearer,
        expires_in: (*session.expires_at - now).whole_seconds(),
        user: UserView::from(&user),
    }))
}

/// Log out: end the session of the token used.
///
/// With a login token, every impersonation started from that login session
/// ends too (`end_reason` `logout`). With an impersonation token, the
/// impersonation is stopped (`stopped`). Either way the token is refused from
/// the next request on.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Session ended")),
)]
#[post("/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    let (user_id, session_id, impersonating) =
        (principal.real_user_id(), principal.session_id, principal.impersonation.is_some());
    end_token_session(&state, &principal, client).await?;
    tracing::info!(user_id = %user_id, session_id = %session_id, impersonating, "logout");
    Ok(HttpResponse::NoContent().finish())
}

/// Ends what a token names: an impersonation session (`stopped`), or a login
/// session together with every impersonation started from it (`logout`).
/// Logout and RFC 7009 revocation both come here.
pub async fn end_token_session(state: &AppState, principal: &Principal, client: ClientInfo) -> Result<(), ApiError> {
    let (session_id, user_id) = (principal.session_id, principal.real_user_id());
    let impersonating = principal.impersonation.is_some();
    let clock = state.clock.clone();
    state
        .db_write(move |conn| {
            Ok(write_transaction(conn, |conn| {
                if impersonating {
                    impersonations::lock(conn, session_id)?;
                    let ctx = client.ending(user_id, &clock);
                    audit::end_sessions(conn, Running::Id(session_id), EndReason::Stopped, &ctx)?;
                } else {
                    // Serialized with starts by this user, so none slips past the logout.
                    users::lock(conn, &[user_id])?;
                    let ctx = client.ending(user_id, &clock);
                    audit::end_sessions(conn, Running::LoginSession(session_id), EndReason::Logout, &ctx)?;
                    // Timed after every lock, its impersonations' included: the
                    // requests it waited for came before the end, and the login
                    // ends no earlier than the sessions it takes along.
                    sessions::end(conn, session_id, LoginEnd::Logout, clock.now())?;
                }
                Ok::<_, diesel::result::Error>(())
            })?)
        })
        .await
}
