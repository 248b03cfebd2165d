use actix_web::{get, web};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::problem::ApiError;
use crate::state::AppState;
use crate::store::schema::organizations;
use crate::store::sql_types::DbUuid;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok` (process up) or `ready` (database reachable).
    pub status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(tag = "health", responses((status = 200, description = "Up", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness: the database answers and holds our schema. 503 when it does not.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "Database unreachable (`service_unavailable`)", body = crate::http::problem::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Health>, ApiError> {
    state
        .db(|conn| {
            organizations::table
                .select(organizations::id)
                .limit(1)
                .load::<DbUuid>(conn)
                .map(|_| ())
                .map_err(ApiError::unavailable)
        })
        .await?;
    Ok(web::Json(Health { status: "ready" }))
}
