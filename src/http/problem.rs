//! The one error type handlers return, rendered as RFC 9457 problem+json.
//!
//! Every error carries a stable machine-readable `code`. 5xx bodies never carry
//! internal detail: the cause is logged, the client sees a generic sentence.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::policy::Denied;
use crate::domain::types::Invalid;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Name of the offending field or parameter.
    #[schema(example = "duration_hours")]
    pub field: String,
    #[schema(example = "must be a whole number from 1 to 168")]
    pub message: String,
}

/// RFC 9457 problem details, plus a stable `code`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:actas:problem:consent_required",
    "title": "Forbidden",
    "status": 403,
    "detail": "the user has not granted impersonation consent, or it has expired or been revoked; ask them to grant it again",
    "code": "consent_required"
}))]
pub struct Problem {
    /// URI naming the problem type: `urn:actas:problem:<code>`, except that
    /// every refusal made because the caller is impersonating shares
    /// `urn:actas:problem:impersonation-restricted` (its `code` says which).
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable error code.
    pub code: String,
    /// Present for `validation_failed`: one entry per invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// An error answer. Boxed: it travels in every handler's `Result`.
#[derive(Debug, Clone)]
pub struct ApiError(Box<ErrorBody>);

#[derive(Debug, Clone)]
pub struct ErrorBody {
    pub status: StatusCode,
    pub code: &'static str,
    /// Problem type, when it is broader than the code (`impersonation-restricted`).
    pub problem_type: Option<&'static str>,
    pub title: &'static str,
    pub detail: String,
    pub errors: Option<Vec<FieldError>>,
    pub headers: Vec<(HeaderName, String)>,
}

impl std::ops::Deref for ApiError {
    type Target = ErrorBody;
    fn deref(&self) -> &ErrorBody {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorBody {
        &mut self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(ErrorBody {
            status,
            code,
            problem_type: None,
            title,
            detail: detail.into(),
            errors: None,
            headers: Vec::new(),
        }))
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = detail.into();
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed", detail);
        error.errors = Some(errors);
        error
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }

    /// 401 with an RFC 6750 challenge (see [`bearer_challenge`]).
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let challenge = bearer_challenge(&detail);
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, challenge)
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "this endpoint needs an access token: send `Authorization: Bearer <token>`",
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
    }

    /// SPEC §3: actions an impersonation token may not take.
    pub fn impersonation_restricted(detail: impl Into<String>) -> Self {
        Self::forbidden("impersonation-restricted", detail)
    }

    /// Whether this refuses what an impersonation token may not do (SPEC §3).
    pub fn restricts_impersonation(&self) -> bool {
        self.problem_type.unwrap_or(self.code) == "impersonation-restricted"
    }

    /// A refusal to start an impersonation. A chained start is also an
    /// impersonation-restricted action, so it carries that problem type.
    pub fn impersonation_refused(refusal: crate::domain::impersonation::Refusal) -> Self {
        let mut error = Self::forbidden(refusal.code(), refusal.detail());
        if refusal == crate::domain::impersonation::Refusal::Chained {
            error.problem_type = Some("impersonation-restricted");
        }
        error
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", format!("{what} not found"))
    }

    /// Larger than any endpoint accepts (`MAX_JSON_BYTES`).
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!("the request body is larger than {} bytes", super::json::MAX_JSON_BYTES),
        )
    }

    /// A request body that could not be read: too large, too slow (past
    /// `BODY_DEADLINE`), or broken off.
    pub fn unreadable_body(error: &actix_web::error::PayloadError) -> Self {
        use actix_web::error::PayloadError;
        match error {
            PayloadError::Overflow => Self::payload_too_large(),
            PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
                format!(
                    "the request body did not arrive within {} seconds",
                    super::middleware::BODY_DEADLINE.as_secs()
                ),
            ),
            _ => Self::bad_request("malformed_body", "the request body could not be read"),
        }
    }

    /// As `unreadable_body`, for a body read through an extractor.
    pub fn unreadable(error: &actix_web::Error) -> Self {
        match error.as_error::<actix_web::error::PayloadError>() {
            Some(unread) => Self::unreadable_body(unread),
            None => Self::bad_request("malformed_body", "the request body could not be read"),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, "Conflict", detail)
    }

    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many attempts",
            format!("too many failed attempts; try again in {retry_after_seconds} seconds"),
        )
        .with_header(header::RETRY_AFTER, retry_after_seconds.to_string())
    }

    /// Logs the cause; the client learns only that something failed on our side.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
            "the server could not complete the request",
        )
    }

    /// The audit trail could not record an impersonated request, so it was
    /// not performed (fail closed, SPEC §5).
    pub fn audit_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request log not written; request refused");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
            "the audit log could not record this request, so it was not performed; try again shortly",
        )
        .with_header(header::RETRY_AFTER, "5")
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "service unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
            "the service is busy or cannot reach its database; try again shortly",
        )
        .with_header(header::RETRY_AFTER, "5")
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: format!("urn:actas:problem:{}", self.problem_type.unwrap_or(self.code)),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            errors: self.errors.clone(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.insert_header((name.clone(), value));
            }
        }
        response.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::invalid_field(invalid.field, invalid.message)
    }
}

impl From<Vec<Invalid>> for ApiError {
    fn from(all: Vec<Invalid>) -> Self {
        Self::validation(
            all.into_iter().map(|i| FieldError { field: i.field.to_owned(), message: i.message }).collect(),
        )
    }
}

/// A policy refusal for a resource of the given kind ("user", "organization").
pub fn denied(kind: &str, denied: Denied) -> ApiError {
    match denied {
        Denied::NotFound => ApiError::not_found(kind),
        Denied::Forbidden(reason) => ApiError::forbidden("forbidden", reason),
        Denied::Invalid(invalid) => invalid.into(),
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        if crate::store::is_conflict_with_concurrent(&error) {
            tracing::warn!(%error, "a transaction lost to a concurrent one");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
                "this request collided with a concurrent one changing the same data; try again",
            )
            .with_header(header::RETRY_AFTER, "1");
        }
        if crate::store::is_unavailable(&error) {
            return ApiError::unavailable(error);
        }
        ApiError::internal(error)
    }
}

impl From<crate::crypto::password::HashError> for ApiError {
    fn from(error: crate::crypto::password::HashError) -> Self {
        if !matches!(error, crate::crypto::password::HashError::Busy) {
            return ApiError::internal(error);
        }
        tracing::warn!("every password hashing place stayed busy; request refused");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
            "too many passwords are being checked right now; try again shortly",
        )
        .with_header(header::RETRY_AFTER, "5")
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        ApiError::unavailable(error)
    }
}

/// An RFC 6750 §3 challenge for a bad token.
pub fn bearer_challenge(description: &str) -> String {
    format!(r#"Bearer error="invalid_token", error_description="{}""#, oauth_description(description))
}

/// Text as RFC 6749 §5.2 allows in `error_description` (and RFC 6750 in a
/// challenge's quoted string): printable ASCII but `"` and `\`, which become
/// `'` and `/`; anything else (a non-ASCII letter of an echoed parameter
/// name, a control) becomes `?`.
pub fn oauth_description(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn status_of(error: Error) -> (u16, Option<String>) {
        let error = ApiError::from(error);
        let retry = error.headers.iter().find(|(name, _)| *name == header::RETRY_AFTER).map(|(_, v)| v.clone());
        (error.status.as_u16(), retry)
    }

    #[test]
    fn database_trouble_that_passes_is_503_with_retry_after() {
        let database = |kind, message: &str| Error::DatabaseError(kind, Box::new(message.to_owned()));
        for retryable in [
            database(DatabaseErrorKind::SerializationFailure, "could not serialize access"),
            database(DatabaseErrorKind::Unknown, "deadlock detected"),
            database(DatabaseErrorKind::Unknown, "database is locked"),
            database(DatabaseErrorKind::ClosedConnection, "server closed the connection unexpectedly"),
        ] {
            let (status, retry) = status_of(retryable);
            assert_eq!(status, 503);
            assert!(retry.is_some());
        }
        // A fault of ours stays a 500 (and says nothing about it).
        assert_eq!(status_of(database(DatabaseErrorKind::Unknown, "no such column: x")).0, 500);
        assert_eq!(status_of(Error::NotFound).0, 500);
    }
}
