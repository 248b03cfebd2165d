//! The authenticated caller. Every request with a token is checked twice: the
//! token itself (signature, typ, iss, aud, time) and, in the database, that the
//! session its `sid` names is still open and its users still active. There is
//! no cache between the two, so an ended session is refused on the very next
//! request, on every node.

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use uuid::Uuid;

use super::problem::ApiError;
use crate::crypto::tokens::{Claims, TokenError};
use crate::domain::impersonation::{Party, Refusal, SessionReader};
use crate::domain::policy::{Actor, OrgPath};
use crate::domain::types::Role;
use crate::state::{AppState, Clock};
use crate::store::impersonations::{self, ImpersonationSession};
use crate::store::organizations::Organization;
use crate::store::pool::DbConnection;
use crate::store::sessions;
use crate::store::users::{self, RowLock, User};

/// The caller. With an impersonation token, `user` is the target: every
/// permission is the target's, and `impersonation` says who is really acting.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub organization: Organization,
    /// The login session, or the impersonation session, the token names.
    pub session_id: Uuid,
    pub claims: Claims,
    pub impersonation: Option<Impersonation>,
}

#[derive(Debug, Clone)]
pub struct Impersonation {
    pub session: ImpersonationSession,
    pub impersonator: User,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor { id: *self.user.id, role: self.user.role(), org: self.organization.org_path() }
    }

    pub fn party<'a>(&'a self, org: &'a OrgPath) -> Party<'a> {
        Party { id: *self.user.id, role: self.user.role(), status: self.user.status(), org }
    }

    /// The user really making the call: the impersonator when impersonating.
    pub fn real_user_id(&self) -> Uuid {
        self.impersonation.as_ref().map_or(*self.user.id, |i| *i.impersonator.id)
    }

    /// What a write checks again about the caller inside its transaction.
    pub fn standing(&self) -> Standing {
        Standing {
            user_id: *self.user.id,
            session_id: self.session_id,
            role: self.user.role(),
            impersonated: self.impersonation.is_some(),
        }
    }

    pub fn session_reader(&self) -> SessionReader {
        SessionReader {
            user_id: *self.user.id,
            role: self.user.role(),
            acting_for: self.impersonation.as_ref().map(|i| (*i.impersonator.id, self.session_id)),
        }
    }
}

/// The bearer token of the request, if it has one in the expected form.
pub fn bearer_token(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let Some(value) = values.next() else { return Ok(None) };
    // Which of two credentials would count is ambiguous: neither does.
    if values.next().is_some() {
        return Err(ApiError::unauthorized("send one Authorization header, not several"));
    }
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    if value.contains(',') {
        return Err(ApiError::unauthorized("send one credential in the Authorization header, not a list"));
    }
    let token =
        parse_bearer(value).ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
    // The usual slip when pasting into Swagger UI's Authorize, which adds the word itself.
    if parse_bearer(token).is_some() {
        return Err(ApiError::unauthorized(
            "\"Bearer\" appears twice: send `Authorization: Bearer <token>` with it once",
        ));
    }
    Ok(Some(token))
}

/// Every bearer token a request carries: one per Authorization header, and
/// each of a comma-separated list in one (refused, but still carried).
pub fn bearer_tokens(req: &HttpRequest) -> impl Iterator<Item = &str> {
    req.headers()
        .get_all(header::AUTHORIZATION)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|credential| parse_bearer(credential.trim()))
}

fn parse_bearer(value: &str) -> Option<&str> {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Some(token.trim())
        }
        _ => None,
    }
}

fn token_error(error: TokenError) -> ApiError {
    ApiError::unauthorized(error.to_string())
}

/// The caller as authenticated before the handler ran. A write decides on it
/// only after [`Standing::lock_with`]: a suspension, deletion, role change or
/// logout of the caller that committed meanwhile then wins, and one that comes
/// later waits for the write.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    user_id: Uuid,
    session_id: Uuid,
    role: Role,
    impersonated: bool,
}

impl Standing {
    /// Locks `rows` together with the caller's own row (held, in one id
    /// order), then confirms the caller's session is still live as it was,
    /// at the time the locks were had.
    pub fn lock_with(self, conn: &mut DbConnection, rows: &[(Uuid, RowLock)], clock: &Clock) -> Result<(), ApiError> {
        let mut all = rows.to_vec();
        all.push((self.user_id, RowLock::Hold));
        users::lock_each(conn, &all)?;
        let now = clock.now();
        if self.impersonated {
            // The request's own transaction checked its session when it
            // opened, and holds it (`impersonations::hold_live`).
            return Ok(());
        }
        match sessions::find_live(conn, self.session_id, now)? {
            Some((_, user, _)) if *user.id == self.user_id && user.role() == self.role => Ok(()),
            _ => Err(ApiError::unauthorized("the session has ended")),
        }
    }
}

async fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state =
        req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::internal("application state missing"))?.clone();
    let token = bearer_token(req)?.ok_or_else(ApiError::missing_token)?;
    authenticate_token(&state, token).await
}

/// Who a token speaks for, if it is valid now and its session is live.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let now = state.clock.now();
    let claims = state.tokens().verify(token, now).map_err(token_error)?;
    let sid = claims.sid;
    let principal = match &claims.act {
        None => {
            let live = state.db_own(move |conn| Ok(sessions::find_live(conn, sid, now)?)).await?;
            let (session, user, organization) = live.ok_or_else(|| ApiError::unauthorized("the session has ended"))?;
            if *user.id != claims.sub {
                return Err(ApiError::unauthorized("the token does not match its session"));
            }
            Principal { user, organization, session_id: *session.id, claims, impersonation: None }
        }
        Some(act) => {
            let act_sub = act.sub;
            let live = state.db_own(move |conn| Ok(impersonations::find_live(conn, sid, now)?)).await?;
            let (session, target, organization, impersonator) =
                live.ok_or_else(|| ApiError::unauthorized("the impersonation session has ended"))?;
            if *target.id != claims.sub || *impersonator.id != act_sub {
                return Err(ApiError::unauthorized("the token does not match its session"));
            }
            let session_id = *session.id;
            let impersonation = Some(Impersonation { session, impersonator });
            Principal { user: target, organization, session_id, claims, impersonation }
        }
    };
    Ok(principal)
}

/// The result of authenticating a request's bearer token.
#[derive(Clone)]
struct Authenticated(Result<Principal, ApiError>);

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let outcome = req.extensions().get::<Authenticated>().map(|a| a.0.clone());
        ready(outcome.unwrap_or_else(|| Err(ApiError::missing_token())))
    }
}

impl Principal {
    /// How authenticating the request's bearer token went (`None`: it had none).
    pub fn outcome(req: &HttpRequest) -> Option<Result<Principal, ApiError>> {
        req.extensions().get::<Authenticated>().map(|a| a.0.clone())
    }
}

/// Stands for "not with an impersonation token": actions that stay the user's
/// own (SPEC §3). Listed before the body among a handler's parameters, it
/// answers 403 `impersonation-restricted` before the body is even looked at.
pub struct OwnToken;

impl FromRequest for OwnToken {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match Principal::outcome(req) {
            Some(Ok(p)) if p.impersonation.is_some() => {
                Err(ApiError::impersonation_restricted("this action is not allowed while impersonating"))
            }
            _ => Ok(OwnToken),
        })
    }
}

/// Like [`OwnToken`], for starting an impersonation: refused as `chained_impersonation`.
pub struct NotChained;

impl FromRequest for NotChained {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match Principal::outcome(req) {
            Some(Ok(p)) if p.impersonation.is_some() => Err(ApiError::impersonation_refused(Refusal::Chained)),
            _ => Ok(NotChained),
        })
    }
}

/// Probes, public documents and the UI never look at the caller: a token
/// sent to them costs no database round trip (and cannot slow a probe down
/// while the database is away).
pub fn reads_the_caller(path: &str) -> bool {
    !matches!(path, "/healthz" | "/readyz" | "/metrics")
        && !["/.well-known/", "/swagger-ui", "/api-docs/"].iter().any(|prefix| path.starts_with(prefix))
}

/// For logging in: refused when the request carries an impersonation token
/// (even an ended one). Such a request is audited, so it runs in one
/// transaction with its log row; a password check in there would hide its
/// failed attempt from concurrent requests until commit and let guesses past
/// the rate limit. Nobody needs to log in while acting as someone else.
pub struct NoImpersonationToken;

impl FromRequest for NoImpersonationToken {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let impersonating =
            req.app_data::<web::Data<AppState>>().is_some_and(|state| carries_impersonation_token(state, req));
        ready(if impersonating {
            Err(ApiError::impersonation_restricted(
                "send this request without the impersonation token in Authorization",
            ))
        } else {
            Ok(NoImpersonationToken)
        })
    }
}

/// The claims of an impersonation token this service signed, live or not:
/// a request carrying one is audited, in one transaction.
pub fn impersonation_claims(state: &AppState, token: &str) -> Option<Claims> {
    state.tokens().verify_signature(token).ok().filter(|claims| claims.act.is_some())
}

/// Whether any bearer token the request carries is such an impersonation
/// token: the audit layer looks at every Authorization header, so must this.
pub fn carries_impersonation_token(state: &AppState, req: &HttpRequest) -> bool {
    bearer_tokens(req).any(|token| impersonation_claims(state, token).is_some())
}

/// Authenticates every request that carries a bearer token, before routing
/// and extraction: a bad token is then always answered 401, never beaten by a
/// body or path error that an extractor would find first.
pub async fn authenticate_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.headers().contains_key(header::AUTHORIZATION) && reads_the_caller(req.match_info().as_str()) {
        // The clone must be gone before the request moves on: actix needs
        // exclusive access to it while routing.
        let outcome = {
            let http = req.request().clone();
            authenticate(&http).await
        };
        req.extensions_mut().insert(Authenticated(outcome));
    }
    next.call(req).await
}
