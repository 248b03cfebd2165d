//! The HTTP edge: routes, extractors, middleware, errors. Knows HTTP, not SQL.

pub mod attempts;
pub mod audit;
pub mod client;
pub mod controllers;
pub mod json;
pub mod middleware;
pub mod openapi;
pub mod paging;
pub mod principal;
pub mod problem;
pub mod query;
pub mod views;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::PathError;
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpResponse};
use utoipa::OpenApi as _;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{scope, AppExt};
use utoipa_swagger_ui::SwaggerUi;

use self::controllers::{
    audit as audit_log, auth, consent, health, impersonations, me, oauth, organizations, users, well_known,
};
use self::problem::ApiError;
use crate::state::AppState;
use crate::store::DbConnection;
use diesel::Connection;

pub use json::MAX_JSON_BYTES;

/// Every route, registered together with its OpenAPI description.
fn routes(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/api/v1")
            .service(auth::login)
            .service(auth::logout)
            .service(me::me)
            .service(me::change_password)
            .service(consent::get_consent)
            .service(consent::grant_consent)
            .service(consent::revoke_consent)
            .service(impersonations::start)
            .service(impersonations::list)
            .service(impersonations::get)
            .service(impersonations::stop)
            .service(audit_log::my_sessions)
            .service(audit_log::my_session_log)
            .service(audit_log::impersonation_log)
            .service(audit_log::events)
            .service(audit_log::verify)
            .service(organizations::create_organization)
            .service(organizations::list_organizations)
            .service(organizations::get_organization)
            .service(users::create_user)
            .service(users::list_users)
            .service(users::get_user)
            .service(users::update_user)
            .service(users::delete_user),
    )
    .service(oauth::exchange)
    .service(oauth::introspect)
    .service(oauth::revoke)
    .service(well_known::jwks)
    .service(well_known::metadata)
    .service(well_known::metadata_for_issuer_path)
    .service(health::healthz)
    .service(health::readyz)
    .service(health::metrics);
}

/// The OpenAPI document, exactly as served at `/api-docs/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, doc) = App::new().into_utoipa_app().openapi(openapi::ApiDoc::openapi()).configure(routes).split_for_parts();
    openapi::finish(doc)
}

/// The whole application: routes, documentation, error handling, middleware.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, doc) =
        App::new().into_utoipa_app().openapi(openapi::ApiDoc::openapi()).configure(routes).split_for_parts();
    let doc = openapi::finish(doc);
    let allowed = web::Data::new(RouteTable::from_openapi(&doc));
    let cors_origins = state.config.cors_allowed_origins.clone();
    app.app_data(web::Data::new(state))
        .app_data(allowed)
        .app_data(web::PayloadConfig::new(MAX_JSON_BYTES))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/api-docs/openapi.json", doc))
        .route(
            "/swagger-ui",
            web::get().to(|req: HttpRequest| async move {
                let location = match req.query_string() {
                    "" => "/swagger-ui/".to_owned(),
                    query => format!("/swagger-ui/?{query}"),
                };
                HttpResponse::PermanentRedirect().insert_header((header::LOCATION, location)).finish()
            }),
        )
        .default_service(web::to(fallback))
        .wrap(from_fn(middleware::head_as_get))
        .wrap(from_fn(principal::authenticate_requests))
        .wrap(from_fn(middleware::catch_panic))
        .wrap(middleware::problem_for_every_error())
        .wrap(audit::AuditTrail)
        // On with no origin configured too: a browser app then learns from its
        // preflight's answer which setting it lacks, instead of a bare refusal.
        .wrap(cors(&cors_origins))
        // The CORS layer's own refusals (an origin not allowed) are problems too.
        .wrap(middleware::problem_for_cors_refusals())
        // Preflights and CORS refusals carry these like every other response.
        .wrap(from_fn(middleware::security_headers))
        .wrap(from_fn(middleware::body_deadline))
        .wrap(from_fn(middleware::request_span))
}

/// CORS for single-page apps served from the configured origins. Tokens travel
/// in the Authorization header, never in cookies, so credentials stay off.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        // Any request header (tracing headers like `traceparent` too): without
        // cookies, a header grants a script nothing.
        .allow_any_header()
        .expose_headers([
            header::ALLOW,
            header::LOCATION,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

impl AppState {
    /// Runs blocking database work on the blocking thread pool. Inside an
    /// impersonated request it runs in that request's transaction, as a
    /// savepoint (see `audit`), so that its changes and the request's log row
    /// commit together.
    pub async fn db<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        match audit::REQUEST_DB.try_with(std::sync::Arc::clone) {
            Ok(shared) => {
                let turn = audit::RequestTransaction::wait_turn(&shared).await?;
                on_blocking_thread(move || {
                    let mut guard = shared.lock().map_err(|_| ApiError::unavailable("request connection poisoned"))?;
                    guard.conn(turn)?.transaction(work)
                })
                .await
            }
            Err(_) => self.db_own(work).await,
        }
    }

    /// Like `db`, on a pooled connection of its own even inside an
    /// impersonated request: for reads that need no part in the request's
    /// transaction (checking the caller's token), so that they neither open
    /// it early nor wait for the SQLite writer.
    pub async fn db_own<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        on_blocking_thread(move || {
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await
    }

    /// Like `db`, for work that writes. SQLite has one writer at a time:
    /// writers queue here, in the process, instead of sleeping in SQLite's busy
    /// handler (whose naps grow to 100 ms). They wait without holding a
    /// connection or a thread, so waiting writers never starve readers; an
    /// impersonated request holds the writer for its transaction already.
    pub async fn db_write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    {
        let writer = match (&self.sqlite_writer, audit::REQUEST_DB.try_with(|_| ())) {
            (Some(lock), Err(_)) => std::sync::Arc::clone(lock),
            _ => return self.db(work).await,
        };
        let queued = audit::take_writer(writer).await?;
        let pool = self.pool.clone();
        on_blocking_thread(move || {
            let _writer = queued;
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await
    }
}

/// Runs blocking work on the blocking thread pool, inside the caller's
/// tracing span (so its log lines belong to the request).
async fn on_blocking_thread<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    let span = tracing::Span::current();
    web::block(move || {
        let _in_request = span.enter();
        work()
    })
    .await
    .map_err(ApiError::internal)?
}

fn path_error(_: PathError, req: &HttpRequest) -> actix_web::Error {
    // A path segment that is not even a valid id cannot name any resource.
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        format!("nothing at {}: the id is not a valid UUID", req.path()),
    )
    .into()
}

/// Which methods each documented path answers, for 405 and `Allow`.
pub struct RouteTable(Vec<(Vec<String>, Vec<Method>)>);

impl RouteTable {
    fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = Vec::new();
        for (path, item) in &doc.paths.paths {
            let segments = path.split('/').map(str::to_owned).collect();
            let mut methods = Vec::new();
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ] {
                if op.is_some() {
                    // HEAD is answered wherever GET is (see `head_as_get`).
                    let with_head = method == Method::GET;
                    methods.push(method);
                    if with_head {
                        methods.push(Method::HEAD);
                    }
                }
            }
            routes.push((segments, methods));
        }
        // The documentation itself, served outside the document.
        for path in ["/api-docs/openapi.json", "/swagger-ui", "/swagger-ui/", "/swagger-ui/{file}"] {
            routes.push((path.split('/').map(str::to_owned).collect(), vec![Method::GET, Method::HEAD]));
        }
        Self(routes)
    }

    fn allowed(&self, path: &str) -> Option<&[Method]> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(pattern, _)| {
                pattern.len() == wanted.len()
                    && pattern.iter().zip(&wanted).all(|(p, w)| (p.starts_with('{') && !w.is_empty()) || p == w)
            })
            .map(|(_, methods)| methods.as_slice())
    }
}

async fn fallback(req: HttpRequest, routes: web::Data<RouteTable>) -> Result<HttpResponse, actix_web::Error> {
    let error = match unrouted(&req, &routes) {
        Ok(response) => return Ok(response),
        Err(error) => error,
    };
    // SPEC §6: everything under /oauth/ answers errors the RFC 6749 way.
    if req.match_info().as_str().starts_with("/oauth/") {
        return Err(controllers::oauth::OAuthError::routing(error).into());
    }
    Err(error.into())
}

fn unrouted(req: &HttpRequest, routes: &RouteTable) -> Result<HttpResponse, ApiError> {
    let path = req.match_info().as_str();
    let Some(methods) = routes.allowed(path) else {
        let mut detail = format!("no route for {} {}", req.method(), req.path());
        // Paths are exact; a stray trailing slash is the usual slip.
        let trimmed = path.trim_end_matches('/');
        if trimmed.len() < path.len() && !trimmed.is_empty() && routes.allowed(trimmed).is_some() {
            detail.push_str(&format!("; did you mean {trimmed} (without the trailing slash)?"));
        }
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail));
    };
    let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    if req.method() == Method::OPTIONS {
        return Ok(HttpResponse::NoContent().insert_header((header::ALLOW, allow)).finish());
    }
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!("{} is not supported here; allowed: {allow}", req.method()),
    )
    .with_header(header::ALLOW, allow))
}
