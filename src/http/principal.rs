//! The authenticated caller. Every request with a token is checked twice: the
//! token itself (signature, typ, iss, aud, time) and, in the database, that the
//! session its `sid` names is still open and its user still active. There is no
//! cache between the two, so an ended session is refused on the very next request.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use super::problem::ApiError;
use crate::crypto::tokens::{Claims, TokenError};
use crate::domain::policy::Actor;
use crate::state::AppState;
use crate::store::organizations::Organization;
use crate::store::sessions;
use crate::store::users::User;

#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub organization: Organization,
    pub session_id: Uuid,
    pub claims: Claims,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            id: *self.user.id,
            role: self.user.role(),
            org: self.organization.org_path(),
        }
    }
}

/// The bearer token of the request, if it has one in the expected form.
pub fn bearer_token(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::unauthorized(
            "expected `Authorization: Bearer <token>`",
        )),
    }
}

fn token_error(error: TokenError) -> ApiError {
    ApiError::unauthorized(error.to_string())
}

async fn authenticate(req: HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))?
        .clone();
    let token = bearer_token(&req)?.ok_or_else(ApiError::missing_token)?;
    let now = state.clock.now();
    let claims = state.tokens().verify(token, now).map_err(token_error)?;
    if claims.act.is_some() {
        // Impersonation sessions are not issued by this service version.
        return Err(ApiError::unauthorized("the session has ended"));
    }
    let sid = claims.sid;
    let live = state
        .db(move |conn| Ok(sessions::find_live(conn, sid, now)?))
        .await?;
    let (session, user, organization) =
        live.ok_or_else(|| ApiError::unauthorized("the session has ended"))?;
    if *user.id != claims.sub {
        return Err(ApiError::unauthorized(
            "the token does not match its session",
        ));
    }
    let principal = Principal {
        user,
        organization,
        session_id: *session.id,
        claims,
    };
    req.extensions_mut().insert(principal.clone());
    Ok(principal)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(authenticate(req))
    }
}
