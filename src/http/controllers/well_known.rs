//! Discovery documents: the signing keys (JWKS) and RFC 8414 server metadata.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::oauth::{ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, USER_ID_TOKEN_TYPE};
use crate::crypto::tokens::SCOPES;
use crate::http::problem::{ApiError, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]}))]
pub struct Jwks {
    /// The current signing key first, then earlier keys that still verify.
    pub keys: Vec<crate::crypto::keys::Jwk>,
}

/// The public keys that verify actas tokens (RFC 7517, Ed25519 per RFC 8037).
///
/// `kid` is the key's RFC 7638 thumbprint and matches the `kid` of every
/// token header. During a key rotation earlier keys stay here until the tokens
/// they signed have expired. Cache for at most a few minutes.
#[utoipa::path(operation_id = "get_jwks", tag = "oauth", responses((status = 200, description = "JSON Web Key Set", body = Jwks)))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().insert_header(("cache-control", "public, max-age=300")).json(Jwks { keys: state.keys.jwks() })
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "issuer": "https://actas.example.com",
    "token_endpoint": "https://actas.example.com/oauth/token",
    "introspection_endpoint": "https://actas.example.com/oauth/introspect",
    "revocation_endpoint": "https://actas.example.com/oauth/revoke",
    "jwks_uri": "https://actas.example.com/.well-known/jwks.json",
    "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
    "response_types_supported": [],
    "token_endpoint_auth_methods_supported": ["none"],
    "introspection_endpoint_auth_methods_supported": ["Bearer"],
    "revocation_endpoint_auth_methods_supported": ["none"],
    "scopes_supported": ["actas", "impersonation"],
    "subject_token_types_supported": ["urn:actas:params:oauth:token-type:user-id"],
    "actor_token_types_supported": ["urn:ietf:params:oauth:token-type:access_token"],
    "issued_token_types_supported": ["urn:ietf:params:oauth:token-type:access_token"],
    "service_documentation": "https://actas.example.com/swagger-ui/"
}))]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub jwks_uri: String,
    pub grant_types_supported: Vec<&'static str>,
    /// Empty: there is no authorization endpoint.
    pub response_types_supported: Vec<&'static str>,
    /// The token endpoint authenticates the actor by `actor_token` and password.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `Bearer` (RFC 8414 §2 allows access token types here): the caller's own access token.
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Scopes an exchange may request; an impersonation token has both.
    pub scopes_supported: Vec<&'static str>,
    pub subject_token_types_supported: Vec<&'static str>,
    pub actor_token_types_supported: Vec<&'static str>,
    pub issued_token_types_supported: Vec<&'static str>,
    pub service_documentation: String,
}

/// RFC 8414 authorization server metadata.
///
/// Where the token, introspection, revocation and key endpoints are, and which
/// grant and token types actas supports. Public; cache it for a few minutes.
#[utoipa::path(operation_id = "authorization_server_metadata", tag = "oauth", responses((status = 200, description = "Server metadata", body = ServerMetadata)))]
#[get("/.well-known/oauth-authorization-server")]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    server_metadata(&state)
}

/// RFC 8414 metadata for an issuer with a path.
///
/// When `ACTAS_ISSUER` has a path (actas behind a proxy at
/// `https://example.com/actas`), RFC 8414 §3.1 puts the metadata at
/// `/.well-known/oauth-authorization-server/actas`: the same document as
/// above, served for exactly the issuer's path. Any other suffix is 404.
#[utoipa::path(
    operation_id = "authorization_server_metadata_for_issuer_path",
    tag = "oauth",
    params(("issuer_path" = String, Path, description = "The path of `ACTAS_ISSUER`, without its leading slash", example = "actas")),
    responses(
        (status = 200, description = "Server metadata", body = ServerMetadata),
        (status = 404, description = "Not the issuer's path (`not_found`)", body = Problem, content_type = "application/problem+json",
            example = json!({"type": "urn:actas:problem:not_found", "title": "Not found", "status": 404, "detail": "issuer path not found", "code": "not_found"})),
    )
)]
#[get("/.well-known/oauth-authorization-server/{issuer_path:.*}")]
pub async fn metadata_for_issuer_path(
    state: web::Data<AppState>,
    issuer_path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match state.config.issuer_path() {
        Some(path) if path.trim_start_matches('/') == issuer_path.trim_end_matches('/') => Ok(server_metadata(&state)),
        _ => Err(ApiError::not_found("issuer path")),
    }
}

fn server_metadata(state: &AppState) -> HttpResponse {
    let base = state.config.issuer.trim_end_matches('/').to_owned();
    HttpResponse::Ok().insert_header(("cache-control", "public, max-age=300")).json(ServerMetadata {
        issuer: state.config.issuer.clone(),
        token_endpoint: format!("{base}/oauth/token"),
        introspection_endpoint: format!("{base}/oauth/introspect"),
        revocation_endpoint: format!("{base}/oauth/revoke"),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        grant_types_supported: vec![TOKEN_EXCHANGE],
        response_types_supported: vec![],
        token_endpoint_auth_methods_supported: vec!["none"],
        introspection_endpoint_auth_methods_supported: vec!["Bearer"],
        revocation_endpoint_auth_methods_supported: vec!["none"],
        scopes_supported: SCOPES.to_vec(),
        subject_token_types_supported: vec![USER_ID_TOKEN_TYPE],
        actor_token_types_supported: vec![ACCESS_TOKEN_TYPE],
        issued_token_types_supported: vec![ACCESS_TOKEN_TYPE],
        service_documentation: format!("{base}/swagger-ui/"),
    })
}
