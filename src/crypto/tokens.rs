//! Access tokens: EdDSA JWTs with `typ: at+jwt` (RFC 9068) and a `kid`.
//!
//! Verification pins the algorithm, requires the `typ`, resolves the key by
//! `kid` only among our own keys, and checks `iss`, `aud`, `exp`, `nbf` and
//! `iat` against the service clock with an explicit leeway. Whether the named
//! session is still live is checked by the caller, in the database.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::keys::SigningKeys;
use crate::domain::types::Role;

pub const TOKEN_TYPE: &str = "at+jwt";
/// RFC 9068 requires `client_id`: every token is issued to actas' own
/// first-party client (there are no registered third-party clients).
pub const CLIENT_ID: &str = "actas";
/// The scopes there are; a login token has the first, an impersonation token both.
pub const SCOPES: [&str; 2] = ["actas", "impersonation"];
pub const LOGIN_SCOPE: &str = "actas";
pub const IMPERSONATION_SCOPE: &str = "actas impersonation";
/// Tolerated clock difference between nodes, for `nbf` and `iat` (a token
/// from a node whose clock runs ahead). None for `exp`: the session a token
/// names ends at the same instant, and the database is the judge of that.
pub const LEEWAY_SECONDS: i64 = 30;

/// RFC 8693 §4.1 actor claim: who is really acting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActorClaim {
    pub sub: Uuid,
    pub email: String,
    /// Only ever present in a forged or foreign token: we never nest actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub sid: Uuid,
    pub org: Uuid,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<ActorClaim>,
    /// RFC 9068 claims; absent from tokens signed by earlier versions.
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not an access token (typ must be at+jwt)")]
    WrongType,
    #[error("the token is not signed by this service: its kid names none of the keys in /.well-known/jwks.json")]
    UnknownKey,
    #[error("the token was issued by another issuer (its iss is not this service's ACTAS_ISSUER)")]
    WrongIssuer,
    #[error("the token is meant for another audience (its aud is not this service's ACTAS_AUDIENCE)")]
    WrongAudience,
    #[error("the token signature or claims are invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("nested actor claims are not accepted")]
    NestedActor,
}

/// What a new token says; `iat`, `nbf` and `jti` are filled in when signing.
pub struct TokenRequest {
    pub subject: Uuid,
    pub session_id: Uuid,
    pub organization_id: Uuid,
    pub role: Role,
    pub actor: Option<ActorClaim>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub struct TokenIssuer<'a> {
    pub keys: &'a SigningKeys,
    pub issuer: &'a str,
    pub audience: &'a str,
}

impl TokenIssuer<'_> {
    pub fn sign(&self, request: TokenRequest) -> String {
        let iat = request.issued_at.unix_timestamp();
        let claims = Claims {
            iss: self.issuer.to_owned(),
            aud: self.audience.to_owned(),
            sub: request.subject,
            iat,
            nbf: iat,
            exp: request.expires_at.unix_timestamp(),
            jti: Uuid::new_v4(),
            sid: request.session_id,
            org: request.organization_id,
            role: request.role,
            scope: if request.actor.is_some() { IMPERSONATION_SCOPE } else { LOGIN_SCOPE }.to_owned(),
            act: request.actor,
            client_id: CLIENT_ID.to_owned(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.keys.current_kid().to_owned());
        jsonwebtoken::encode(&header, &claims, self.keys.encoding_key())
            .expect("signing with a loaded Ed25519 key cannot fail")
    }

    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Claims, TokenError> {
        let claims = self.verify_signature(token)?;
        let now = now.unix_timestamp();
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY_SECONDS || claims.iat > now + LEEWAY_SECONDS {
            return Err(TokenError::NotYetValid);
        }
        if claims.act.as_ref().is_some_and(|a| a.act.is_some()) {
            return Err(TokenError::NestedActor);
        }
        Ok(claims)
    }

    /// Everything but time: a token this service signed, of the right type,
    /// issuer and audience, whether or not it has expired (the audit log
    /// records requests made with expired impersonation tokens too).
    pub fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        match header.typ.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("at+jwt" | "application/at+jwt") => {}
            _ => return Err(TokenError::WrongType),
        }
        // RFC 7515 §4.1.11: we understand no extension, so any `crit` is refused.
        if header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self.keys.verifying_key(kid).ok_or(TokenError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[self.issuer]);
        validation.set_audience(&[self.audience]);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "exp", "iat", "nbf"]);
        // Time claims are checked by `verify` against the service clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // Issuer and audience are public: naming the one that is wrong tells
        // an operator which setting differs between nodes or services.
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map(|data| data.claims).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenError::WrongAudience,
                _ => TokenError::Invalid,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn issuer(keys: &SigningKeys) -> TokenIssuer<'_> {
        TokenIssuer { keys, issuer: "https://actas.test", audience: "actas" }
    }

    fn request(now: OffsetDateTime) -> TokenRequest {
        TokenRequest {
            subject: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            role: Role::Member,
            actor: None,
            issued_at: now,
            expires_at: now + Duration::minutes(60),
        }
    }

    #[test]
    fn signed_tokens_verify_and_carry_their_claims() {
        let keys = SigningKeys::ephemeral();
        let now = OffsetDateTime::now_utc();
        let req = request(now);
        let (sub, sid) = (req.subject, req.session_id);
        let token = issuer(&keys).sign(req);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(keys.current_kid()));
        let claims = issuer(&keys).verify(&token, now).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.act), (sub, sid, None));
    }

    #[test]
    fn expiry_is_exact() {
        let keys = SigningKeys::ephemeral();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let token = issuer(&keys).sign(request(now));
        let exp = now + Duration::minutes(60);
        assert!(issuer(&keys).verify(&token, exp - Duration::seconds(1)).is_ok());
        assert_eq!(issuer(&keys).verify(&token, exp), Err(TokenError::Expired));
    }

    #[test]
    fn future_tokens_are_refused() {
        let keys = SigningKeys::ephemeral();
        let now = OffsetDateTime::now_utc();
        let token = issuer(&keys).sign(request(now + Duration::minutes(5)));
        assert_eq!(issuer(&keys).verify(&token, now), Err(TokenError::NotYetValid));
    }

    #[test]
    fn other_issuers_audiences_and_keys_are_refused() {
        let keys = SigningKeys::ephemeral();
        let now = OffsetDateTime::now_utc();
        let token = issuer(&keys).sign(request(now));
        let other_iss = TokenIssuer { keys: &keys, issuer: "https://elsewhere", audience: "actas" };
        assert_eq!(other_iss.verify(&token, now), Err(TokenError::WrongIssuer));
        let other_aud = TokenIssuer { keys: &keys, issuer: "https://actas.test", audience: "other" };
        assert_eq!(other_aud.verify(&token, now), Err(TokenError::WrongAudience));
        let foreign = SigningKeys::ephemeral();
        assert_eq!(issuer(&foreign).verify(&token, now), Err(TokenError::UnknownKey));
        assert_eq!(issuer(&keys).verify("not.a.token", now), Err(TokenError::Malformed));
    }
}
