//! One connection type over both backends, and the pool built once at start.
//!
//! The backend is chosen by URL scheme and the concrete connection is
//! established directly: `MultiConnection::establish` would try every backend
//! and hide the real error (wrong password, server down) behind a generic one.

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a caller waits for a pooled connection, and how long libpq waits
/// for a server, before the error is reported.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds on waiting for another transaction's row locks. A node that stalls
/// mid-transaction (paused, cut off) must not hold every other node up: its
/// session is closed after 30 s idle in a transaction, which frees its locks,
/// and nobody waits longer than 10 s for a lock (then 503, "try again").
const POSTGRES_SESSION_LIMITS: &str = "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '30s';";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("unsupported database URL (expected postgres://… or sqlite://…): {0}")]
    UnsupportedUrl(String),
    #[error("cannot create {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot run database migrations: {0}")]
    Migrate(String),
}

/// A parsed database URL: which backend and what to hand to its driver.
#[derive(Debug, Clone)]
pub struct DatabaseTarget {
    pub backend: Backend,
    conninfo: String,
}

impl DatabaseTarget {
    pub fn parse(url: &str) -> Result<Self, DbSetupError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // libpq waits forever for an unreachable host unless told otherwise.
            let conninfo = if url.contains("connect_timeout=") {
                url.to_owned()
            } else {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}connect_timeout={}", CONNECT_TIMEOUT.as_secs())
            };
            return Ok(Self { backend: Backend::Postgres, conninfo });
        }
        // Only an explicit `sqlite:` makes a SQLite file: a mistyped or
        // keyword-style PostgreSQL URL must not quietly start an empty database.
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or_default();
        if path.is_empty() || path.contains("://") || path.contains(":memory:") {
            return Err(DbSetupError::UnsupportedUrl(redact_url(url)));
        }
        Ok(Self { backend: Backend::Sqlite, conninfo: path.to_owned() })
    }

    fn establish(&self) -> Result<DbConnection, ConnectionError> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = diesel::PgConnection::establish(&self.conninfo)?;
                conn.batch_execute(POSTGRES_SESSION_LIMITS)
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                // Deadlocks and lock timeouts are recognized by their English
                // message (diesel gives no SQLSTATE for them). Setting this
                // takes a superuser or a grant; without, the server's default
                // stays, and `connect_and_migrate` warns if it is not English.
                let _ = conn.batch_execute("SET lc_messages = 'C'");
                Ok(DbConnection::Postgresql(conn))
            }
            Backend::Sqlite => {
                let mut conn = diesel::SqliteConnection::establish(&self.conninfo)?;
                // SQLite's own lower() folds only ASCII. The schema uses lower()
                // (the email CHECK, a backfill): make it Rust's, as the app folds.
                super::users::lower_utils::register_impl(&mut conn, |text: String| text.to_lowercase())
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                // Wait for a writer instead of failing; enforce declared foreign
                // keys; a commit is on disk before its response leaves (a power
                // cut must not lose the log rows of responses already sent).
                conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
                    .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// One connection to an existing database, only to read it (`actas audit
/// verify`): no directory or file is created, no migration runs, a SQLite file
/// is opened read-only. Checking evidence must not change it.
pub fn connect_read_only(url: &str) -> Result<DbConnection, DbSetupError> {
    let target = DatabaseTarget::parse(url)?;
    match target.backend {
        Backend::Postgres => target.establish().map_err(|e| DbSetupError::Connect(one_line(&e.to_string()))),
        Backend::Sqlite => {
            if !PathBuf::from(&target.conninfo).is_file() {
                return Err(DbSetupError::Connect(format!("there is no SQLite database at {}", target.conninfo)));
            }
            // `sqlite:////abs/db` names the path `//abs/db`: one slash, or the URI
            // would read `abs` as a host.
            let path = format!("/{}", target.conninfo.trim_start_matches('/'));
            let path = if target.conninfo.starts_with('/') { path } else { target.conninfo.clone() };
            let path = path.replace('%', "%25").replace('?', "%3f").replace('#', "%23");
            // Without a write-ahead log no process has the database open (a
            // backup, a stopped node): read it as immutable, creating nothing
            // beside it, even in a read-only directory.
            let in_use = PathBuf::from(format!("{}-wal", target.conninfo)).exists();
            let mode = if in_use { "mode=ro" } else { "mode=ro&immutable=1" };
            let mut conn = diesel::SqliteConnection::establish(&format!("file:{path}?{mode}"))
                .map_err(|e| DbSetupError::Connect(one_line(&e.to_string())))?;
            conn.batch_execute("PRAGMA busy_timeout = 10000;").map_err(|e| DbSetupError::Connect(e.to_string()))?;
            Ok(DbConnection::Sqlite(conn))
        }
    }
}

/// Hides the password of a `scheme://user:password@host` URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug)]
pub struct ConnectionManager {
    target: DatabaseTarget,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        self.target.establish().map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // A connection left inside a failed transaction must not be reused.
        <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

/// Connects (reporting the driver's own error at once), runs migrations, and
/// builds the pool.
pub fn connect_and_migrate(url: &str) -> Result<(Pool, Backend), DbSetupError> {
    let target = migrate(url)?;
    // Both backends: on SQLite readers run beside the one writer (WAL) and
    // connections are cheap; PostgreSQL servers allow ~100 in all by default.
    let max_size = 16;
    let backend = target.backend;
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        .connection_timeout(CONNECT_TIMEOUT)
        .build(ConnectionManager { target })
        .map_err(|e| DbSetupError::Connect(one_line(&e.to_string())))?;
    Ok((pool, backend))
}

/// Creates the database if needed and applies pending migrations over one
/// connection, closed before returning (`actas migrate` builds no pool: one
/// whose background threads are still opening connections when the process
/// exits leaves SQLite's -wal and -shm files behind).
pub fn migrate(url: &str) -> Result<DatabaseTarget, DbSetupError> {
    let target = DatabaseTarget::parse(url)?;
    if target.backend == Backend::Sqlite {
        let path = PathBuf::from(&target.conninfo);
        let create_err = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| DbSetupError::CreateDir { path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::create_private_dir(dir).map_err(create_err(dir))?;
        }
        // A new database file is readable by this user only (SQLite gives its
        // -wal and -shm files the same permissions).
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create_err(&path)(e)),
        }
    }
    let mut first = target.establish().map_err(|e| DbSetupError::Connect(one_line(&e.to_string())))?;
    if let DbConnection::Sqlite(conn) = &mut first {
        // WAL lets readers run beside the single writer; set once, it persists in the file.
        conn.batch_execute("PRAGMA journal_mode = WAL;").map_err(|e| DbSetupError::Connect(e.to_string()))?;
    }
    run_migrations(&mut first)?;
    if let DbConnection::Postgresql(conn) = &mut first {
        warn_unless_english_messages(conn);
    }
    drop(first);
    Ok(target)
}

/// Says at start when PostgreSQL's messages are not English: deadlocks and
/// lock timeouts, recognized by their message, would then answer 500 instead
/// of 503 "try again".
fn warn_unless_english_messages(conn: &mut diesel::PgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        lc_messages: String,
    }
    let Ok(setting) = diesel::sql_query("SHOW lc_messages").get_result::<Setting>(conn) else { return };
    let language = setting.lc_messages.to_ascii_lowercase();
    if !(language.is_empty() || language == "c" || language == "posix" || language.starts_with("en")) {
        tracing::warn!(
            lc_messages = %setting.lc_messages,
            "PostgreSQL reports errors in another language than English: deadlocks and lock timeouts will \
             answer 500 instead of 503; let actas' role set it (GRANT SET ON PARAMETER lc_messages TO <role>, \
             run by a superuser)"
        );
    }
}

/// Key of the PostgreSQL advisory lock held while migrating, so that nodes
/// starting together migrate one after the other.
const MIGRATION_LOCK_KEY: i64 = 0x6163_7461_735f_6d69; // "actas_mi"

pub fn run_migrations(conn: &mut DbConnection) -> Result<(), DbSetupError> {
    let failed = |e: &dyn std::fmt::Display| DbSetupError::Migrate(one_line(&e.to_string()));
    match conn {
        DbConnection::Postgresql(pg) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(pg)
                .map_err(|e| failed(&e))?;
            let result = pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()).map_err(|e| failed(&*e));
            let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(pg);
            result?;
            unlocked.map(|_| ()).map_err(|e| failed(&e))
        }
        DbConnection::Sqlite(sqlite) => {
            sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()).map_err(|e| failed(&*e))
        }
    }
}

type Manager = <DbConnection as Connection>::TransactionManager;

/// Begins a transaction that takes the write lock up front. On SQLite a
/// deferred transaction that reads and then writes fails with "database is
/// locked" when another writer got there first; `BEGIN IMMEDIATE` waits instead.
pub fn begin_write(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Sqlite(inner) => AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE"),
        DbConnection::Postgresql(_) => Manager::begin_transaction(conn),
    }
}

pub fn commit(conn: &mut DbConnection) -> QueryResult<()> {
    Manager::commit_transaction(conn)
}

pub fn rollback(conn: &mut DbConnection) -> QueryResult<()> {
    Manager::rollback_transaction(conn)
}

pub fn in_transaction(conn: &mut DbConnection) -> bool {
    Manager::transaction_manager_status_mut(conn).transaction_depth().map(|d| d.is_some()).unwrap_or(true)
}

/// Runs `f` in a write transaction, or in a savepoint when a transaction is
/// already open (an impersonated request runs in one; see `http::audit`).
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    if in_transaction(conn) {
        return conn.transaction(f);
    }
    begin_write(conn)?;
    match f(conn) {
        Ok(value) => {
            commit(conn)?;
            Ok(value)
        }
        Err(error) => {
            // The original error matters more than a failed rollback; a broken
            // connection is discarded by the pool (`has_broken`).
            let _ = rollback(conn);
            Err(error)
        }
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A query on every table and column the service uses, and on the
/// migrations applied: the database answers, and holds the schema this build
/// expects (not, say, a restored older backup). `LIMIT 0` reads no row.
pub fn check_schema(conn: &mut DbConnection) -> Result<(), String> {
    use super::schema::*;
    macro_rules! every_column_of {
        ($($table:ident),*) => {$(
            $table::table.select($table::all_columns).limit(0).execute(conn).map_err(|e| e.to_string())?;
        )*};
    }
    with_every_table!(every_column_of);
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let latest = latest_migration(conn)?;
    let applied = diesel::sql_query("SELECT COUNT(*) AS n FROM __diesel_schema_migrations WHERE version = $1")
        .bind::<diesel::sql_types::Text, _>(&latest)
        .get_result::<Applied>(conn)
        .map_err(|e| e.to_string())?;
    if applied.n == 0 {
        return Err(format!("migration {latest} is not applied (an older database?); run `actas migrate`"));
    }
    Ok(())
}

/// The version of this build's newest migration for the connection's backend.
fn latest_migration(conn: &DbConnection) -> Result<String, String> {
    use diesel::migration::MigrationSource;
    fn newest<DB: diesel::backend::Backend>(source: &EmbeddedMigrations) -> Result<String, String> {
        let migrations = MigrationSource::<DB>::migrations(source).map_err(|e| e.to_string())?;
        migrations.iter().map(|m| m.name().version().to_string()).max().ok_or_else(|| "no migrations".to_owned())
    }
    match conn {
        DbConnection::Postgresql(_) => newest::<diesel::pg::Pg>(&POSTGRES_MIGRATIONS),
        DbConnection::Sqlite(_) => newest::<diesel::sqlite::Sqlite>(&SQLITE_MIGRATIONS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_picks_backend() {
        assert_eq!(DatabaseTarget::parse("postgres://u:p@h/db").unwrap().backend, Backend::Postgres);
        assert_eq!(DatabaseTarget::parse("sqlite://actas-data/actas.db").unwrap().backend, Backend::Sqlite);
        assert_eq!(DatabaseTarget::parse("sqlite:x.db").unwrap().backend, Backend::Sqlite);
        assert!(DatabaseTarget::parse("mysql://h/db").is_err());
        // No scheme, no guess: these would otherwise become new SQLite files.
        assert!(DatabaseTarget::parse("/tmp/x.db").is_err());
        assert!(DatabaseTarget::parse("host=db user=actas dbname=actas").is_err());
        assert!(DatabaseTarget::parse("postgress://h/db").is_err());
        assert!(DatabaseTarget::parse("sqlite://:memory:").is_err());
    }

    #[test]
    fn postgres_gets_a_connect_timeout() {
        let t = DatabaseTarget::parse("postgres://u:p@h/db?sslmode=disable").unwrap();
        assert!(t.conninfo.ends_with("&connect_timeout=5"));
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(redact_url("postgres://bob:secret@db:5432/x"), "postgres://bob:***@db:5432/x");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
