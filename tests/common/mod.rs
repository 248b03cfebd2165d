//! Test harness: each test gets a real server on port 0 and a fresh database,
//! a temporary SQLite file or a new PostgreSQL schema. `backend_tests!` runs a
//! test on both backends.
//!
//! PostgreSQL comes from `ACTAS_TEST_POSTGRES_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`). When it cannot be
//! reached the PostgreSQL variants are skipped, except with `CI=true`, where
//! they fail.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use actas::config::Config;
use actas::state::{AppState, Clock};
use awc::http::{header, Method, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "root@owner.example";
pub const ADMIN_PASSWORD: &str = "bootstrap password 2026";
pub const PASSWORD: &str = "a long enough password";

#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::common::TestApp::sqlite().await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::postgres().await {
                        super::$name(app).await;
                    }
                }
            )+
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the test's database and data directory (signing key) live, both
/// removed when the test ends.
enum TestDb {
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        admin_url: String,
        schema: String,
        dir: PathBuf,
    },
    /// Another node's own data directory; the database belongs to the first.
    NodeDir(PathBuf),
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Sqlite { dir } | TestDb::NodeDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDb::Postgres { admin_url, schema, dir } => {
                let _ = std::fs::remove_dir_all(dir);
                if let Ok(mut conn) = diesel::PgConnection::establish(admin_url) {
                    let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub base_url: String,
    pub state: AppState,
    pub data_dir: PathBuf,
    client: awc::Client,
    _db: TestDb,
}

pub struct Response {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// Asserts a problem+json error with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        assert_eq!(self.header("content-type").as_deref(), Some("application/problem+json"), "body: {}", self.text);
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert_eq!(self.body["status"], status);
        assert_eq!(self.body["type"], format!("urn:actas:problem:{code}"));
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "body: {}", self.text);
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        &self.body
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("ACTAS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::start(Backend::Sqlite, &[]).await.expect("SQLite is always available")
    }

    /// `None` (skipped) only outside CI when no PostgreSQL server answers.
    pub async fn postgres() -> Option<Self> {
        Self::start(Backend::Postgres, &[]).await
    }

    pub async fn with_env(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        Self::start(backend, env).await
    }

    async fn start(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("actas-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let (url, db) = match backend {
            Backend::Sqlite => {
                (format!("sqlite://{}", dir.join("actas.db").display()), TestDb::Sqlite { dir: dir.clone() })
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let schema = format!("t_{}", Uuid::new_v4().simple());
                let created = diesel::PgConnection::establish(&admin_url).and_then(|mut c| {
                    c.batch_execute(&format!("CREATE SCHEMA {schema}"))
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
                });
                if let Err(e) = created {
                    assert!(!in_ci(), "CI=true but PostgreSQL at ACTAS_TEST_POSTGRES_URL is unreachable: {e}");
                    eprintln!("skipping PostgreSQL test: {e}");
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                }
                let sep = if admin_url.contains('?') { '&' } else { '?' };
                let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
                (url, TestDb::Postgres { admin_url, schema, dir: dir.clone() })
            }
        };
        let mut vars: Vec<(String, String)> = vec![
            ("ACTAS_DATABASE_URL".into(), url),
            ("ACTAS_DATA_DIR".into(), dir.display().to_string()),
            ("ACTAS_BIND".into(), "127.0.0.1:0".into()),
            ("ACTAS_ISSUER".into(), "https://actas.test".into()),
            ("ACTAS_BOOTSTRAP_ADMIN_EMAIL".into(), ADMIN_EMAIL.into()),
            ("ACTAS_BOOTSTRAP_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ];
        for (k, v) in env {
            vars.retain(|(name, _)| name != k);
            vars.push(((*k).into(), (*v).into()));
        }
        Some(Self::launch(backend, &vars, dir, db).await)
    }

    /// A second node on the same database, with the same signing key and
    /// issuer but its own process state (pool, caches, queues), as behind a
    /// load balancer.
    pub async fn another_node(&self) -> TestApp {
        let dir = std::env::temp_dir().join(format!("actas-node-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let vars: Vec<(String, String)> = vec![
            ("ACTAS_DATABASE_URL".into(), self.state.config.database_url.clone()),
            ("ACTAS_DATA_DIR".into(), dir.display().to_string()),
            ("ACTAS_BIND".into(), "127.0.0.1:0".into()),
            ("ACTAS_ISSUER".into(), self.state.config.issuer.clone()),
            ("ACTAS_SIGNING_KEY_FILE".into(), self.state.config.signing_key_path().display().to_string()),
        ];
        Self::launch(self.backend, &vars, dir.clone(), TestDb::NodeDir(dir)).await
    }

    async fn launch(backend: Backend, vars: &[(String, String)], dir: PathBuf, db: TestDb) -> TestApp {
        let config = Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())).unwrap();
        let state =
            actix_web::web::block(move || actas::server::prepare(config, Clock::default())).await.unwrap().unwrap();
        let app_state = state.clone();
        let server = actix_web::HttpServer::new(move || actas::http::app(app_state.clone()))
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        let client = awc::Client::builder().disable_redirects().timeout(Duration::from_secs(30)).finish();
        Self { backend, base_url: format!("http://{addr}"), state, data_dir: dir, client, _db: db }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Response {
        self.send_with(method, path, token, body, &[]).await
    }

    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base_url));
        for (name, value) in headers {
            req = req.append_header((*name, *value));
        }
        if let Some(token) = token {
            req = req.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
        }
        let mut res = match body {
            Some((content_type, bytes)) => {
                req.insert_header((header::CONTENT_TYPE, content_type)).send_body(bytes).await
            }
            None => req.send().await,
        }
        .expect("request reaches the test server");
        let bytes = res.body().limit(16 * 1024 * 1024).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Response { status: res.status(), headers: res.headers().clone(), body, text }
    }

    /// Writes `request` as is on a connection of its own and reads what the
    /// server answers until it closes the connection (at most 40 s): for
    /// requests no HTTP client would send, such as a body that never ends.
    pub async fn raw(&self, request: String) -> String {
        let addr = self.base_url.trim_start_matches("http://").to_owned();
        actix_web::web::block(move || {
            use std::io::{Read, Write};
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
            conn.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            let _ = conn.read_to_string(&mut answer);
            answer
        })
        .await
        .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::DELETE, path, token, None).await
    }

    pub async fn json(&self, method: Method, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send(method, path, token, Some(("application/json", serde_json::to_vec(&body).unwrap()))).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.json(Method::POST, path, token, body).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.json(Method::PATCH, path, token, body).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.json(Method::PUT, path, token, body).await
    }

    pub async fn try_login(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login", None, json!({"email": email, "password": password})).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let res = self.try_login(email, password).await;
        res.assert_status(200)["access_token"].as_str().unwrap().to_owned()
    }

    /// A token of the bootstrap super admin.
    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// The user of `token` consents to `hours` of impersonation.
    pub async fn grant_consent(&self, token: &str, hours: i64) {
        let body = json!({"duration_hours": hours});
        self.put("/api/v1/me/impersonation-consent", Some(token), body).await.assert_status(200);
    }

    /// Starts a session as the bootstrap super admin; returns (session id, token).
    pub async fn impersonate(&self, w: &World, target: Uuid) -> (String, String) {
        let body = json!({"target_user_id": target, "password": ADMIN_PASSWORD});
        let res = self.post("/api/v1/impersonations", Some(&w.admin), body).await;
        let body = res.assert_status(201);
        (body["session_id"].as_str().unwrap().to_owned(), body["access_token"].as_str().unwrap().to_owned())
    }

    pub async fn owner_org_id(&self, token: &str) -> Uuid {
        let me = self.get("/api/v1/me", Some(token)).await;
        me.body["user"]["organization"]["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn create_org(&self, token: &str, name: &str, parent: Option<Uuid>) -> Uuid {
        let res = self.post("/api/v1/organizations", Some(token), json!({"name": name, "parent_id": parent})).await;
        res.assert_status(201)["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn create_user(&self, token: &str, email: &str, org: Uuid, role: &str) -> Uuid {
        let res = self
            .post(
                "/api/v1/users",
                Some(token),
                json!({"email": email, "name": email, "password": PASSWORD, "organization_id": org, "role": role}),
            )
            .await;
        res.assert_status(201)["id"].as_str().unwrap().parse().unwrap()
    }

    /// Runs SQL directly against the test database, behind the service's back.
    pub fn sql(&self, statement: &str) {
        self.try_sql(statement).unwrap();
    }

    pub fn try_sql(&self, statement: &str) -> Result<(), diesel::result::Error> {
        let mut conn = self.state.pool.get().unwrap();
        conn.batch_execute(statement)
    }

    /// Runs `statements` in a write transaction of its own on a side
    /// connection, holding a row as the service does (PostgreSQL: `SELECT …
    /// FOR UPDATE` from `table`; SQLite: the write lock), and commits once
    /// `request` has been on its way for `delay` (after `meanwhile` has run).
    pub async fn commit_during<T>(
        &self,
        (table, id): (&str, Uuid),
        statements: &str,
        delay: Duration,
        request: impl std::future::Future<Output = T>,
        meanwhile: impl FnOnce(),
    ) -> T {
        let mut side = self.state.pool.get().unwrap();
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE".to_owned(),
            Backend::Postgres => format!("BEGIN; SELECT id FROM {table} WHERE id = '{id}' FOR UPDATE"),
        };
        side.batch_execute(&format!("{begin}; {statements}")).unwrap();
        let commit = async {
            actix_web::rt::time::sleep(delay).await;
            meanwhile();
            side.batch_execute("COMMIT").unwrap();
        };
        futures_util::future::join(request, commit).await.0
    }

    /// The single integer a query returns (`SELECT COUNT(*) AS n …`), read directly.
    pub fn scalar(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.state.pool.get().unwrap();
        diesel::RunQueryDsl::get_result::<N>(diesel::sql_query(query), &mut conn).unwrap().n
    }

    /// Every text column of every request-log row, for searching leaks.
    pub fn request_log_dump(&self) -> String {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let mut conn = self.state.pool.get().unwrap();
        let query = "SELECT method || ' ' || path || ' ' || COALESCE(query, '') || ' ' || COALESCE(body, '') || ' ' || COALESCE(user_agent, '') AS t FROM request_log";
        let rows: Vec<Row> = diesel::RunQueryDsl::load(diesel::sql_query(query), &mut conn).unwrap();
        rows.into_iter().map(|r| r.t).collect::<Vec<_>>().join("\n")
    }
}

impl TestApp {
    /// Everything the database holds, as text, for searching leaks: the SQLite
    /// files byte for byte (write-ahead log included), or every row of every
    /// table of the PostgreSQL schema.
    pub fn database_dump(&self) -> String {
        match self.backend {
            Backend::Sqlite => std::fs::read_dir(&self.data_dir)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("actas.db"))
                .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
            Backend::Postgres => {
                #[derive(diesel::QueryableByName)]
                struct Row {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    t: String,
                }
                let mut conn = self.state.pool.get().unwrap();
                let tables: Vec<Row> = diesel::RunQueryDsl::load(
                    diesel::sql_query(
                        "SELECT table_name::text AS t FROM information_schema.tables \
                         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                    ),
                    &mut conn,
                )
                .unwrap();
                assert!(tables.len() > 5, "the schema has tables");
                tables
                    .iter()
                    .flat_map(|table| {
                        let query = format!("SELECT x::text AS t FROM \"{}\" x", table.t);
                        diesel::RunQueryDsl::load::<Row>(diesel::sql_query(query), &mut conn).unwrap()
                    })
                    .map(|r| r.t)
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    }
}

/// A small organization tree with one user of each kind, for authorization tests.
/// The decoded JSON of one part of a JWT: 0 the header, 1 the claims.
pub fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn claims(token: &str) -> Value {
    jwt_part(token, 1)
}

pub struct World {
    pub admin: String,
    pub owner_org: Uuid,
    pub acme: Uuid,
    pub acme_eu: Uuid,
    pub globex: Uuid,
    pub acme_admin: (Uuid, String),
    pub acme_member: (Uuid, String),
    pub acme_eu_member: (Uuid, String),
    pub globex_member: (Uuid, String),
    pub owner_staff: (Uuid, String),
}

impl TestApp {
    pub async fn world(&self) -> World {
        let admin = self.admin().await;
        let owner_org = self.owner_org_id(&admin).await;
        let acme = self.create_org(&admin, "Acme", None).await;
        let acme_eu = self.create_org(&admin, "Acme EU", Some(acme)).await;
        let globex = self.create_org(&admin, "Globex", None).await;
        let user = |email: &'static str, org: Uuid, role: &'static str| {
            let admin = admin.clone();
            async move {
                let id = self.create_user(&admin, email, org, role).await;
                (id, self.login(email, PASSWORD).await)
            }
        };
        let acme_admin = user("boss@acme.example", acme, "admin").await;
        let acme_member = user("ada@acme.example", acme, "member").await;
        let acme_eu_member = user("eve@eu.acme.example", acme_eu, "member").await;
        let globex_member = user("gus@globex.example", globex, "member").await;
        let owner_staff = user("sam@owner.example", owner_org, "admin").await;
        World {
            admin,
            owner_org,
            acme,
            acme_eu,
            globex,
            acme_admin,
            acme_member,
            acme_eu_member,
            globex_member,
            owner_staff,
        }
    }
}
