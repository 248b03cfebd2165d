use actix_web::{delete, get, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::domain::consent::DurationHours;
use crate::domain::events::Event;
use crate::http::client::ClientInfo;
use crate::http::json::JsonBody;
use crate::http::principal::{OwnToken, Principal};
use crate::http::problem::{ApiError, Problem};
use crate::state::AppState;
use crate::store::audit;
use crate::store::consents::{self, Consent};
use crate::store::impersonations;
use crate::store::users::RowLock;
use crate::store::write_transaction;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"active": true, "granted_at": "2026-11-21T09:00:00Z", "expires_at": "2026-11-22T09:00:00Z", "duration_hours": 24, "revoked_at": null}))]
pub struct ConsentView {
    /// Whether support staff may impersonate you right now.
    pub active: bool,
    /// When the most recent consent was granted; `null` if you never granted one.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub granted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub expires_at: Option<OffsetDateTime>,
    #[schema(required = true)]
    pub duration_hours: Option<i32>,
    /// When you revoked it, if you did.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ConsentView {
    fn of(consent: Option<&Consent>, now: OffsetDateTime) -> Self {
        Self {
            active: consent.is_some_and(|c| c.is_active(now)),
            granted_at: consent.map(|c| *c.granted_at),
            expires_at: consent.map(|c| *c.expires_at),
            duration_hours: consent.map(|c| c.duration_hours),
            revoked_at: consent.and_then(|c| c.revoked_at.map(Into::into)),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"duration_hours": 24}))]
pub struct GrantConsentRequest {
    /// Whole hours, 1 to 168 (one week).
    // Kept as written: a float would take `0.99999999999999999` for 1.
    #[schema(value_type = i64, minimum = 1, maximum = 168)]
    pub duration_hours: Box<serde_json::value::RawValue>,
}

/// Your impersonation consent: whether support may act as you, and until when.
///
/// `active: false` when there is none, or it expired or was revoked; the
/// other fields then describe the most recent consent (all `null` if you
/// never granted one).
#[utoipa::path(tag = "consent", security(("bearer" = [])), responses((status = 200, description = "Your current consent", body = ConsentView)))]
#[get("/me/impersonation-consent")]
pub async fn get_consent(state: web::Data<AppState>, principal: Principal) -> Result<web::Json<ConsentView>, ApiError> {
    let user_id = *principal.user.id;
    let latest = state.db(move |conn| Ok(consents::latest(conn, user_id)?)).await?;
    Ok(web::Json(ConsentView::of(latest.as_ref(), state.clock.now())))
}

/// Grant consent to be impersonated for 1 to 168 hours.
///
/// Granting again replaces the active consent (history is kept). A shorter new
/// consent also shortens sessions already running.
#[utoipa::path(
    tag = "consent",
    security(("bearer" = [])),
    request_body(content = GrantConsentRequest, description = "For how many whole hours (1 to 168) support may act as you"),
    responses(
        (status = 200, description = "Consent granted", body = ConsentView),
        (status = 403, description = "Not allowed with an impersonation token (`impersonation-restricted`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:impersonation-restricted", "title": "Forbidden", "status": 403, "detail": "this action is not allowed while impersonating", "code": "impersonation-restricted"})),
        (status = 422, description = "`duration_hours` missing, fractional, or outside 1..=168 (`validation_failed`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:validation_failed", "title": "Validation failed", "status": 422, "detail": "duration_hours: must be a whole number from 1 to 168", "code": "validation_failed", "errors": [{"field": "duration_hours", "message": "must be a whole number from 1 to 168"}]})),
    )
)]
#[put("/me/impersonation-consent")]
pub async fn grant_consent(
    state: web::Data<AppState>,
    principal: Principal,
    _own: OwnToken,
    client: ClientInfo,
    body: JsonBody<GrantConsentRequest>,
) -> Result<web::Json<ConsentView>, ApiError> {
    let hours = DurationHours::parse(body.duration_hours.get())?;
    let (user_id, caller) = (*principal.user.id, principal.standing());
    let clock = state.clock.clone();
    let (consent, now) = state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                // A logout or expiry of the caller's login that came first wins.
                caller.lock_with(conn, &[(user_id, RowLock::Change)], &clock)?;
                // Stamped once the grant's turn has come: concurrent grants
                // are then timed in the order they take effect.
                let now = clock.now();
                let ctx = client.event(user_id, now);
                let consent = consents::grant(conn, user_id, hours, now)?;
                impersonations::clamp_expiry_for_target(conn, user_id, *consent.expires_at, now)?;
                let event =
                    Event::ConsentGranted { duration_hours: consent.duration_hours, expires_at: *consent.expires_at };
                audit::record(conn, &ctx, &event, user_id, None)?;
                Ok::<_, ApiError>((consent, now))
            })
        })
        .await?;
    tracing::info!(user_id = %user_id, hours = hours.hours(), "impersonation consent granted");
    Ok(web::Json(ConsentView::of(Some(&consent), now)))
}

/// Revoke your consent. Every running impersonation of you ends at once.
///
/// Their tokens are refused from the next request on (`end_reason:
/// consent_revoked`). Idempotent: 204 also without an active consent. Not
/// allowed with an impersonation token.
#[utoipa::path(
    tag = "consent",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked (also when there was nothing to revoke)"),
        (status = 403, description = "Not allowed with an impersonation token (`impersonation-restricted`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:impersonation-restricted", "title": "Forbidden", "status": 403, "detail": "this action is not allowed while impersonating", "code": "impersonation-restricted"})),
    )
)]
#[delete("/me/impersonation-consent")]
pub async fn revoke_consent(
    state: web::Data<AppState>,
    principal: Principal,
    _own: OwnToken,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    let (user_id, caller) = (*principal.user.id, principal.standing());
    let clock = state.clock.clone();
    let ended = state
        .db_write(move |conn| {
            write_transaction(conn, |conn| {
                caller.lock_with(conn, &[(user_id, RowLock::Change)], &clock)?;
                // Timed after the lock: the requests it waited for came before the revocation.
                let ctx = client.ending(user_id, &clock);
                Ok::<_, ApiError>(audit::revoke_consent(conn, user_id, &ctx)?)
            })
        })
        .await?;
    tracing::info!(user_id = %user_id, sessions_ended = ended, "impersonation consent revoked");
    Ok(HttpResponse::NoContent().finish())
}
