//! OAuth 2.0 endpoints: RFC 8693 token exchange, RFC 7662 introspection and
//! RFC 7009 revocation. Bodies are form-encoded; errors follow RFC 6749 §5.2
//! (`{error, error_description}`) and carry our stable `code` as well.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{post, web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::tokens::{IMPERSONATION_SCOPE, LOGIN_SCOPE, SCOPES};
use crate::domain::types::Role;
use crate::http::client::ClientInfo;
use crate::http::controllers::auth::end_token_session;
use crate::http::controllers::impersonations::start_session;
use crate::http::json::MAX_JSON_BYTES;
use crate::http::principal::{authenticate_token, carries_impersonation_token, Principal};
use crate::http::problem::{bearer_challenge, oauth_description, ApiError};
use crate::http::views::TokenType;
use crate::state::AppState;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const USER_ID_TOKEN_TYPE: &str = "urn:actas:params:oauth:token-type:user-id";

/// The endpoints that take tokens in their form body and use them (the audit
/// trail logs such a use in the token's session). Route attributes need
/// literals; `the_audit_trail_knows_the_oauth_routes` checks they agree.
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REVOKE_PATH: &str = "/oauth/revoke";

/// The form fields in which the endpoint at `path` uses a token: the actor of
/// an exchange (any token field at all: a chaining attempt), the token to
/// revoke. Introspection only asks about a token: none.
pub fn token_fields(path: &str) -> &'static [&'static str] {
    match path {
        TOKEN_PATH => &["actor_token", "subject_token"],
        REVOKE_PATH => &["token", "actor_token", "subject_token"],
        _ => &[],
    }
}

/// Whether the request body is declared form-encoded.
pub fn is_form(req: &HttpRequest) -> bool {
    req.mime_type().ok().flatten().is_some_and(|m| m.essence_str() == "application/x-www-form-urlencoded")
}
/// An RFC 6749 §5.2 error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_request", "error_description": "the user has not granted impersonation consent, or it has expired or been revoked; ask them to grant it again", "code": "consent_required"}))]
pub struct OAuthErrorBody {
    pub error: OAuthErrorKind,
    pub error_description: String,
    /// actas's stable error code, as in problem+json responses.
    pub code: &'static str,
}

/// The RFC 6749 §5.2 / RFC 8693 §2.2.2 / RFC 6750 §3.1 error codes this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorKind {
    InvalidRequest,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidTarget,
    InvalidScope,
    InvalidToken,
    ServerError,
}

#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    body: OAuthErrorBody,
    /// `Retry-After`, `Allow`: kept from the error this one says the OAuth way.
    headers: Vec<(header::HeaderName, String)>,
    challenge: bool,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.body.error, self.body.error_description)
    }
}

impl OAuthError {
    fn new(status: StatusCode, error: OAuthErrorKind, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            body: OAuthErrorBody { error, error_description: description.into(), code },
            headers: Vec::new(),
            challenge: false,
        }
    }

    fn invalid_request(code: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, OAuthErrorKind::InvalidRequest, code, description)
    }

    /// No such endpoint, or not this method: the status stays (404, 405 with
    /// `Allow`), the body is RFC 6749's.
    pub fn routing(error: ApiError) -> Self {
        Self {
            status: error.status,
            body: OAuthErrorBody {
                error: OAuthErrorKind::InvalidRequest,
                error_description: error.detail.clone(),
                code: error.code,
            },
            headers: error.headers.clone(),
            challenge: false,
        }
    }

    /// The caller's own bearer token is not (or no longer) valid: 401 with
    /// an RFC 6750 challenge.
    pub fn invalid_bearer(description: String) -> Self {
        Self { challenge: true, ..unauthorized(description) }
    }

    /// Our error, said the OAuth way.
    pub fn from_api(error: ApiError) -> Self {
        let (status, kind) = match (error.status.as_u16(), error.code) {
            (_, "reauthentication_failed") => (StatusCode::BAD_REQUEST, OAuthErrorKind::InvalidGrant),
            (429, _) => (StatusCode::TOO_MANY_REQUESTS, OAuthErrorKind::InvalidRequest),
            (413, _) => (StatusCode::PAYLOAD_TOO_LARGE, OAuthErrorKind::InvalidRequest),
            // SPEC §3 names the status of what an impersonation token may not
            // do (403); RFC 6749 §5.2 allows it ("unless specified otherwise").
            (403, _) if error.restricts_impersonation() => (StatusCode::FORBIDDEN, OAuthErrorKind::InvalidRequest),
            (s, _) if s >= 500 => (error.status, OAuthErrorKind::ServerError),
            _ => (StatusCode::BAD_REQUEST, OAuthErrorKind::InvalidRequest),
        };
        Self {
            status,
            body: OAuthErrorBody { error: kind, error_description: error.detail.clone(), code: error.code },
            headers: error.headers.clone(),
            challenge: false,
        }
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
        for (name, value) in &self.headers {
            res.insert_header((name.clone(), value.clone()));
        }
        if self.challenge {
            res.insert_header((header::WWW_AUTHENTICATE, bearer_challenge(&self.body.error_description)));
        }
        res.json(OAuthErrorBody {
            error_description: oauth_description(&self.body.error_description),
            ..self.body.clone()
        })
    }
}

/// The parameters of a form-encoded request; each may appear once (RFC 6749
/// §3.2), but for the `REPEATABLE` ones.
/// The body is read here, not by an extractor, so that even an oversized body
/// is answered in the OAuth error format.
async fn form(req: &HttpRequest, body: web::Payload) -> Result<Params, OAuthError> {
    if !is_form(req) {
        return Err(OAuthError::invalid_request(
            "unsupported_media_type",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if let Some(refusal) = crate::http::json::encoded_body_refusal(req) {
        return Err(OAuthError::invalid_request("unsupported_media_type", refusal));
    }
    if crate::http::json::declares_too_large_body(req.headers()) {
        return Err(OAuthError::from_api(ApiError::payload_too_large()));
    }
    let body = match body.to_bytes_limited(MAX_JSON_BYTES).await {
        Ok(Ok(body)) => body,
        Ok(Err(unread)) => return Err(OAuthError::from_api(ApiError::unreadable(&unread))),
        Err(_) => return Err(OAuthError::from_api(ApiError::payload_too_large())),
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| OAuthError::invalid_request("malformed_body", "the form body could not be parsed"))?;
    let mut params: Params = HashMap::new();
    // RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
    for (name, value) in pairs.into_iter().filter(|(_, value)| !value.is_empty()) {
        // RFC 8693 §2.1 lets a client name several audiences and resources.
        if params.contains_key(&name) && !REPEATABLE.contains(&name.as_str()) {
            return Err(OAuthError::invalid_request(
                "validation_failed",
                format!("parameter `{}` appears more than once", echoed(&name)),
            ));
        }
        params.entry(name).or_default().push(value);
    }
    Ok(params)
}

/// What a client sent, shown back in an error: at most 64 characters.
fn echoed(text: &str) -> String {
    let shown: String = text.chars().take(64).collect();
    if shown.len() < text.len() {
        format!("{shown}...")
    } else {
        shown
    }
}

/// A form's parameters by name, each with its values: one, except for the
/// `REPEATABLE` ones.
type Params = HashMap<String, Vec<String>>;

const REPEATABLE: [&str; 2] = ["audience", "resource"];

/// The value of a parameter that appears at most once.
fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).and_then(|values| values.first()).map(String::as_str)
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, OAuthError> {
    param(params, name)
        .ok_or_else(|| OAuthError::invalid_request("validation_failed", format!("missing parameter `{name}`")))
}

/// The RFC 8693 token exchange request, as this service accepts it.
#[derive(ToSchema)]
#[schema(example = json!({
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "actor_token": "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFZERTQSJ9…",
    "actor_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "subject_token": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b",
    "subject_token_type": "urn:actas:params:oauth:token-type:user-id",
    "password": "my own password",
    "reason": "Ticket #4711"
}))]
#[allow(dead_code)]
pub struct TokenExchangeRequest {
    #[schema(schema_with = grant_type_schema)]
    grant_type: String,
    /// The admin's own login access token.
    #[schema(min_length = 1)]
    actor_token: String,
    #[schema(schema_with = access_token_type_schema)]
    actor_token_type: String,
    /// The id of the user to act as.
    #[schema(format = Uuid)]
    subject_token: String,
    #[schema(schema_with = user_id_token_type_schema)]
    subject_token_type: String,
    /// The admin's own password (re-authentication, as for `POST /api/v1/impersonations`).
    #[schema(min_length = 1)]
    password: String,
    /// Why, at most 500 characters.
    #[schema(value_type = String, required = false, max_length = 500)]
    reason: Option<String>,
    /// If given, `urn:ietf:params:oauth:token-type:access_token`.
    #[schema(value_type = String, required = false)]
    requested_token_type: Option<String>,
    /// If given, the service's own audience (`ACTAS_AUDIENCE`); anything else is `invalid_target`.
    /// May be repeated (RFC 8693 §2.1), every value naming this service.
    #[schema(value_type = String, required = false)]
    audience: Option<String>,
    /// If given, the issuer URL or the audience; anything else is `invalid_target`.
    /// May be repeated, like `audience`.
    #[schema(value_type = String, required = false)]
    resource: Option<String>,
    /// If given, a space-separated subset of `actas impersonation`; anything else is `invalid_scope`.
    #[schema(value_type = String, required = false)]
    scope: Option<String>,
}

/// A form field that takes exactly one value (shown filled in by Swagger UI).
fn constant_schema(value: &str, description: &str) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .default(Some(value.into()))
        .description(Some(description))
        .build()
}

fn grant_type_schema() -> utoipa::openapi::Object {
    constant_schema(TOKEN_EXCHANGE, "RFC 8693 token exchange.")
}

fn access_token_type_schema() -> utoipa::openapi::Object {
    constant_schema(ACCESS_TOKEN_TYPE, "The actor token is an access token.")
}

fn user_id_token_type_schema() -> utoipa::openapi::Object {
    constant_schema(USER_ID_TOKEN_TYPE, "The subject token is an actas user id.")
}

/// RFC 8693 §2.2.1 response.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFZERTQSJ9…",
    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "token_type": "Bearer",
    "expires_in": 1800,
    "scope": "actas impersonation"
}))]
pub struct TokenExchangeResponse {
    /// An impersonation access token: `sub` is the user, `act.sub` is you.
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: TokenType,
    pub expires_in: i64,
    /// Always `actas impersonation`.
    pub scope: &'static str,
}

/// RFC 8693 token exchange: an admin's access token for one acting as a user.
///
/// Applies every rule of `POST /api/v1/impersonations` (consent, who may
/// impersonate whom, password confirmation and its rate limit) and creates the
/// same kind of session; stop it with `POST /oauth/revoke` or
/// `POST /api/v1/impersonations/{id}/stop`. No refresh token is issued.
#[utoipa::path(
    operation_id = "token_exchange",
    tag = "oauth",
    request_body(content = TokenExchangeRequest, content_type = "application/x-www-form-urlencoded", description = "RFC 8693 token exchange, form-encoded: your access token as actor, the user id as subject, your password"),
    responses(
        (status = 200, description = "Exchanged", body = TokenExchangeResponse, headers(
            ("Cache-Control" = String, description = "`no-store`: the body holds a token (RFC 6749 §5.1)"),
            ("Pragma" = String, description = "`no-cache`"),
        )),
        (status = 400, description = "Refused (RFC 6749 §5.2). `error` is `invalid_request` for a refused actor or subject (`code`: consent_required, not_permitted, target_privileged, …; `not_found` for a user you cannot see; `unauthorized` when `actor_token` is not a live login token: log in again), `invalid_grant` for a wrong password, `unsupported_grant_type` for anything but token exchange, `invalid_target` for an `audience` or `resource` other than this service, `invalid_scope` for a scope outside `actas impersonation`, `invalid_request` with `code` unsupported_media_type for a body that is not form-encoded (JSON included)", body = OAuthErrorBody, examples(
            ("consent_required" = (value = json!({"error": "invalid_request", "error_description": "the user has not granted impersonation consent, or it has expired or been revoked; ask them to grant it again", "code": "consent_required"}))),
            ("reauthentication_failed" = (value = json!({"error": "invalid_grant", "error_description": "the password is incorrect", "code": "reauthentication_failed"}))),
            ("unsupported_grant_type" = (value = json!({"error": "unsupported_grant_type", "error_description": "only urn:ietf:params:oauth:grant-type:token-exchange is supported", "code": "unsupported_grant_type"}))),
            ("unsupported_media_type" = (value = json!({"error": "invalid_request", "error_description": "the body must be application/x-www-form-urlencoded", "code": "unsupported_media_type"}))),
        )),
        (status = 403, description = "Sent while impersonating (SPEC §3), still an RFC 6749 error: an impersonation token as `actor_token` (`code` chained_impersonation) or in `Authorization` (`code` impersonation-restricted)", body = OAuthErrorBody, examples(
            ("chained_impersonation" = (value = json!({"error": "invalid_request", "error_description": "an impersonation token cannot start another impersonation", "code": "chained_impersonation"}))),
            ("impersonation-restricted" = (value = json!({"error": "invalid_request", "error_description": "do not send an impersonation token in Authorization to the token endpoint; the actor is actor_token", "code": "impersonation-restricted"}))),
        )),
        (status = 429, description = "Too many wrong passwords (`code` rate_limited)", body = OAuthErrorBody,
            headers(
            ("Retry-After" = u64, description = "Seconds until a confirmation may be tried again"),
        ), example = json!({"error": "invalid_request", "error_description": "too many failed attempts; try again in 840 seconds", "code": "rate_limited"})),
    )
)]
#[post("/oauth/token")]
pub async fn exchange(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    // The actor is `actor_token`; an impersonation token as the bearer would
    // make this an audited request, whose transaction must not hold a
    // password check (nor its rate limit) open.
    if carries_impersonation_token(&state, &req) {
        return Err(OAuthError::from_api(ApiError::impersonation_restricted(
            "do not send an impersonation token in Authorization to the token endpoint; the actor is actor_token",
        )));
    }
    let params = form(&req, body).await?;
    let grant_type = required(&params, "grant_type")?;
    if grant_type != TOKEN_EXCHANGE {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            OAuthErrorKind::UnsupportedGrantType,
            "unsupported_grant_type",
            format!("only {TOKEN_EXCHANGE} is supported"),
        ));
    }
    let actor_token = required(&params, "actor_token")?;
    if required(&params, "actor_token_type")? != ACCESS_TOKEN_TYPE {
        return Err(OAuthError::invalid_request(
            "validation_failed",
            format!("actor_token_type must be {ACCESS_TOKEN_TYPE}"),
        ));
    }
    let subject = required(&params, "subject_token")?;
    if required(&params, "subject_token_type")? != USER_ID_TOKEN_TYPE {
        return Err(OAuthError::invalid_request(
            "validation_failed",
            format!("subject_token_type must be {USER_ID_TOKEN_TYPE}"),
        ));
    }
    if param(&params, "requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(
            "validation_failed",
            format!("requested_token_type must be {ACCESS_TOKEN_TYPE}"),
        ));
    }
    // RFC 8693 §2.1: the new token is for this service, with fixed scopes; a
    // request for anything else is refused rather than silently narrowed.
    let all = |name: &str| params.get(name).into_iter().flatten();
    if all("audience").any(|a| *a != state.config.audience) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            OAuthErrorKind::InvalidTarget,
            "invalid_target",
            format!("tokens are issued only for the audience `{}`", state.config.audience),
        ));
    }
    if all("resource").any(|r| *r != state.config.issuer && *r != state.config.audience) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            OAuthErrorKind::InvalidTarget,
            "invalid_target",
            format!("tokens are issued only for the resource `{}`", state.config.issuer),
        ));
    }
    if let Some(unknown) = param(&params, "scope").and_then(|s| s.split_whitespace().find(|s| !SCOPES.contains(s))) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            OAuthErrorKind::InvalidScope,
            "invalid_scope",
            format!("unknown scope `{}`; supported: {}", echoed(unknown), SCOPES.join(" ")),
        ));
    }
    let target: Uuid = subject
        .parse()
        .map_err(|_| OAuthError::invalid_request("validation_failed", "subject_token must be a user id"))?;
    let password = required(&params, "password")?.to_owned();

    let actor = authenticate_token(&state, actor_token).await.map_err(|e| {
        let mut error = OAuthError::from_api(e);
        error.body.error_description = format!("actor_token: {}", error.body.error_description);
        // About a token in the form, not this request's credentials.
        error.headers.retain(|(name, _)| name != header::WWW_AUTHENTICATE);
        error
    })?;
    let started = start_session(&state, &actor, ClientInfo::of(&req), target, password, param(&params, "reason"))
        .await
        .map_err(OAuthError::from_api)?;
    Ok(HttpResponse::Ok().insert_header((header::PRAGMA, "no-cache")).json(TokenExchangeResponse {
        access_token: started.access_token,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: TokenType::Bearer,
        expires_in: started.expires_in,
        scope: IMPERSONATION_SCOPE,
    }))
}

/// `token` (and an optional `token_type_hint`), form-encoded.
#[derive(ToSchema)]
#[schema(example = json!({"token": "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFZERTQSJ9…", "token_type_hint": "access_token"}))]
#[allow(dead_code)]
pub struct TokenRequest {
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` (the only kind actas issues); ignored otherwise.
    #[schema(value_type = String, required = false)]
    token_type_hint: Option<String>,
}

/// RFC 7662 introspection response. An active token has all its claims (`act`
/// only when it is an impersonation token); any other is exactly
/// `{"active": false}`, without a reason.
#[derive(Serialize, ToSchema, Default)]
#[schema(examples(active_token_example, inactive_token_example))]
pub struct IntrospectionResponse {
    /// Whether the token is ours, unexpired, and its session still live.
    pub active: bool,
    /// The user the token acts as.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sub: Option<Uuid>,
    /// Who is really acting: present only on impersonation tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub act: Option<Actor>,
    /// The login or impersonation session.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sid: Option<Uuid>,
    /// When the token stops working: for an impersonation token the session's
    /// end, which a shorter consent granted since may have moved before the
    /// signed `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub jti: Option<Uuid>,
    /// The user's organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub org: Option<Uuid>,
    /// The user's role, as it is now (a role change ends the sessions of the user's tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
    /// The user's email.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub username: Option<String>,
    /// Always `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token_type: Option<TokenType>,
    /// `actas`, or `actas impersonation` for impersonation tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub scope: Option<&'static str>,
    /// The client the token was issued to: always actas' own, `actas`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_id: Option<String>,
}

fn inactive_token_example() -> serde_json::Value {
    serde_json::json!({"active": false})
}

fn active_token_example() -> serde_json::Value {
    serde_json::json!({
        "active": true, "sub": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b",
        "act": {"sub": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31", "email": "sam@support.example"},
        "sid": "0193a5d0-1111-7222-8333-944455556666", "exp": 1795244400, "iat": 1795242600, "nbf": 1795242600,
        "iss": "https://actas.example.com", "aud": "actas", "scope": "actas impersonation", "token_type": "Bearer",
        "username": "ada@acme.example", "jti": "8d7f3c2e-41a5-4b7e-9c1d-2e3f4a5b6c7d",
        "org": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40", "role": "member", "client_id": "actas"
    })
}

/// The RFC 8693 `act` claim.
#[derive(Serialize, ToSchema)]
pub struct Actor {
    /// The impersonator's user id.
    pub sub: Uuid,
    pub email: String,
}

/// RFC 7662 token introspection.
///
/// Send `Authorization: Bearer <your own access token>` (any active actas
/// token, e.g. an API gateway's service user's login token, or the SPA's own
/// token) and the token to inspect as `token`. An active impersonation token
/// answers its claims with `act`; a token that is stopped, expired, revoked,
/// malformed or not ours answers only `{"active": false}`. Unlike JWT
/// validation alone, this reflects revocation at once.
#[utoipa::path(
    operation_id = "introspect_token",
    tag = "oauth",
    security(("bearer" = [])),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded", description = "The token to look at, form-encoded (RFC 7662)"),
    responses(
        (status = 200, description = "Introspection result", body = IntrospectionResponse),
        (status = 400, description = "Not a form, or no `token` (`invalid_request`)", body = OAuthErrorBody,
            example = json!({"error": "invalid_request", "error_description": "missing parameter `token`", "code": "validation_failed"})),
        (status = 401, description = "No valid bearer token for the caller (`invalid_token`)", body = OAuthErrorBody,
            headers(
            ("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\", error_description=\"…\"`"),
        ), example = json!({"error": "invalid_token", "error_description": "send your own access token as `Authorization: Bearer`", "code": "unauthorized"})),
    )
)]
#[post("/oauth/introspect")]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    match Principal::outcome(&req) {
        Some(Ok(_)) => {}
        Some(Err(e)) if e.status.is_server_error() => return Err(OAuthError::from_api(e)),
        Some(Err(e)) => return Err(OAuthError::invalid_bearer(e.detail.clone())),
        // No credentials: a bare challenge, without an error code (RFC 6750 §3.1).
        None => {
            return Err(OAuthError {
                headers: vec![(header::WWW_AUTHENTICATE, "Bearer".into())],
                ..unauthorized("send your own access token as `Authorization: Bearer`".into())
            })
        }
    }
    let params = form(&req, body).await?;
    let token = required(&params, "token")?;
    let Some(principal) = live_principal(&state, token).await? else {
        return Ok(HttpResponse::Ok().json(IntrospectionResponse::default()));
    };
    // A shorter consent granted since shortens the session, not the signed
    // claim: report when the token really stops working.
    let exp = principal
        .impersonation
        .as_ref()
        .map_or(principal.claims.exp, |i| principal.claims.exp.min(i.session.expires_at.unix_timestamp()));
    let claims = principal.claims;
    Ok(HttpResponse::Ok().json(IntrospectionResponse {
        active: true,
        sub: Some(claims.sub),
        act: claims.act.as_ref().map(|act| Actor { sub: act.sub, email: act.email.clone() }),
        sid: Some(claims.sid),
        exp: Some(exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        jti: Some(claims.jti),
        // Read from the database; they match an active token's claims, since
        // a role change ends the sessions of the user's tokens.
        org: Some(*principal.user.organization_id),
        role: Some(principal.user.role()),
        username: Some(principal.user.email),
        token_type: Some(TokenType::Bearer),
        scope: Some(if claims.act.is_some() { IMPERSONATION_SCOPE } else { LOGIN_SCOPE }),
        iss: Some(claims.iss),
        aud: Some(claims.aud),
        client_id: Some(claims.client_id),
    }))
}

/// The principal of a token that is valid and live, `None` for any token that
/// is not (RFC 7662/7009 do not say why). A failure on our side is an error,
/// not a verdict on the token: answering "inactive" or "revoked" then would lie.
async fn live_principal(state: &AppState, token: &str) -> Result<Option<Principal>, OAuthError> {
    match authenticate_token(state, token).await {
        Ok(principal) => Ok(Some(principal)),
        Err(e) if e.status.is_server_error() => Err(OAuthError::from_api(e)),
        Err(_) => Ok(None),
    }
}

fn unauthorized(description: String) -> OAuthError {
    OAuthError::new(StatusCode::UNAUTHORIZED, OAuthErrorKind::InvalidToken, "unauthorized", description)
}

/// RFC 7009 token revocation.
///
/// Holding a token is enough to revoke it: no other authentication. Revoking
/// an impersonation token stops its session (`end_reason` `stopped`); revoking
/// a login token logs that session out (and ends the impersonations it
/// started). Any token gets 200, also an unknown, expired or malformed one
/// (RFC 7009 §2.2); only a request that is not a form naming one token is
/// refused.
#[utoipa::path(
    operation_id = "revoke_token",
    tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded", description = "The token to revoke, form-encoded (RFC 7009)"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "Refused, with `error` `invalid_request`: no `token` (code `validation_failed`), a body that is not form-encoded (`unsupported_media_type`), or besides it the token of another impersonation session in `Authorization` (`several_sessions`)", body = OAuthErrorBody, examples(
            ("validation_failed" = (value = json!({"error": "invalid_request", "error_description": "missing parameter `token`", "code": "validation_failed"}))),
            ("unsupported_media_type" = (value = json!({"error": "invalid_request", "error_description": "the body must be application/x-www-form-urlencoded", "code": "unsupported_media_type"}))),
            ("several_sessions" = (value = json!({"error": "invalid_request", "error_description": "this request carries the tokens of several impersonation sessions; send one", "code": "several_sessions"}))),
        )),
    )
)]
#[post("/oauth/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, OAuthError> {
    let params = form(&req, body).await?;
    let token = required(&params, "token")?;
    let Some(principal) = live_principal(&state, token).await? else { return Ok(HttpResponse::Ok().finish()) };
    let (session_id, impersonating) = (principal.session_id, principal.impersonation.is_some());
    match end_token_session(&state, &principal, ClientInfo::of(&req)).await {
        Ok(()) => tracing::info!(session_id = %session_id, impersonating, "token revoked"),
        // Ended by a concurrent call since it was checked: revoked all the same (RFC 7009 §2.2).
        Err(e) if e.status == actix_web::http::StatusCode::UNAUTHORIZED => {}
        Err(e) => return Err(OAuthError::from_api(e)),
    }
    Ok(HttpResponse::Ok().finish())
}
