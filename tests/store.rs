//! The SQLite and PostgreSQL migrations are kept equivalent: the same store
//! operations give the same results, and the same invalid rows are refused.

mod common;

use actas::bootstrap::{self, Outcome};
use actas::config::Config;
use actas::store::organizations::{self, Organization};
use actas::store::schema::{auth_attempts, login_sessions, organizations as orgs, users as users_table};
use actas::store::sql_types::{DbTime, DbUuid};
use actas::store::users::{self, User};
use actas::store::{is_unique_violation, DbConnection};
use common::TestApp;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use time::macros::datetime;
use uuid::Uuid;

fn outcome(result: QueryResult<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) if is_unique_violation(&e) => "unique_violation".into(),
        Err(Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => "foreign_key_violation".into(),
        Err(Error::DatabaseError(DatabaseErrorKind::CheckViolation, _)) => "check_violation".into(),
        Err(e) => format!("other error: {e}"),
    }
}

fn user(org: DbUuid, email: &str, role: &str, status: &str) -> User {
    let at = DbTime(datetime!(2026-01-02 03:04:05.123456 UTC));
    User {
        id: DbUuid(Uuid::now_v7()),
        email: email.into(),
        name: "Someone".into(),
        organization_id: org,
        role: role.into(),
        status: status.into(),
        password_hash: "$argon2id$stub".into(),
        created_at: at,
        updated_at: at,
        deleted_at: None,
    }
}

/// The same script on either backend; returns what happened, step by step.
fn script(conn: &mut DbConnection) -> Vec<(String, String)> {
    let mut log = Vec::new();
    let mut step = |name: &str, result: String| log.push((name.to_owned(), result));
    let owner = organizations::owner(conn).unwrap().expect("bootstrapped");
    let at = datetime!(2026-01-02 03:04:05.123456 UTC);
    let child = Organization::new_child(Some(&owner), "Child".into(), at);
    step("insert child org", outcome(organizations::insert(conn, &child)));
    let read = organizations::find(conn, *child.id).unwrap().unwrap();
    step(
        "child round trip",
        format!("{} {} {} {}", read.name, read.depth, read.parent_id == Some(owner.id), *read.created_at == at),
    );
    step(
        "second owner org",
        outcome(organizations::insert(conn, &Organization::new_child(None, "Owner 2".into(), at))),
    );
    step("bad role", outcome(users::insert(conn, &user(child.id, "a@x.example", "god", "active"))));
    step("bad status", outcome(users::insert(conn, &user(child.id, "a@x.example", "member", "asleep"))));
    step("uppercase email", outcome(users::insert(conn, &user(child.id, "A@x.example", "member", "active"))));
    step("unknown org", outcome(users::insert(conn, &user(DbUuid(Uuid::now_v7()), "b@x.example", "member", "active"))));
    step("first user", outcome(users::insert(conn, &user(child.id, "c@x.example", "member", "active"))));
    step("same live email", outcome(users::insert(conn, &user(child.id, "c@x.example", "member", "active"))));
    step("same email, deleted", outcome(users::insert(conn, &user(child.id, "c@x.example", "member", "deleted"))));
    let listed = users::list(
        conn,
        users::ListFilter {
            within: Some(&child.org_path()),
            only_id: None,
            organization_id: None,
            status: None,
            search: Some("C@X"),
            before_id: None,
            limit: 10,
        },
    )
    .unwrap();
    step("search live users", listed.len().to_string());
    let (before, after) = (at - time::Duration::microseconds(1), at + time::Duration::microseconds(1));
    let exact: i64 = orgs::table
        .filter(orgs::created_at.gt(DbTime(before)).and(orgs::created_at.lt(DbTime(after))))
        .count()
        .get_result(conn)
        .unwrap();
    // Only the owner organization, bootstrapped "now", is later.
    let newer: i64 = orgs::table.filter(orgs::created_at.gt(DbTime(at))).count().get_result(conn).unwrap();
    step("time comparisons at microsecond precision", format!("exact={exact} newer={newer}"));
    // Below a microsecond, both backends round down, before 1970 too.
    let old = Organization::new_child(Some(&owner), "Old".into(), datetime!(1969-12-31 23:59:59.9999995 UTC));
    organizations::insert(conn, &old).unwrap();
    let floored: i64 = orgs::table
        .filter(orgs::created_at.eq(DbTime(datetime!(1969-12-31 23:59:59.999999 UTC))))
        .count()
        .get_result(conn)
        .unwrap();
    step("sub-microsecond instants round down", floored.to_string());
    // Every column that schema.rs declares exists with a compatible type.
    step(
        "sessions columns",
        outcome(
            login_sessions::table
                .select(login_sessions::all_columns)
                .load::<(
                    DbUuid,
                    DbUuid,
                    DbTime,
                    DbTime,
                    Option<DbTime>,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                )>(conn)
                .map(|_| ()),
        ),
    );
    step(
        "attempts columns",
        outcome(
            auth_attempts::table
                .select(auth_attempts::all_columns)
                .load::<(DbUuid, String, String, DbTime, bool)>(conn)
                .map(|_| ()),
        ),
    );
    step("users columns", outcome(users_table::table.select(User::as_select()).load::<User>(conn).map(|_| ())));
    step(
        "users search column",
        outcome(users_table::table.select(users_table::name_folded).load::<String>(conn).map(|_| ())),
    );
    log
}

fn expected() -> Vec<(String, String)> {
    [
        ("insert child org", "ok"),
        ("child round trip", "Child 1 true true"),
        ("second owner org", "unique_violation"),
        ("bad role", "check_violation"),
        ("bad status", "check_violation"),
        ("uppercase email", "check_violation"),
        ("unknown org", "foreign_key_violation"),
        ("first user", "ok"),
        ("same live email", "unique_violation"),
        ("same email, deleted", "ok"),
        ("search live users", "1"),
        ("time comparisons at microsecond precision", "exact=1 newer=1"),
        ("sub-microsecond instants round down", "1"),
        ("sessions columns", "ok"),
        ("attempts columns", "ok"),
        ("users columns", "ok"),
        ("users search column", "ok"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect()
}

#[actix_web::test]
async fn both_schemas_accept_and_refuse_the_same_operations() {
    let sqlite = TestApp::sqlite().await;
    let sqlite_log = script(&mut sqlite.state.pool.get().unwrap());
    assert_eq!(sqlite_log, expected(), "SQLite");
    if let Some(pg) = TestApp::postgres().await {
        let pg_log = script(&mut pg.state.pool.get().unwrap());
        assert_eq!(pg_log, sqlite_log, "PostgreSQL differs from SQLite");
    }
}

async fn bootstrap_happens_once(app: TestApp) {
    let config = Config::from_lookup(|_| None).unwrap();
    let mut conn = app.state.pool.get().unwrap();
    // TestApp already bootstrapped this database.
    assert!(matches!(bootstrap::run(&mut conn, &config, app.state.clock.now()).unwrap(), Outcome::AlreadyBootstrapped));
    let count: i64 = orgs::table.count().get_result(&mut conn).unwrap();
    assert_eq!(count, 1);
}

backend_tests!(bootstrap_happens_once, bootstrap_without_a_password_generates_one_that_logs_in);

async fn bootstrap_without_a_password_generates_one_that_logs_in(app: TestApp) {
    let mut conn = app.state.pool.get().unwrap();
    diesel::delete(users_table::table).execute(&mut conn).unwrap();
    diesel::delete(orgs::table).execute(&mut conn).unwrap();
    let config = Config::from_lookup(|_| None).unwrap();
    let Outcome::Created { email, generated_password: Some(password) } =
        bootstrap::run(&mut conn, &config, app.state.clock.now()).unwrap()
    else {
        panic!("expected a fresh bootstrap with a generated password");
    };
    drop(conn);
    assert_eq!(email, "admin@localhost");
    assert_eq!(password.len(), 24);
    app.login("admin@localhost", &password).await;
}

/// Two transactions locking two users in opposite orders: PostgreSQL aborts
/// one, and that is a retryable conflict (503 "try again"), not a 500.
#[actix_web::test]
async fn a_deadlock_is_a_conflict_to_retry_not_an_internal_error() {
    let Some(app) = TestApp::postgres().await else { return };
    let admin = app.admin().await;
    let org = app.owner_org_id(&admin).await;
    let first = app.create_user(&admin, "first@owner.example", org, "member").await;
    let second = app.create_user(&admin, "second@owner.example", org, "member").await;
    let both_hold_one = std::sync::Arc::new(std::sync::Barrier::new(2));
    let cross = |mine: Uuid, theirs: Uuid| {
        let (pool, barrier) = (app.state.pool.clone(), both_hold_one.clone());
        std::thread::spawn(move || -> QueryResult<()> {
            let mut conn = pool.get().unwrap();
            conn.transaction(|conn| {
                users::lock(conn, &[mine])?;
                barrier.wait();
                users::lock(conn, &[theirs])
            })
        })
    };
    let (a, b) = (cross(first, second), cross(second, first));
    let outcomes = [a.join().unwrap(), b.join().unwrap()];
    let shown = format!("{outcomes:?}");
    let mut lost: Vec<Error> = outcomes.into_iter().filter_map(Result::err).collect();
    assert_eq!(lost.len(), 1, "PostgreSQL aborts exactly one side: {shown}");
    let lost = lost.remove(0);
    assert!(actas::store::is_conflict_with_concurrent(&lost), "{lost:?}");
    let answer = actas::http::problem::ApiError::from(lost);
    assert_eq!(actix_web::ResponseError::status_code(&answer).as_u16(), 503);
}

/// Deadlocks and lock timeouts are recognized by their English message, so
/// the service asks PostgreSQL for English whatever the server's default.
#[actix_web::test]
async fn postgres_connections_report_errors_in_english() {
    if TestApp::postgres().await.is_none() {
        return;
    }
    let admin_url = common::postgres_admin_url();
    let schema = format!("t_{}", Uuid::new_v4().simple());
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    diesel::connection::SimpleConnection::batch_execute(&mut admin, &format!("CREATE SCHEMA {schema}")).unwrap();
    // A server whose default is another locale (as far as this machine has one).
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}%20-clc_messages%3DC.UTF-8");
    let (pool, _) = actas::store::pool::connect_and_migrate(&url).unwrap();
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        lc_messages: String,
    }
    let setting = diesel::sql_query("SHOW lc_messages").get_result::<Setting>(&mut pool.get().unwrap());
    drop(pool);
    let _ = diesel::connection::SimpleConnection::batch_execute(&mut admin, &format!("DROP SCHEMA {schema} CASCADE"));
    assert_eq!(setting.unwrap().lc_messages, "C");
}
