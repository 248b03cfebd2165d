use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::organizations::Organization;
use super::schema::{organizations, users};
use super::sql_types::{DbTime, DbUuid};
use super::DbConnection;
use crate::domain::policy::OrgPath;
use crate::domain::types::{Role, UserStatus};

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
pub struct User {
    pub id: DbUuid,
    pub email: String,
    pub name: String,
    pub organization_id: DbUuid,
    pub role: String,
    pub status: String,
    pub password_hash: String,
    pub created_at: DbTime,
    pub updated_at: DbTime,
    pub deleted_at: Option<DbTime>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password hash.
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("organization_id", &self.organization_id)
            .field("role", &self.role)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Stored values are constrained by CHECKs; an unknown one fails closed.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Member)
    }

    pub fn status(&self) -> UserStatus {
        UserStatus::parse(&self.status).unwrap_or(UserStatus::Suspended)
    }

    pub fn is_active(&self) -> bool {
        self.status() == UserStatus::Active
    }
}

diesel::define_sql_function! {
    /// SQL `lower()`, used by the email CHECK constraint and a migration's
    /// backfill; on SQLite replaced by Rust's Unicode folding (see pool).
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// How names are compared in search: Unicode lower case, folded here rather
/// than by the database, whose folding depends on backend and locale. The
/// Greek final sigma, which lower-casing picks by position in the word,
/// folds into σ, so that a search for the start of a word finds it.
pub fn fold(text: &str) -> String {
    text.to_lowercase().replace('ς', "σ")
}

pub fn insert(conn: &mut DbConnection, user: &User) -> QueryResult<()> {
    diesel::insert_into(users::table)
        .values((user.clone(), users::name_folded.eq(fold(&user.name))))
        .execute(conn)
        .map(|_| ())
}

pub fn find_with_org(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<(User, Organization)>> {
    users::table
        .inner_join(organizations::table)
        .filter(users::id.eq(DbUuid(id)))
        .select((User::as_select(), Organization::as_select()))
        .first(conn)
        .optional()
}

/// The live (not deleted) user with this normalized email.
pub fn find_live_by_email(conn: &mut DbConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .filter(users::status.ne(UserStatus::Deleted.as_str()))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub struct ListFilter<'a> {
    pub within: Option<&'a OrgPath>,
    /// Only this user (a member listing users sees themself).
    pub only_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub status: Option<UserStatus>,
    /// Case-insensitive substring of email or name.
    pub search: Option<&'a str>,
    pub before_id: Option<Uuid>,
    pub limit: i64,
}

/// Newest first (ids are UUIDv7). Deleted users only when asked for by status.
pub fn list(conn: &mut DbConnection, filter: ListFilter<'_>) -> QueryResult<Vec<(User, Organization)>> {
    let mut query = users::table
        .inner_join(organizations::table)
        .select((User::as_select(), Organization::as_select()))
        .into_boxed();
    if let Some(within) = filter.within {
        query = query.filter(super::organizations::in_subtree(within));
    }
    if let Some(id) = filter.only_id {
        query = query.filter(users::id.eq(DbUuid(id)));
    }
    if let Some(org) = filter.organization_id {
        query = query.filter(users::organization_id.eq(DbUuid(org)));
    }
    query = match filter.status {
        Some(status) => query.filter(users::status.eq(status.as_str())),
        None => query.filter(users::status.ne(UserStatus::Deleted.as_str())),
    };
    if let Some(search) = filter.search {
        // Emails are stored lower-cased (final sigma kept), names folded.
        let email = format!("%{}%", super::like_literal(&search.to_lowercase()));
        let name = format!("%{}%", super::like_literal(&fold(search)));
        query = query.filter(users::email.like(email).escape('\\').or(users::name_folded.like(name).escape('\\')));
    }
    if let Some(before) = filter.before_id {
        query = query.filter(users::id.lt(DbUuid(before)));
    }
    query.order(users::id.desc()).limit(filter.limit).load(conn)
}

pub struct Update<'a> {
    pub name: Option<&'a str>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub now: OffsetDateTime,
}

pub fn update(conn: &mut DbConnection, id: Uuid, change: Update<'_>) -> QueryResult<()> {
    if let Some(name) = change.name {
        diesel::update(users::table.find(DbUuid(id)))
            .set((users::name.eq(name), users::name_folded.eq(fold(name))))
            .execute(conn)?;
    }
    if let Some(role) = change.role {
        diesel::update(users::table.find(DbUuid(id))).set(users::role.eq(role.as_str())).execute(conn)?;
    }
    if let Some(status) = change.status {
        let deleted_at = (status == UserStatus::Deleted).then_some(DbTime(change.now));
        diesel::update(users::table.find(DbUuid(id)))
            .set((users::status.eq(status.as_str()), users::deleted_at.eq(deleted_at)))
            .execute(conn)?;
    }
    diesel::update(users::table.find(DbUuid(id)))
        .set(users::updated_at.eq(DbTime(change.now)))
        .execute(conn)
        .map(|_| ())
}

pub fn set_password_hash(conn: &mut DbConnection, id: Uuid, hash: &str, now: OffsetDateTime) -> QueryResult<()> {
    diesel::update(users::table.find(DbUuid(id)))
        .set((users::password_hash.eq(hash), users::updated_at.eq(DbTime(now))))
        .execute(conn)
        .map(|_| ())
}

/// Locks users' rows until the transaction ends, in id order, so that callers
/// locking in one call never deadlock each other. Every change to who may
/// impersonate whom (consent, status, role, a start) takes these locks on
/// PostgreSQL, so a consent revocation, a suspension or a start can never
/// interleave, and each waits for the impersonated requests that rely on the
/// rows (`hold_unchanged`). On SQLite, write transactions are already serial.
pub fn lock(conn: &mut DbConnection, ids: &[Uuid]) -> QueryResult<()> {
    lock_rows(conn, ids, RowLock::Change.sql())
}

/// Keeps users' rows from a `lock` until the transaction ends, without
/// excluding anyone else: impersonated requests of different sessions hold
/// the same impersonator at once, and still edit each other's targets, with
/// no lock cycle between them.
pub fn hold_unchanged(conn: &mut DbConnection, ids: &[Uuid]) -> QueryResult<()> {
    lock_rows(conn, ids, RowLock::Hold.sql())
}

/// How strongly a user's row is locked, from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowLock {
    /// As `hold_unchanged`: keeps out a `Change`, excludes nobody else.
    Hold,
    /// For an edit that does not change who may impersonate whom (a new
    /// name): excludes other edits and changes, but does not wait for the
    /// requests that merely rely on the row.
    Edit,
    /// As `lock`: for a change of who may impersonate whom.
    Change,
}

impl RowLock {
    fn sql(self) -> &'static str {
        match self {
            RowLock::Hold => "FOR KEY SHARE",
            RowLock::Edit => "FOR NO KEY UPDATE",
            RowLock::Change => "FOR UPDATE",
        }
    }
}

/// Locks several users' rows, each in its own mode, in id order (a row named
/// twice gets the stronger mode): two such calls never wait for each other in
/// a circle. An impersonated request holds its users' rows from its start
/// (`impersonations::hold_live`), outside this order: one that changes a user
/// who at that moment changes the impersonated user can meet it in a cycle,
/// which PostgreSQL breaks within a second; the loser answers 503 to retry.
pub fn lock_each(conn: &mut DbConnection, rows: &[(Uuid, RowLock)]) -> QueryResult<()> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    rows.dedup_by_key(|(id, _)| *id);
    for (id, mode) in rows {
        lock_rows(conn, &[id], mode.sql())?;
    }
    Ok(())
}

fn lock_rows(conn: &mut DbConnection, ids: &[Uuid], mode: &'static str) -> QueryResult<()> {
    if let DbConnection::Postgresql(pg) = conn {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        diesel::sql_query(format!("SELECT id FROM users WHERE id = ANY($1) ORDER BY id {mode}"))
            .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
            .execute(pg)?;
    }
    Ok(())
}
