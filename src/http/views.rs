//! Response bodies shared by several resources.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::types::{Role, UserStatus};
use crate::store::organizations::Organization;
use crate::store::users::User;

/// How to send an access token: always `Bearer` (RFC 6750).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum TokenType {
    Bearer,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b",
    "email": "ada@acme.example",
    "name": "Ada Lovelace",
    "organization_id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40",
    "role": "member",
    "status": "active",
    "created_at": "2026-11-21T09:30:00Z",
    "updated_at": "2026-11-21T09:30:00Z"
}))]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub organization_id: Uuid,
    pub role: Role,
    pub status: UserStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: *user.id,
            email: user.email.clone(),
            name: user.name.clone(),
            organization_id: *user.organization_id,
            role: user.role(),
            status: user.status(),
            created_at: *user.created_at,
            updated_at: *user.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40",
    "name": "Acme Corp",
    "parent_id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e30",
    "depth": 1,
    "is_owner": false,
    "created_at": "2026-11-21T09:00:00Z"
}))]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
    /// `null` only for the owner organization, the root of the tree.
    #[schema(required = true)]
    pub parent_id: Option<Uuid>,
    /// Distance from the owner organization (which is 0).
    pub depth: i32,
    /// Whether this is the owner organization (the platform operator).
    pub is_owner: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&Organization> for OrganizationView {
    fn from(org: &Organization) -> Self {
        Self {
            id: *org.id,
            name: org.name.clone(),
            parent_id: org.parent_id.map(Into::into),
            depth: org.depth,
            is_owner: org.parent_id.is_none(),
            created_at: *org.created_at,
        }
    }
}

/// A user as named on an impersonation session.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a5c4-6a00-7b00-8d19-4a9b0c1d2e31", "email": "sam@support.example", "name": "Sam Support"}))]
pub struct PersonRef {
    pub id: Uuid,
    pub email: String,
    pub name: String,
}

impl PersonRef {
    pub fn of(user: Option<&User>, id: Uuid) -> Self {
        match user {
            Some(u) => Self { id: *u.id, email: u.email.clone(), name: u.name.clone() },
            None => Self { id, email: String::new(), name: String::new() },
        }
    }
}

/// Whether the caller can impersonate this user now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"available": true, "consent_expires_at": "2026-11-22T09:00:00Z"}))]
pub struct ImpersonationAvailability {
    /// True when every rule allows it now; only the password confirmation remains.
    pub available: bool,
    /// The user's active consent expiry, shown only to callers who hold the
    /// right to impersonate this user (also while the user is suspended, when
    /// `available` is false); `null` for everyone else.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(required = true)]
    pub consent_expires_at: Option<OffsetDateTime>,
}

/// A user as listed for an administrator, with the impersonation flag.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a5c4-8c1e-7d22-9f3a-6b1d2e3f4a5b", "email": "ada@acme.example", "name": "Ada Lovelace",
    "organization_id": "0193a5c4-7b00-7c11-8e2a-5a0c1d2e3f40", "role": "member", "status": "active",
    "created_at": "2026-11-21T09:30:00Z", "updated_at": "2026-11-21T09:30:00Z",
    "impersonation": {"available": true, "consent_expires_at": "2026-11-22T09:00:00Z"}
}))]
pub struct UserItem {
    #[serde(flatten)]
    pub user: UserView,
    pub impersonation: ImpersonationAvailability,
}
