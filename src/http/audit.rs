//! One request-log row for every request that carries a validly signed
//! impersonation token, whatever its outcome (SPEC §5).
//!
//! The guarantee: **the row is committed in the same database transaction as
//! the request's own changes.** The request gets a transaction of its own,
//! opened at its first database use (so work before that, like hashing a
//! password, holds no lock); every `AppState::db` call of the request runs in
//! it (as a savepoint); the row is appended last, then everything commits. If the row cannot be written, or the commit fails,
//! nothing of the request remains and the client gets 503. A response that
//! reached the client therefore always has its committed row.
//!
//! Failed requests (5xx) keep nothing of their changes but still get their row.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, ResponseError};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use uuid::Uuid;

use super::client::ClientInfo;
use super::controllers::oauth::{self, OAuthError};
use super::json::MAX_JSON_BYTES;
use super::principal::{bearer_tokens, impersonation_claims, reads_the_caller};
use super::problem::ApiError;
use crate::domain::redact::{path_for_log, redact_body, redact_query};
use crate::state::{AppState, Clock, SessionTurns};
use crate::store::audit::{self, RequestEntry};
use crate::store::impersonations;
use crate::store::pool::{self, PooledConnection};
use crate::store::DbConnection;

/// Bodies larger than any endpoint accepts are refused (413) without being
/// read further, with the same answer an endpoint would give.
const MAX_CAPTURED_BODY: usize = MAX_JSON_BYTES;

/// How long a request waits for its session's turn on PostgreSQL, or for the
/// SQLite writer, before it gets 503 "try again".
const TURN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A turn not had within `TURN_TIMEOUT`: 503, "try again" (for a request's
/// log row: refused as unlogged).
#[derive(Debug, thiserror::Error)]
#[error("{0} was not free in time")]
pub struct TurnTimeout(&'static str);

impl From<TurnTimeout> for ApiError {
    fn from(timeout: TurnTimeout) -> Self {
        ApiError::unavailable(timeout)
    }
}

/// The SQLite writer, waited for at most `TURN_TIMEOUT`.
pub(crate) async fn take_writer(
    writer: Arc<tokio::sync::Mutex<()>>,
) -> Result<tokio::sync::OwnedMutexGuard<()>, TurnTimeout> {
    tokio::time::timeout(TURN_TIMEOUT, writer.lock_owned()).await.map_err(|_| TurnTimeout("the SQLite writer"))
}

/// A pooled connection holding an impersonated request's open transaction.
/// Dropped mid-way (client gone, panic), it rolls back before going back to
/// the pool; then (field order) it hands the turn to the next request.
struct RequestConnection {
    conn: PooledConnection,
    _turn: Option<Turn>,
}

/// An impersonated request's transaction, opened on first use. Opening it
/// also checks, and holds until commit, that the session is still live: the
/// token was checked before, on another connection, and a revocation that
/// committed since must win over the request's changes.
pub struct RequestTransaction {
    pool: pool::Pool,
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    session_turns: Arc<SessionTurns>,
    session_id: Uuid,
    /// The impersonator and the target, as the token names them.
    people: [Uuid; 2],
    clock: Clock,
    open: Option<RequestConnection>,
    session_ended: bool,
}

/// The right to open the transaction: on SQLite the single writer, on
/// PostgreSQL one of the session's turns on this node.
pub enum Turn {
    Writer(tokio::sync::OwnedMutexGuard<()>),
    Session(tokio::sync::OwnedSemaphorePermit),
}

impl RequestTransaction {
    fn new(state: &AppState, who: &Impersonated) -> Self {
        let (pool, sqlite_writer, clock) = (state.pool.clone(), state.sqlite_writer.clone(), state.clock.clone());
        let session_turns = Arc::clone(&state.session_turns);
        let (session_id, people) = (who.session_id, [who.impersonator_id, who.target_id]);
        Self { pool, sqlite_writer, session_turns, session_id, people, clock, open: None, session_ended: false }
    }

    /// Waits, asynchronously, for the turn to open the transaction if it
    /// still has to be opened; hand the turn to `conn`. (Blocking threads
    /// never wait for a turn: its holder may need one to finish.) A session
    /// turn not free within `TURN_TIMEOUT` (its holder stuck behind a lock)
    /// is a 503 to retry, as a connection not free in time would be.
    pub async fn wait_turn(shared: &SharedConnection) -> Result<Option<Turn>, TurnTimeout> {
        let (writer, turns, session_id) = {
            let guard = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if guard.open.is_some() {
                return Ok(None);
            }
            (guard.sqlite_writer.clone(), Arc::clone(&guard.session_turns), guard.session_id)
        };
        Ok(Some(match writer {
            Some(writer) => Turn::Writer(take_writer(writer).await?),
            None => Turn::Session(
                tokio::time::timeout(TURN_TIMEOUT, turns.wait(session_id))
                    .await
                    .map_err(|_| TurnTimeout("an impersonation session's turn"))?,
            ),
        }))
    }

    /// The connection for the request's own reads and writes, opening the
    /// transaction if needed; 401 once the session is found ended. Blocking.
    pub fn conn(&mut self, turn: Option<Turn>) -> Result<&mut DbConnection, ApiError> {
        let ended = || ApiError::unauthorized("the impersonation session has ended");
        if self.session_ended {
            return Err(ended());
        }
        let just_opened = self.open.is_none();
        let (session_id, people, now) = (self.session_id, self.people, self.clock.now());
        let conn = self.conn_for_log(turn)?;
        if just_opened && !impersonations::hold_live(conn, session_id, people, now)? {
            self.session_ended = true;
            return Err(ended());
        }
        self.conn_for_log(None)
    }

    /// The connection for appending the request's row: opens the transaction
    /// if needed, without the liveness check (a refused request is logged too).
    fn conn_for_log(&mut self, turn: Option<Turn>) -> Result<&mut DbConnection, ApiError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => {
                let conn = self.pool.get()?;
                let mut open = RequestConnection { conn, _turn: turn };
                pool::begin_write(&mut open.conn).map_err(ApiError::unavailable)?;
                open
            }
        };
        Ok(&mut self.open.insert(open).conn)
    }
}

impl Drop for RequestConnection {
    fn drop(&mut self) {
        if pool::in_transaction(&mut self.conn) {
            let _ = pool::rollback(&mut self.conn);
        }
    }
}

impl Drop for RequestTransaction {
    fn drop(&mut self) {
        // Left open (the client went away mid-request, the future was dropped
        // on an async worker): the rollback is a database round trip, so it
        // runs on a blocking thread, which then lets the next SQLite writer in.
        if let Some(mut open) = self.open.take() {
            if pool::in_transaction(&mut open.conn) {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn_blocking(move || drop(open));
                }
            }
        }
    }
}

pub type SharedConnection = Arc<Mutex<RequestTransaction>>;

tokio::task_local! {
    /// The open transaction of the impersonated request being served.
    pub static REQUEST_DB: SharedConnection;
}

/// The impersonation a request's bearer token names, if it is one of ours.
struct Impersonated {
    session_id: Uuid,
    impersonator_id: Uuid,
    target_id: Uuid,
}

/// Any Authorization header counts: a request refused for carrying several is
/// still logged in the session of each impersonation token among them.
fn impersonated(req: &ServiceRequest, state: &AppState) -> Vec<Impersonated> {
    bearer_tokens(req.request()).filter_map(|token| impersonation_token(state, token)).collect()
}

fn impersonation_token(state: &AppState, token: &str) -> Option<Impersonated> {
    let claims = impersonation_claims(state, token)?;
    let act = claims.act?;
    Some(Impersonated { session_id: claims.sid, impersonator_id: act.sub, target_id: claims.sub })
}

/// The OAuth endpoints take tokens in their form body: a request that uses an
/// impersonation token there (as the actor of an exchange, or to revoke it) is
/// logged like any other. Introspection is not a use of the token but a
/// question about it, asked with the caller's own bearer token: not logged in
/// the session (a gateway introspecting every call would double its log).
/// Every session named is returned, so that two are refused (and logged)
/// together. The body is read here and handed on; `Err` is a body too large
/// to read.
async fn impersonated_in_form(req: &mut ServiceRequest, state: &AppState) -> Result<Vec<Impersonated>, ApiError> {
    // The path as routed (`/%6fauth/revoke` is `/oauth/revoke` too).
    let fields = oauth::token_fields(req.match_info().as_str());
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let is_form = oauth::is_form(req.request());
    let body = read_body(req).await?;
    req.set_payload(Payload::from(body.clone()));
    let found: Vec<Impersonated> = if is_form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        pairs
            .iter()
            .filter(|(name, _)| fields.contains(&name.as_str()))
            .filter_map(|(_, value)| impersonation_token(state, value))
            .collect()
    } else {
        // Refused for its encoding (JSON, multipart), yet it carries the
        // token: the attempt belongs in that session's log all the same.
        token_shaped(&String::from_utf8_lossy(&body)).filter_map(|t| impersonation_token(state, t)).collect()
    };
    Ok(found)
}

/// The JWT-shaped words of a text (`eyJ…` with two dots): the first 16, so
/// that checking them stays cheap on the async worker (a request is at most
/// 64 KiB; every one of these bodies is refused anyway).
fn token_shaped(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .filter(|word| word.starts_with("eyJ") && word.matches('.').count() == 2)
        .take(16)
}

/// Errors under `/oauth/` are said the RFC 6749 way, everywhere else as
/// problem+json. A 401 here is always about the bearer token.
fn error_response(path: &str, error: ApiError) -> actix_web::HttpResponse {
    if path.starts_with("/oauth/") {
        match error.status {
            actix_web::http::StatusCode::UNAUTHORIZED => {
                OAuthError::invalid_bearer(error.detail.clone()).error_response()
            }
            _ => OAuthError::from_api(error).error_response(),
        }
    } else {
        error.error_response()
    }
}

pub struct AuditTrail;

impl<S, B> Transform<S, ServiceRequest> for AuditTrail
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = AuditTrailService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuditTrailService { service: Rc::new(service) }))
    }
}

pub struct AuditTrailService<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for AuditTrailService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        };
        Box::pin(async move {
            let mut sessions = impersonated(&req, &state);
            let form_refusal = match impersonated_in_form(&mut req, &state).await {
                Ok(found) => {
                    sessions.extend(found);
                    None
                }
                Err(refusal) => Some(refusal),
            };
            let mut seen = std::collections::HashSet::new();
            sessions.retain(|who| seen.insert(who.session_id));
            let Some(who) = sessions.pop() else {
                return Ok(match form_refusal {
                    Some(refusal) => {
                        let response = error_response(req.match_info().as_str(), refusal);
                        req.into_response(response).map_into_right_body()
                    }
                    None => service.call(req).await?.map_into_left_body(),
                });
            };
            let started = Instant::now();
            let at = state.clock.now();
            state.metrics.impersonated_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let span = tracing::Span::current();
            span.record("impersonator_id", tracing::field::display(who.impersonator_id));
            span.record("session_id", tracing::field::display(who.session_id));

            let client = ClientInfo::of(req.request());
            // The path as routed (`/%6fauth/token` is `/oauth/token`), unless
            // its escapes are no text (`%FF`): then as sent, still escaped.
            let routed = req.match_info().as_str();
            let path = if routed.contains('\u{FFFD}') { req.path() } else { routed }.to_owned();
            let mut entry = RequestEntry {
                session_id: who.session_id,
                at,
                method: req.method().to_string(),
                path: path_for_log(&path),
                query: Some(req.query_string()).filter(|q| !q.is_empty()).map(redact_query),
                status: 0,
                duration_ms: 0,
                ip: client.ip,
                user_agent: client.user_agent,
                body: None,
            };
            let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let read = match form_refusal {
                Some(refusal) => Err(refusal),
                None => read_body(&mut req).await,
            };
            let body = match read {
                Ok(body) => body,
                Err(refusal) => {
                    entry.status = refusal.status.as_u16();
                    entry.body = Some(format!("[body not read: {}]", refusal.detail));
                    sessions.push(who);
                    return answer_alone(&state, &sessions, entry, started, req, refusal).await;
                }
            };
            entry.body = redact_body(&body, content_type.as_deref());
            req.set_payload(Payload::from(body));
            if !sessions.is_empty() {
                // Whose session would it act in? Neither: refused, and logged in each.
                let refusal = ApiError::bad_request(
                    "several_sessions",
                    "this request carries the tokens of several impersonation sessions; send one",
                );
                entry.status = refusal.status.as_u16();
                sessions.push(who);
                return answer_alone(&state, &sessions, entry, started, req, refusal).await;
            }

            // Fail closed: a handler that cannot open the transaction cannot
            // read or change anything, and without the row the answer is 503.
            let shared = Arc::new(Mutex::new(RequestTransaction::new(&state, &who)));
            let result = REQUEST_DB.scope(Arc::clone(&shared), service.call(req)).await;
            let status = match &result {
                Ok(res) => res.status(),
                Err(error) => error.as_response_error().status_code(),
            };
            entry.status = status.as_u16();
            entry.duration_ms = started.elapsed().as_millis() as u64;
            let keep_changes = !status.is_server_error();
            let logged = finish(shared, entry, keep_changes).await;
            match (logged, result) {
                (Ok(Logged::AsAnswered), Ok(res)) => Ok(res.map_into_left_body()),
                (Ok(_), Err(error)) => Err(error),
                (Ok(Logged::Replaced(error)) | Err(error), Ok(res)) => {
                    let response = error_response(res.request().match_info().as_str(), error);
                    Ok(res.into_response(response).map_into_right_body())
                }
                (Err(error), Err(_)) => Err(actix_web::error::InternalError::from_response(
                    "the request log could not be written",
                    error_response(&path, error),
                )
                .into()),
            }
        })
    }
}

/// Reads the whole body (to log it) so it can be handed on to the handler.
async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, ApiError> {
    if super::json::declares_too_large_body(req.headers()) {
        return Err(ApiError::payload_too_large());
    }
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::unreadable_body(&e))?;
        if body.len() + chunk.len() > MAX_CAPTURED_BODY {
            return Err(ApiError::payload_too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How a request's row went in: with the answer as the handler gave it, or,
/// for an answer made without the transaction, as the error it became when
/// the transaction opened (the session ended first: 401; the check could not
/// be made: 503).
enum Logged {
    AsAnswered,
    Replaced(ApiError),
}

/// Appends the row and commits, on a blocking thread inside the request's span.
async fn finish(shared: SharedConnection, entry: RequestEntry, keep_changes: bool) -> Result<Logged, ApiError> {
    let span = tracing::Span::current();
    // No turn in time, no row: the request is refused as unlogged.
    let turn = RequestTransaction::wait_turn(&shared).await.map_err(ApiError::audit_unavailable)?;
    web::block(move || {
        let _in_request = span.enter();
        append_and_commit(shared, turn, entry, keep_changes)
    })
    .await
    .map_err(ApiError::internal)?
}

/// On any failure nothing of the request stays, and the answer becomes 503.
fn append_and_commit(
    shared: SharedConnection,
    mut turn: Option<Turn>,
    mut entry: RequestEntry,
    mut keep_changes: bool,
) -> Result<Logged, ApiError> {
    // A panic in a handler's database work leaves the lock poisoned; the
    // transaction is rolled back below (a 5xx keeps nothing), so go on.
    let mut guard = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut logged = Logged::AsAnswered;
    // An answer made without the transaction (a read the token's check
    // already served, like `GET /me`) is ordered against the session's end
    // only here: ended meanwhile, the request is refused after all, so that
    // no call is ever answered, or logged, after its session's end. (Probes
    // and public documents answer whoever asks; revoking a token, an ended
    // one included, is always 200.)
    let answers_as_the_session = reads_the_caller(&entry.path) && entry.path != oauth::REVOKE_PATH;
    if guard.open.is_none() && entry.status < 400 && answers_as_the_session {
        let (session_id, now) = (guard.session_id, guard.clock.now());
        let checked = guard.conn_for_log(turn.take()).and_then(|conn| {
            match impersonations::share_if_open(conn, session_id, now).map_err(ApiError::unavailable)? {
                true => Ok(()),
                false => Err(ApiError::unauthorized("the impersonation session has ended")),
            }
        });
        if let Err(refusal) = checked {
            // Logged as what it became; a failed check (a lock not had in
            // time) leaves the transaction to be begun again for the row.
            entry.status = refusal.status.as_u16();
            keep_changes = false;
            logged = Logged::Replaced(refusal);
        }
    }
    let conn = guard.conn_for_log(turn)?;
    let appended = (|| {
        if !keep_changes {
            // A failed request keeps nothing but its row.
            pool::rollback(conn)?;
            pool::begin_write(conn)?;
        }
        audit::append_request(conn, entry)?;
        pool::commit(conn)
    })();
    appended.map(|()| logged).map_err(|e: diesel::result::Error| {
        let _ = pool::rollback(conn);
        ApiError::audit_unavailable(format!("writing the request log failed: {e}"))
    })
}

/// Logs a request that was refused before reaching the handler, in its own
/// transaction, in the log of each session it names.
async fn answer_alone<B: 'static>(
    state: &AppState,
    sessions: &[Impersonated],
    mut entry: RequestEntry,
    started: Instant,
    req: ServiceRequest,
    refusal: ApiError,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    entry.duration_ms = started.elapsed().as_millis() as u64;
    let mut error = refusal;
    for who in sessions {
        let shared = Arc::new(Mutex::new(RequestTransaction::new(state, who)));
        let entry = RequestEntry { session_id: who.session_id, ..entry.clone() };
        if let Err(unlogged) = finish(shared, entry, true).await {
            error = unlogged;
        }
    }
    let response = error_response(req.match_info().as_str(), error);
    Ok(req.into_response(response).map_into_right_body())
}
