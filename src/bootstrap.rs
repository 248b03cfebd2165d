//! First start on an empty database: the owner organization and a super admin.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Config;
use crate::crypto::password::hash_blocking;
use crate::crypto::random_bytes;
use crate::domain::types::{Email, Name, NewPassword, Role, UserStatus};
use crate::store::organizations::{self, Organization};
use crate::store::sql_types::{DbTime, DbUuid};
use crate::store::users::{self, User};
use crate::store::{is_unique_violation, write_transaction, DbConnection};

pub const DEFAULT_ADMIN_EMAIL: &str = "admin@localhost";

#[derive(Debug)]
pub enum Outcome {
    AlreadyBootstrapped,
    Created { email: String, generated_password: Option<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("ACTAS_BOOTSTRAP_ADMIN_EMAIL: {0}")]
    Email(String),
    #[error("ACTAS_BOOTSTRAP_ADMIN_PASSWORD: {0}")]
    Password(String),
    #[error("cannot create the bootstrap admin: {0}")]
    Store(#[from] diesel::result::Error),
    #[error("cannot hash the bootstrap password: {0}")]
    Hash(String),
}

/// Creates the owner organization and its first super admin, once. Safe when
/// several nodes start together: the database admits only one owner.
pub fn run(conn: &mut DbConnection, config: &Config, now: OffsetDateTime) -> Result<Outcome, BootstrapError> {
    if organizations::owner(conn)?.is_some() {
        return Ok(Outcome::AlreadyBootstrapped);
    }
    let email = Email::parse(config.bootstrap_admin_email.as_deref().unwrap_or(DEFAULT_ADMIN_EMAIL))
        .map_err(|e| BootstrapError::Email(e.message))?;
    let (password, generated) = match &config.bootstrap_admin_password {
        Some(given) => (NewPassword::parse("password", given).map_err(|e| BootstrapError::Password(e.message))?, false),
        None => {
            let random = URL_SAFE_NO_PAD.encode(random_bytes::<18>());
            (NewPassword::parse("password", &random).expect("24 random characters meet the policy"), true)
        }
    };
    let hash = hash_blocking(password.expose()).map_err(|e| BootstrapError::Hash(e.to_string()))?;
    let owner = Organization::new_child(None, "Owner organization".into(), now);
    let admin = User {
        id: DbUuid(Uuid::now_v7()),
        email: email.as_str().to_owned(),
        name: Name::parse("name", "Administrator").expect("constant name is valid").into_string(),
        organization_id: owner.id,
        role: Role::SuperAdmin.as_str().to_owned(),
        status: UserStatus::Active.as_str().to_owned(),
        password_hash: hash,
        created_at: DbTime(now),
        updated_at: DbTime(now),
        deleted_at: None,
    };
    let created = write_transaction(conn, |conn| {
        organizations::insert(conn, &owner)?;
        users::insert(conn, &admin)
    });
    match created {
        Ok(()) => Ok(Outcome::Created {
            email: admin.email,
            generated_password: generated.then(|| password.expose().to_owned()),
        }),
        // Another node bootstrapped at the same moment.
        Err(e) if is_unique_violation(&e) => Ok(Outcome::AlreadyBootstrapped),
        Err(e) => Err(e.into()),
    }
}
