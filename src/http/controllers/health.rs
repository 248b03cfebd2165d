use std::sync::atomic::Ordering;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::problem::ApiError;
use crate::state::AppState;
use crate::store::metrics as store_metrics;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    pub status: HealthStatus,
}

/// `ok`: the process is up (`/healthz`); `ready`: the database answers too (`/readyz`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Ready,
}

/// Prometheus metrics, in the text exposition format.
///
/// `actas_http_responses_total` and `actas_impersonated_requests_total` count
/// on this node; the gauges read the shared database, so every node reports
/// the same value for them. Unauthenticated, like the probes: expose it only
/// to your monitoring network.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String,
            example = "# TYPE actas_impersonation_sessions_active gauge\nactas_impersonation_sessions_active 3\n"),
        (status = 503, description = "Database unreachable (`service_unavailable`)", body = crate::http::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")), example = json!({"type": "urn:actas:problem:service_unavailable", "title": "Service unavailable", "status": 503, "detail": "the service is busy or cannot reach its database; try again shortly", "code": "service_unavailable"})),
    )
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    // Its own connection, never an impersonated request's transaction: a
    // probe does not look at the caller, whose token may have ended.
    let gauges = state.db_own(move |conn| store_metrics::gauges(conn, now).map_err(ApiError::unavailable)).await?;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    metric(
        "actas_http_responses_total",
        "counter",
        "HTTP responses by status class, on this node.",
        classes
            .iter()
            .zip(&state.metrics.responses)
            .map(|(c, n)| (format!("{{class=\"{c}\"}}"), n.load(Ordering::Relaxed)))
            .collect(),
    );
    metric(
        "actas_impersonated_requests_total",
        "counter",
        "Requests made with an impersonation token, on this node.",
        vec![(String::new(), state.metrics.impersonated_requests.load(Ordering::Relaxed))],
    );
    let gauge = |value: u64| vec![(String::new(), value)];
    metric(
        "actas_impersonation_sessions_active",
        "gauge",
        "Impersonation sessions running now.",
        gauge(gauges.impersonations_active),
    );
    metric("actas_login_sessions_active", "gauge", "Login sessions open now.", gauge(gauges.logins_active));
    metric(
        "actas_consents_active",
        "gauge",
        "Users whose impersonation consent is active now.",
        gauge(gauges.consents_active),
    );
    metric(
        "actas_request_log_rows",
        "gauge",
        "Rows in the request log (its chain length).",
        gauge(gauges.request_log_rows),
    );
    metric(
        "actas_audit_events_rows",
        "gauge",
        "Rows in the audit events (its chain length).",
        gauge(gauges.audit_event_rows),
    );
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(out))
}

/// Liveness: the process is up and serving.
///
/// Touches no database: use it as the liveness probe.
#[utoipa::path(tag = "health", responses((status = 200, description = "Up", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: HealthStatus::Ok })
}

/// Readiness: the database answers and holds our schema. 503 when it does not.
///
/// Answers within a second, busy or down: use it as the load balancer's
/// readiness probe.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "Database unreachable (`service_unavailable`)", body = crate::http::problem::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")), example = json!({"type": "urn:actas:problem:service_unavailable", "title": "Service unavailable", "status": 503, "detail": "the service is busy or cannot reach its database; try again shortly", "code": "service_unavailable"})),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Health>, ApiError> {
    let pool = state.pool.clone();
    web::block(move || {
        // Probes time out after a second or two: answer within that, busy or down.
        let mut conn = pool.get_timeout(READINESS_TIMEOUT).map_err(ApiError::unavailable)?;
        crate::store::pool::check_schema(&mut conn).map_err(ApiError::unavailable)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(web::Json(Health { status: HealthStatus::Ready }))
}

const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(900);
