//! Login sessions: what a login token's `sid` names. A token is honoured only
//! while its session row is open, unexpired and its user active.

use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::organizations::Organization;
use super::schema::{login_sessions, organizations, users};
use super::sql_types::{DbTime, DbUuid};
use super::users::User;
use super::DbConnection;
use crate::domain::types::UserStatus;

/// Why a login session ended; stored in `end_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginEnd {
    Logout,
    PasswordChanged,
    UserSuspended,
    UserDeleted,
    /// A token names the role it was issued with: it must not outlive it.
    RoleChanged,
}

impl LoginEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginEnd::Logout => "logout",
            LoginEnd::PasswordChanged => "password_changed",
            LoginEnd::UserSuspended => "user_suspended",
            LoginEnd::UserDeleted => "user_deleted",
            LoginEnd::RoleChanged => "role_changed",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = login_sessions, treat_none_as_default_value = false)]
pub struct LoginSession {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub created_at: DbTime,
    pub expires_at: DbTime,
    pub ended_at: Option<DbTime>,
    pub end_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

pub fn insert(conn: &mut DbConnection, session: &LoginSession) -> QueryResult<()> {
    diesel::insert_into(login_sessions::table).values(session.clone()).execute(conn).map(|_| ())
}

/// The session with its user and organization, if it is still live at `now`.
pub fn find_live(
    conn: &mut DbConnection,
    id: Uuid,
    now: OffsetDateTime,
) -> QueryResult<Option<(LoginSession, User, Organization)>> {
    login_sessions::table
        .inner_join(users::table.inner_join(organizations::table))
        .filter(login_sessions::id.eq(DbUuid(id)))
        .filter(login_sessions::ended_at.is_null())
        .filter(login_sessions::expires_at.gt(DbTime(now)))
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .select((LoginSession::as_select(), User::as_select(), Organization::as_select()))
        .first(conn)
        .optional()
}

/// Ends one open session; returns whether it was open.
pub fn end(conn: &mut DbConnection, id: Uuid, reason: LoginEnd, now: OffsetDateTime) -> QueryResult<bool> {
    diesel::update(
        login_sessions::table.filter(login_sessions::id.eq(DbUuid(id))).filter(login_sessions::ended_at.is_null()),
    )
    .set((login_sessions::ended_at.eq(Some(DbTime(now))), login_sessions::end_reason.eq(Some(reason.as_str()))))
    .execute(conn)
    .map(|n| n > 0)
}

/// Ends every open session of a user, except `keep` (the caller's own).
pub fn end_all_for_user(
    conn: &mut DbConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: LoginEnd,
    now: OffsetDateTime,
) -> QueryResult<usize> {
    let open = login_sessions::table
        .filter(login_sessions::user_id.eq(DbUuid(user_id)))
        .filter(login_sessions::ended_at.is_null())
        .filter(login_sessions::id.ne(DbUuid(keep.unwrap_or(Uuid::nil()))));
    diesel::update(open)
        .set((login_sessions::ended_at.eq(Some(DbTime(now))), login_sessions::end_reason.eq(Some(reason.as_str()))))
        .execute(conn)
}
