use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::schema::organizations;
use super::sql_types::{DbTime, DbUuid};
use super::DbConnection;
use crate::domain::policy::OrgPath;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations, treat_none_as_default_value = false)]
pub struct Organization {
    pub id: DbUuid,
    pub name: String,
    pub parent_id: Option<DbUuid>,
    pub path: String,
    pub depth: i32,
    pub created_at: DbTime,
}

impl Organization {
    pub fn org_path(&self) -> OrgPath {
        OrgPath::from_stored(self.path.clone())
    }

    pub fn new_child(parent: Option<&Organization>, name: String, now: OffsetDateTime) -> Self {
        let id = Uuid::now_v7();
        let path = match parent {
            Some(p) => p.org_path().child(id),
            None => OrgPath::root(id),
        };
        Self {
            id: DbUuid(id),
            name,
            parent_id: parent.map(|p| p.id),
            depth: path.depth(),
            path: path.as_str().to_owned(),
            created_at: DbTime(now),
        }
    }
}

pub fn insert(conn: &mut DbConnection, org: &Organization) -> QueryResult<()> {
    diesel::insert_into(organizations::table).values(org.clone()).execute(conn).map(|_| ())
}

pub fn find(conn: &mut DbConnection, id: Uuid) -> QueryResult<Option<Organization>> {
    organizations::table.find(DbUuid(id)).select(Organization::as_select()).first(conn).optional()
}

pub fn owner(conn: &mut DbConnection) -> QueryResult<Option<Organization>> {
    organizations::table
        .filter(organizations::parent_id.is_null())
        .select(Organization::as_select())
        .first(conn)
        .optional()
}

pub struct ListFilter<'a> {
    /// Only this subtree (materialized path prefix); `None` for all.
    pub within: Option<&'a OrgPath>,
    pub parent_id: Option<Uuid>,
    /// Keyset cursor: ids are UUIDv7, so id order is creation order.
    pub before_id: Option<Uuid>,
    pub limit: i64,
}

/// The organizations of the subtree rooted at `root`: their materialized
/// paths start with its path.
pub fn in_subtree(root: &OrgPath) -> diesel::dsl::Escape<diesel::dsl::Like<organizations::path, String>> {
    organizations::path.like(format!("{}%", super::like_literal(root.as_str()))).escape('\\')
}

/// Newest first.
pub fn list(conn: &mut DbConnection, filter: ListFilter<'_>) -> QueryResult<Vec<Organization>> {
    let mut query = organizations::table.select(Organization::as_select()).into_boxed();
    if let Some(within) = filter.within {
        query = query.filter(in_subtree(within));
    }
    if let Some(parent) = filter.parent_id {
        query = query.filter(organizations::parent_id.eq(Some(DbUuid(parent))));
    }
    if let Some(before) = filter.before_id {
        query = query.filter(organizations::id.lt(DbUuid(before)));
    }
    query.order(organizations::id.desc()).limit(filter.limit).load(conn)
}
