//! The OpenAPI document: the base (info, tags, security scheme) is declared
//! here; paths and schemas are collected from the routes as they are
//! registered (see `routes`), so the document cannot drift from the server.
//! `finish` then adds the error responses every operation shares.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::problem::{FieldError, Problem, PROBLEM_JSON};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "actas",
        description = "Consent-based admin impersonation.\n\nA customer grants time-limited consent; a support admin confirms with their own password and receives a token whose RFC 8693 `act` claim names them; every call is logged where the customer can read it; revoking consent ends the session on the very next request.\n\nAuthenticate with `POST /api/v1/auth/login`, then click **Authorize** and paste the `access_token`.\n\nEvery error is `application/problem+json` (RFC 9457) with a stable `code`; under `/oauth/` errors take the RFC 6749 form `{error, error_description, code}`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "auth", description = "Log in and out"),
        (name = "me", description = "The caller: profile, password, and the impersonation banner"),
        (name = "consent", description = "A user's consent to be impersonated"),
        (name = "impersonations", description = "Starting, stopping and reviewing impersonation sessions"),
        (name = "audit", description = "What was done as whom: request logs, lifecycle events, tamper evidence"),
        (name = "organizations", description = "The organization tree under the owner organization"),
        (name = "users", description = "Users, their roles and status"),
        (name = "oauth", description = "Standards: RFC 8693 token exchange, RFC 7662 introspection, RFC 7009 revocation, JWKS, RFC 8414 metadata"),
        (name = "health", description = "Liveness and readiness probes"),
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerScheme),
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An `access_token` from `POST /api/v1/auth/login` (EdDSA JWT, `typ: at+jwt`)."))
                    .build(),
            ),
        );
    }
}

/// Shared error responses: (name, status, description, code, example detail).
const SHARED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "MalformedRequest",
        "400",
        "The body is not valid JSON (`malformed_json`)",
        "malformed_json",
        "the request body is not valid JSON: expected value at line 1 column 1",
    ),
    (
        "Unauthorized",
        "401",
        "Missing, invalid or expired token, or its session has ended (`unauthorized`)",
        "unauthorized",
        "the session has ended",
    ),
    ("NotFound", "404", "No such resource, or not visible to the caller (`not_found`)", "not_found", "user not found"),
    (
        "PayloadTooLarge",
        "413",
        "The body is larger than 64 KiB (`payload_too_large`)",
        "payload_too_large",
        "the request body is larger than 65536 bytes",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The body is not `application/json` (`unsupported_media_type`)",
        "unsupported_media_type",
        "expected Content-Type: application/json",
    ),
    (
        "ValidationFailed",
        "422",
        "A field or parameter is missing or invalid (`validation_failed`)",
        "validation_failed",
        "email: must be an email address such as ada@example.com",
    ),
    (
        "InternalError",
        "500",
        "Unexpected server error (`internal_error`); details are in the server log only",
        "internal_error",
        "the server could not complete the request",
    ),
    (
        "ServiceUnavailable",
        "503",
        "The database is unreachable, the audit log could not record an impersonated request (which was therefore not performed), or the request collided with a concurrent one and was undone (`service_unavailable`); retry after `Retry-After`",
        "service_unavailable",
        "the service cannot reach its database; try again shortly",
    ),
];

fn shared_response(description: &str, status: &str, code: &str, detail: &str) -> Response {
    let status_num: u16 = status.parse().unwrap_or(500);
    let mut example = serde_json::json!({
        "type": format!("urn:actas:problem:{code}"),
        "title": title_for(status_num),
        "status": status_num,
        "detail": detail,
        "code": code,
    });
    if code == "validation_failed" {
        example["errors"] =
            serde_json::json!([{"field": "email", "message": "must be an email address such as ada@example.com"}]);
    }
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).example(Some(example)).build(),
        )
        .build()
}

fn title_for(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        404 => "Not found",
        413 => "Payload too large",
        415 => "Unsupported media type",
        422 => "Validation failed",
        500 => "Internal server error",
        _ => "Service unavailable",
    }
}

/// Adds the shared error responses to every operation they apply to.
pub fn finish(mut doc: OpenApiDoc) -> OpenApiDoc {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, status, description, code, detail) in SHARED {
        components.responses.insert((*name).to_owned(), RefOr::T(shared_response(description, status, code, detail)));
    }
    for (name, status, error, description) in OAUTH_SHARED {
        components.responses.insert((*name).to_owned(), RefOr::T(oauth_response(status, error, description)));
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_id = path.contains('{');
        let oauth = path.starts_with("/oauth/");
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            if oauth {
                add_oauth_shared(operation);
            } else {
                add_shared(operation, has_id);
            }
        }
    }
    doc
}

/// The server-side failures of `/oauth/*`, in the RFC 6749 format: (name, status, error, description).
const OAUTH_SHARED: &[(&str, u16, &str, &str)] = &[
    (
        "OAuthInternalError",
        500,
        "internal_error",
        "Unexpected server error (`server_error`); details are in the server log only",
    ),
    (
        "OAuthServiceUnavailable",
        503,
        "service_unavailable",
        "The database is unreachable (`server_error`); nothing was revoked or issued, try again",
    ),
];

fn oauth_response(status: &u16, code: &str, description: &str) -> Response {
    let example = serde_json::json!({
        "error": "server_error",
        "error_description": if *status == 503 { "the service cannot reach its database; try again shortly" } else { "the server could not complete the request" },
        "code": code,
    });
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("OAuthErrorBody"))).example(Some(example)).build(),
        )
        .build()
}

fn add_oauth_shared(op: &mut Operation) {
    for (name, status, _, _) in OAUTH_SHARED {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
    }
}

fn add_shared(op: &mut Operation, has_id: bool) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    // Query parameters can be invalid (422); a bad path id is simply not found (404).
    let has_params = op
        .parameters
        .as_ref()
        .is_some_and(|p| p.iter().any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query))));
    let mut wanted = vec![];
    if has_body {
        wanted.extend(["MalformedRequest", "PayloadTooLarge", "UnsupportedMediaType"]);
    }
    if has_body || has_params {
        wanted.push("ValidationFailed");
    }
    if secured {
        wanted.push("Unauthorized");
    }
    if has_id {
        wanted.push("NotFound");
    }
    wanted.push("InternalError");
    if secured || has_body {
        // Anything that reads the database can find it unreachable.
        wanted.push("ServiceUnavailable");
    }
    for name in wanted {
        let status = SHARED.iter().find(|s| s.0 == name).map(|s| s.1).unwrap_or("500");
        op.responses.responses.entry(status.to_owned()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}
