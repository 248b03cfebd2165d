//! Middleware around the whole application.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{HttpMessage, ResponseError};
use futures_util::FutureExt;
use tracing::Instrument;

use super::problem::{ApiError, PROBLEM_JSON};

/// Turns any error response that is not already JSON (actix's own 404s,
/// payload errors, …) into problem+json, keeping `Allow`, `Retry-After` and
/// `WWW-Authenticate`. JSON errors are left alone: problem+json from our
/// handlers, and the RFC 6749 format of `/oauth/*`.
pub fn problem_for_every_error<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(to_problem)
}

fn is_json<B>(res: &ServiceResponse<B>) -> bool {
    res.response().headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"application/json")
    })
}

fn to_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    if is_json(&res) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let kept: Vec<_> = [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE]
        .into_iter()
        .filter_map(|name| res.response().headers().get(&name).map(|v| (name, v.clone())))
        .collect();
    let (req, _) = res.into_parts();
    let mut response = generic_error(status).error_response();
    for (name, value) in kept {
        response.headers_mut().insert(name, value);
    }
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
}

/// The CORS layer refuses with a bare 400 (an origin not configured, or a
/// preflight asking for a method the API has not): said as a problem that
/// names the cause. Every error from further in is problem+json already.
pub fn problem_for_cors_refusals<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        if is_json(&res) || res.status() != StatusCode::BAD_REQUEST {
            return to_problem(res);
        }
        let (req, _) = res.into_parts();
        let refusal = ApiError::bad_request(
            "cors_refused",
            "this browser origin, or the method it asks for, is not allowed; \
             the allowed origins are set in ACTAS_CORS_ALLOWED_ORIGINS",
        );
        let response = ServiceResponse::new(req, refusal.error_response()).map_into_right_body();
        Ok(ErrorHandlerResponse::Response(response))
    })
}

pub(crate) fn generic_error(status: StatusCode) -> ApiError {
    let (code, title, detail) = match status.as_u16() {
        400 => ("bad_request", "Bad request", "the request could not be understood"),
        401 => ("unauthorized", "Unauthorized", "authentication is required"),
        403 => ("forbidden", "Forbidden", "not allowed"),
        404 => ("not_found", "Not found", "no such resource"),
        405 => ("method_not_allowed", "Method not allowed", "this method is not supported here"),
        408 => ("request_timeout", "Request timeout", "the request took too long to arrive"),
        413 => ("payload_too_large", "Payload too large", "the request body is too large"),
        414 => ("uri_too_long", "URI too long", "the request URI is too long"),
        415 => ("unsupported_media_type", "Unsupported media type", "this content type is not supported here"),
        422 => ("validation_failed", "Validation failed", "the request is not valid"),
        431 => ("headers_too_large", "Request header fields too large", "the request headers are too large"),
        s if s < 500 => ("bad_request", "Bad request", "the request could not be processed"),
        503 => ("service_unavailable", "Service unavailable", "the service is temporarily unavailable"),
        _ => ("internal_error", "Internal server error", "the server could not complete the request"),
    };
    ApiError::new(status, code, title, detail)
}

/// Security headers on every response. Responses carry tokens and personal
/// data: no caching, unless a handler chose otherwise (public key documents).
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let is_docs = req.path().starts_with("/swagger-ui");
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Nothing of ours is meant to be framed (Swagger UI included): no clickjacking.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Swagger UI's files are fixed per release (the bundle is 1.5 MB);
        // everything else may carry someone's data.
        let policy = if is_docs && res.status().is_success() { "public, max-age=3600" } else { "no-store" };
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    Ok(res)
}

/// `HEAD` is answered like `GET` (RFC 9110 §9.3.2); the HTTP layer sends the
/// headers only. Load balancers and uptime checkers probe with it.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

/// How long a request body may take to arrive, from the end of the headers.
/// Bodies are small (at most 64 KiB); without a bound, a client sending one
/// byte now and then would hold its connection, and a reader, for ever.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// Puts a deadline on the request body, for every reader (the audit trail,
/// extractors, the OAuth forms): past it the body reads as timed out (408).
/// A body not read to its end (timed out, or of no interest to the route)
/// closes the connection after the answer. (The HTTP layer would otherwise
/// wait for the rest of a chunked body, with no deadline, before reading the
/// next request; it closes instead while the body's reader still exists, so
/// the answer's body keeps the reader until it is sent.)
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<KeepingReader>, actix_web::Error> {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.to_str().ok().and_then(|l| l.trim().parse::<u64>().ok()) != Some(0));
    if !has_body {
        let res = next.call(req).await?;
        return Ok(res.map_body(|_, body| KeepingReader { body: body.boxed(), _reader: None }));
    }
    let reader = Rc::new(RefCell::new(req.take_payload()));
    let read_to_end = Rc::new(Cell::new(false));
    let deadline_body = DeadlineBody {
        body: Rc::clone(&reader),
        deadline: Box::pin(tokio::time::sleep(BODY_DEADLINE)),
        read_to_end: Rc::clone(&read_to_end),
    };
    req.set_payload(actix_web::dev::Payload::Stream { payload: Box::pin(deadline_body) });
    let mut res = next.call(req).await?;
    let unread = (!read_to_end.get()).then_some(reader);
    if unread.is_some() {
        res.response_mut().head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(res.map_body(|_, body| KeepingReader { body: body.boxed(), _reader: unread }))
}

/// An answer's body, keeping the reader of a request body not read to its end
/// until the answer is sent.
pub struct KeepingReader {
    body: actix_web::body::BoxBody,
    _reader: Option<Rc<RefCell<actix_web::dev::Payload>>>,
}

impl MessageBody for KeepingReader {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<actix_web::web::Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

struct DeadlineBody {
    body: Rc<RefCell<actix_web::dev::Payload>>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    read_to_end: Rc<Cell<bool>>,
}

impl futures_util::Stream for DeadlineBody {
    type Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let polled = std::pin::Pin::new(&mut *self.body.borrow_mut()).poll_next(cx);
        if let Poll::Ready(chunk) = polled {
            if chunk.is_none() {
                self.read_to_end.set(true);
            }
            return Poll::Ready(chunk);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A panicking handler answers 500 problem+json instead of dropping the
/// connection. (The error is rendered by `ApiError`; holding a clone of the
/// request here would break actix's exclusive access to it downstream.)
pub async fn catch_panic(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(ApiError::internal("a request handler panicked").into()),
    }
}

/// One tracing span per request (method, path, request id; never the query
/// string, which may hold secrets) and a log line with status and duration.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = uuid::Uuid::new_v4();
    // Filled in by the audit trail when the request impersonates someone.
    let span = tracing::info_span!(
        "request",
        %request_id,
        method = %req.method(),
        path = %req.path(),
        impersonator_id = tracing::field::Empty,
        session_id = tracing::field::Empty,
    );
    let started = Instant::now();
    let metrics = req.app_data::<actix_web::web::Data<crate::state::AppState>>().map(|s| Arc::clone(&s.metrics));
    let result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), duration_ms = started.elapsed().as_millis() as u64, "request")
    });
    if let Some(metrics) = metrics {
        metrics.count_response(status.as_u16());
    }
    let mut res = result?;
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}
