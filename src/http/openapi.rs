//! The OpenAPI document: the base (info, tags, security scheme) is declared
//! here; paths and schemas are collected from the routes as they are
//! registered (see `routes`), so the document cannot drift from the server.
//! `finish` then adds the error responses every operation shares.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::problem::{FieldError, Problem, PROBLEM_JSON};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "actas",
        description = "Consent-based admin impersonation.\n\nA customer grants time-limited consent; a support admin confirms with their own password and receives a token whose RFC 8693 `act` claim names them; every call is logged where the customer can read it; revoking consent ends the session on the very next request.\n\nAuthenticate with `POST /api/v1/auth/login`, then click **Authorize** and paste the `access_token`.\n\nEvery error is `application/problem+json` (RFC 9457) with a stable `code`; under `/oauth/` errors take the RFC 6749 form `{error, error_description, code}`.\n\nQuery parameters: an empty value (`?status=`) means the parameter is not given; on the list endpoints an unknown parameter is refused (422), except `_`, the cache buster some clients append. Text fields refuse control characters and NUL (422).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    servers((url = "/", description = "This server")),
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
                    .description(Some(
                        "An `access_token` from `POST /api/v1/auth/login` (EdDSA JWT, `typ: at+jwt`); to act \
                         as a customer, paste an impersonation token from `POST /api/v1/impersonations` instead.",
                    ))
                    .build(),
            ),
        );
    }
}

/// A person's or organization's name as `Name::parse` accepts it: 1–200
/// characters once trimmed, not only spaces, no control characters.
pub fn display_name_schema() -> Object {
    let no_control = r"[^\u0000-\u001F\u007F-\u009F]";
    let visible = r"[^\s\u0000-\u001F\u007F-\u009F]";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::domain::types::Name::MAX_CHARS))
        .pattern(Some(format!("^{no_control}*{visible}{no_control}*$")))
        .description(Some("1–200 characters (trimmed), not only spaces, no control characters"))
        .build()
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
    ("UserNotFound", "404", "No such user, or not visible to the caller (`not_found`)", "not_found", "user not found"),
    (
        "OrganizationNotFound",
        "404",
        "No such organization, or not visible to the caller (`not_found`)",
        "not_found",
        "organization not found",
    ),
    (
        "SessionNotFound",
        "404",
        "No such impersonation session, or not visible to the caller (`not_found`)",
        "not_found",
        "impersonation session not found",
    ),
    (
        "RequestTimeout",
        "408",
        "The body did not arrive within 15 seconds of the headers (`request_timeout`)",
        "request_timeout",
        "the request body did not arrive within 15 seconds",
    ),
    (
        "PayloadTooLarge",
        "413",
        "The body is larger than 64 KiB (`payload_too_large`)",
        "payload_too_large",
        "the request body is larger than 65536 bytes",
    ),
    (
        "LoggedBodyTooLarge",
        "413",
        "With an impersonation token, any body over 64 KiB, even one this operation ignores: every request of the session is logged with its body (`payload_too_large`)",
        "payload_too_large",
        "the request body is larger than 65536 bytes",
    ),
    (
        "LoggedRequestTimeout",
        "408",
        "With an impersonation token, a body that does not arrive within 15 seconds of the headers, even one this operation ignores: every request of the session is logged with its body (`request_timeout`)",
        "request_timeout",
        "the request body did not arrive within 15 seconds",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The body is not `application/json`, or is compressed (`Content-Encoding`; `unsupported_media_type`)",
        "unsupported_media_type",
        "expected Content-Type: application/json",
    ),
    (
        "ValidationFailed",
        "422",
        "A body field is missing or invalid (`validation_failed`); `errors[].field` names it",
        "validation_failed",
        "name: must be 1 to 200 characters",
    ),
    (
        "InvalidQuery",
        "422",
        "A query parameter is invalid or unknown (`validation_failed`); `errors[].field` names it",
        "validation_failed",
        "limit: must be a whole number from 1 to 200",
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
        "the service is busy or cannot reach its database; try again shortly",
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
    if let Some((field, message)) = detail.split_once(": ").filter(|_| code == "validation_failed") {
        example["errors"] = serde_json::json!([{"field": field, "message": message}]);
    }
    let mut response = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).example(Some(example)).build(),
    );
    if status_num == 401 {
        let challenge = HeaderBuilder::new()
            .schema(Some(Object::with_type(Type::String)))
            .description(Some("`Bearer` (RFC 6750), with `error=\"invalid_token\"` when a token was sent"));
        response = response.header("WWW-Authenticate", challenge.build());
    }
    if status_num == 503 {
        response = response.header("Retry-After", retry_after());
    }
    response.build()
}

/// Every 503 says when to try again.
fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::Integer)))
        .description(Some("Seconds to wait before trying again"))
        .build()
}

fn title_for(status: u16) -> &'static str {
    let status =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    super::middleware::generic_error(status).title
}

/// Adds the shared error responses to every operation they apply to.
pub fn finish(mut doc: OpenApiDoc) -> OpenApiDoc {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, status, description, code, detail) in SHARED {
        components.responses.insert((*name).to_owned(), RefOr::T(shared_response(description, status, code, detail)));
    }
    for (name, status, error, code, description, example) in OAUTH_SHARED {
        let response = oauth_response(*status, error, code, description, example);
        components.responses.insert((*name).to_owned(), RefOr::T(response));
    }
    add_page_examples(&mut components.schemas);
    let schemas = &components.schemas;
    for (path, item) in doc.paths.paths.iter_mut() {
        let oauth = path.starts_with("/oauth/");
        // The 404 of a path with an id names what was not found.
        let not_found = match path.as_str() {
            p if !p.contains('{') => None,
            p if p.contains("/users/") => Some("UserNotFound"),
            p if p.contains("/organizations/") => Some("OrganizationNotFound"),
            _ => Some("SessionNotFound"),
        };
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            if oauth {
                add_oauth_shared(operation);
            } else {
                add_shared(operation, not_found, schemas);
            }
        }
    }
    doc
}

/// A `next_cursor` as the lists hand them out (opaque to clients).
const EXAMPLE_CURSOR: &str = "AQGTpcSMHn0inzprHS4_Sls";

/// Gives every list page (`{items, next_cursor}`) an example built from its
/// item's, so that each list shows one without repeating the item example.
fn add_page_examples(schemas: &mut BTreeMap<String, RefOr<Schema>>) {
    use utoipa::openapi::schema::ArrayItems;
    let item_example = |schemas: &BTreeMap<String, RefOr<Schema>>, page: &Object| {
        let RefOr::T(Schema::Array(items)) = page.properties.get("items")? else { return None };
        let ArrayItems::RefOrSchema(item) = &items.items else { return None };
        let RefOr::Ref(reference) = item.as_ref() else { return None };
        match schemas.get(reference.ref_location.rsplit('/').next()?)? {
            RefOr::T(Schema::Object(item)) => item.example.clone(),
            RefOr::T(Schema::AllOf(item)) => item.example.clone(),
            _ => None,
        }
    };
    let pages: Vec<(String, serde_json::Value)> = schemas
        .iter()
        .filter_map(|(name, schema)| match schema {
            RefOr::T(Schema::Object(page))
                if page.example.is_none()
                    && page.properties.len() == 2
                    && page.properties.contains_key("next_cursor") =>
            {
                item_example(schemas, page).map(|item| (name.clone(), item))
            }
            _ => None,
        })
        .collect();
    for (name, item) in pages {
        if let Some(RefOr::T(Schema::Object(page))) = schemas.get_mut(&name) {
            page.example = Some(serde_json::json!({"items": [item], "next_cursor": EXAMPLE_CURSOR}));
        }
    }
}

/// The first required field of an operation's JSON body, for its 422 example.
fn first_required_field(op: &Operation, schemas: &BTreeMap<String, RefOr<Schema>>) -> Option<String> {
    let RefOr::T(body) = op.request_body.as_ref()? else {
        return None;
    };
    let RefOr::T(content) = body.content.get("application/json")? else {
        return None;
    };
    let RefOr::Ref(reference) = content.schema.as_ref()? else {
        return None;
    };
    let name = reference.ref_location.rsplit('/').next()?;
    match schemas.get(name)? {
        RefOr::T(Schema::Object(object)) => object.required.first().cloned(),
        _ => None,
    }
}

/// The errors every `/oauth/*` endpoint shares, in the RFC 6749 format:
/// (name, status, error, code, description, example description).
const OAUTH_SHARED: &[(&str, u16, &str, &str, &str, &str)] = &[
    (
        "OAuthPayloadTooLarge",
        413,
        "invalid_request",
        "payload_too_large",
        "The body is larger than 64 KiB (`payload_too_large`)",
        "the request body is larger than 65536 bytes",
    ),
    (
        "OAuthInternalError",
        500,
        "server_error",
        "internal_error",
        "Unexpected server error (`server_error`); details are in the server log only",
        "the server could not complete the request",
    ),
    (
        "OAuthServiceUnavailable",
        503,
        "server_error",
        "service_unavailable",
        "The database is unreachable (`server_error`); nothing was revoked or issued, try again",
        "the service is busy or cannot reach its database; try again shortly",
    ),
];

fn oauth_response(status: u16, error: &str, code: &str, description: &str, example_description: &str) -> Response {
    let example = serde_json::json!({"error": error, "error_description": example_description, "code": code});
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(Ref::from_schema_name("OAuthErrorBody"))).example(Some(example)).build(),
    );
    if status == 503 {
        response = response.header("Retry-After", retry_after());
    }
    response.build()
}

fn add_oauth_shared(op: &mut Operation) {
    for (name, status, ..) in OAUTH_SHARED {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
    }
}

fn add_shared(op: &mut Operation, not_found: Option<&str>, schemas: &BTreeMap<String, RefOr<Schema>>) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    // Query parameters can be invalid (422); a bad path id is simply not found (404).
    let has_params = op
        .parameters
        .as_ref()
        .is_some_and(|p| p.iter().any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query))));
    let mut wanted = vec![];
    if has_body {
        wanted.extend(["MalformedRequest", "RequestTimeout", "PayloadTooLarge", "UnsupportedMediaType"]);
    }
    if has_body {
        if let Some(field) = first_required_field(op, schemas) {
            let description = SHARED.iter().find(|s| s.0 == "ValidationFailed").map_or("", |s| s.2);
            let missing = shared_response(description, "422", "validation_failed", &format!("{field}: is required"));
            op.responses.responses.entry("422".to_owned()).or_insert(RefOr::T(missing));
        }
        wanted.push("ValidationFailed");
    } else if has_params {
        wanted.push("InvalidQuery");
    }
    if secured {
        wanted.push("Unauthorized");
    }
    if !has_body {
        // Every request carrying an impersonation token is logged with its
        // body, also where the operation reads none or needs no token.
        wanted.extend(["LoggedRequestTimeout", "LoggedBodyTooLarge"]);
    }
    wanted.extend(not_found);
    // Anything can find the database unreachable: to read, or to log a
    // request carrying an impersonation token.
    wanted.extend(["InternalError", "ServiceUnavailable"]);
    for name in wanted {
        let status = SHARED.iter().find(|s| s.0 == name).map(|s| s.1).unwrap_or("500");
        op.responses.responses.entry(status.to_owned()).or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}
