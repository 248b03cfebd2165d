//! The binary: help, migrate, serve, and clear one-line startup errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn actas() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actas"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ACTAS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("actas-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn help_lists_the_verbs() {
    let out = actas().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for verb in ["serve", "migrate", "openapi", "audit"] {
        assert!(help.contains(verb), "--help does not mention {verb}");
    }
}

#[test]
fn output_to_a_closed_pipe_or_a_full_disk_is_no_panic() {
    let mut child = actas().arg("openapi").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked") && out.status.success(), "{stderr}");
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let out = actas().arg("openapi").stdout(full).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("actas: error: cannot write the output") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = temp_dir();
    let db = dir.join("sub/actas.db");
    let out = actas().arg("migrate").env("ACTAS_DATABASE_URL", format!("sqlite://{}", db.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(db.exists());
    // Password hashes and the audit trail: for this user's eyes only.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&dir.join("sub")), mode(&db)), (0o700, 0o600));
    // Running it again is a no-op, and it exits with the database closed:
    // no write-ahead log left beside it (checked a few times, as a process
    // exiting with connections still opening leaves one only now and then).
    for _ in 0..8 {
        let again =
            actas().arg("migrate").env("ACTAS_DATABASE_URL", format!("sqlite://{}", db.display())).output().unwrap();
        assert!(again.status.success());
        let mut files: Vec<_> = std::fs::read_dir(dir.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        files.sort();
        assert_eq!(files, ["actas.db"], "migrate left files beside the database");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unreachable_postgres_fails_fast_with_one_line() {
    let started = Instant::now();
    let out = actas()
        .arg("migrate")
        .env("ACTAS_DATABASE_URL", "postgres://actas:secret-pw@127.0.0.1:1/actas")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("actas: error: cannot connect to the database"), "{stderr}");
    assert!(stderr.contains("127.0.0.1") && !stderr.contains("secret-pw"), "{stderr}");
}

/// Runs `actas migrate` against `url` and returns its one-line error.
fn migrate_error(url: &str) -> String {
    let started = Instant::now();
    let out = actas().arg("migrate").env("ACTAS_DATABASE_URL", url).output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{url}: took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1), "{url}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("actas: error: cannot connect to the database"), "{stderr}");
    stderr
}

#[test]
fn a_silent_or_missing_postgres_database_fails_fast_with_one_line() {
    // A listener that accepts connections but never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let stderr = migrate_error(&format!("postgres://actas:secret-pw@127.0.0.1:{port}/actas"));
    assert!(!stderr.contains("secret-pw"), "{stderr}");
    // A server that answers, but has no such database.
    if let Ok(admin) = std::env::var("ACTAS_TEST_POSTGRES_URL") {
        let (base, _) = admin.rsplit_once('/').unwrap();
        let stderr = migrate_error(&format!("{base}/actas_no_such_database"));
        assert!(stderr.contains("actas_no_such_database"), "{stderr}");
    }
}

#[test]
fn a_port_in_use_fails_before_the_database_is_touched() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir();
    let out = actas()
        .arg("serve")
        .env("ACTAS_BIND", &addr)
        .env("ACTAS_DATA_DIR", &dir)
        .env("ACTAS_DATABASE_URL", format!("sqlite://{}", dir.join("actas.db").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&addr) && stderr.contains("ACTAS_BIND"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("password"), "a password was printed for nothing");
    assert!(!dir.join("actas.db").exists(), "the database was created although serving was impossible");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn audit_verify_only_reads() {
    let dir = temp_dir();
    // A mistyped path is an error, and nothing is created there.
    let missing = dir.join("nowhere/actas.db");
    let out = actas()
        .args(["audit", "verify"])
        .env("ACTAS_DATABASE_URL", format!("sqlite://{}", missing.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "could not check: not 1, which means tampered with");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("there is no SQLite database at"), "{stderr}");
    assert!(!dir.join("nowhere").exists(), "verify created a directory");
    // A real database: checked as it is, and a reader that stops early is no failure.
    let db = format!("sqlite://{}", dir.join("actas.db").display());
    assert!(actas().arg("migrate").env("ACTAS_DATABASE_URL", &db).status().unwrap().success());
    let before = std::fs::read(dir.join("actas.db")).unwrap();
    let files = || {
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    let files_before = files();
    let mut child = actas()
        .args(["audit", "verify"])
        .env("ACTAS_DATABASE_URL", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read(dir.join("actas.db")).unwrap(), before, "verify changed the database file");
    // Also with the four-slash spelling of an absolute path, and creating nothing beside it.
    let four_slashes = format!("sqlite:///{}", dir.join("actas.db").display());
    for url in [&db, &four_slashes] {
        let out = actas().args(["audit", "verify"]).env("ACTAS_DATABASE_URL", url).output().unwrap();
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((report["ok"].as_bool(), report["checked"].as_u64()), (Some(true), Some(0)));
    }
    assert_eq!(files(), files_before, "verify left files beside the database");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_configuration_names_the_variable() {
    let out = actas().arg("migrate").env("ACTAS_ACCESS_TOKEN_MINUTES", "forever").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("ACTAS_ACCESS_TOKEN_MINUTES"), "{stderr}");
    let out = actas().arg("migrate").env("ACTAS_DATABASE_URL", "mysql://db/x").output().unwrap();
    assert!(String::from_utf8(out.stderr).unwrap().contains("unsupported database URL"));
    // A bootstrap admin that could not be created stops the start before
    // anything is written.
    let dir = temp_dir();
    for (name, value) in [("ACTAS_BOOTSTRAP_ADMIN_PASSWORD", "short"), ("ACTAS_BOOTSTRAP_ADMIN_EMAIL", "root")] {
        let out = actas()
            .args(["serve"])
            .env("ACTAS_DATA_DIR", &dir)
            .env("ACTAS_BIND", "127.0.0.1:0")
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(name), "{stderr}");
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0, "{stderr}");
    }
}

#[test]
fn serve_bootstraps_prints_the_password_once_and_says_where_swagger_is() {
    let dir = temp_dir();
    let mut child = actas()
        .current_dir(&dir)
        .env("ACTAS_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let password_line = std::thread::spawn(move || {
        stdout.lines().map_while(Result::ok).find(|l| l.contains("password (shown only now)"))
    });
    let mut swagger = None;
    for line in stderr.lines().map_while(Result::ok) {
        if line.contains("Swagger UI at") {
            swagger = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let swagger = swagger.expect("the server logs where Swagger UI is");
    assert!(swagger.contains("http://127.0.0.1:") && swagger.contains("/swagger-ui/"), "{swagger}");
    let password = password_line.join().unwrap().expect("the generated password is printed");
    assert_eq!(password.rsplit(' ').next().unwrap().len(), 24);
    assert!(dir.join("actas-data/actas.db").exists());
    assert!(dir.join("actas-data/signing-key.pem").exists());
    // A second start with bootstrap credentials says it ignores them.
    let mut again = actas()
        .current_dir(&dir)
        .env("ACTAS_BIND", "127.0.0.1:0")
        .env("ACTAS_BOOTSTRAP_ADMIN_PASSWORD", "a new admin password")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log: Vec<String> = BufReader::new(again.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.contains("Swagger UI at"))
        .collect();
    let _ = again.kill();
    let _ = again.wait();
    assert!(log.iter().any(|l| l.contains("ACTAS_BOOTSTRAP_ADMIN_* are ignored")), "{log:#?}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The real binary, JSON logs at debug level: every line written while serving
/// an impersonated request names the impersonator and the session, and no
/// password or token ever appears in the log.
#[actix_web::test]
async fn json_server_logs_name_the_impersonator_and_never_a_secret() {
    server_logs_name_the_impersonator_and_never_a_secret("json").await;
}

#[actix_web::test]
async fn text_server_logs_name_the_impersonator_and_never_a_secret() {
    server_logs_name_the_impersonator_and_never_a_secret("text").await;
}

async fn server_logs_name_the_impersonator_and_never_a_secret(format: &str) {
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};

    let dir = temp_dir();
    let admin_password = "bootstrap-secret-pw-001";
    let mut child = actas()
        .current_dir(&dir)
        .env("ACTAS_BIND", "127.0.0.1:0")
        .env("ACTAS_BOOTSTRAP_ADMIN_PASSWORD", admin_password)
        .env("ACTAS_LOG_FORMAT", format)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    {
        let lines = Arc::clone(&lines);
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(at) = line.find("Swagger UI at http://") {
                    let rest = &line[at + "Swagger UI at http://".len()..];
                    let _ = addr_tx.send(rest.split('/').next().unwrap().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    let addr = addr_rx.recv_timeout(Duration::from_secs(20)).expect("the server starts");
    let client = awc::Client::default();
    let url = |path: &str| format!("http://{addr}{path}");
    let call = |method: awc::http::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = client.request(method, url(path));
        if let Some(token) = token {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        async move {
            let mut res = match body {
                Some(body) => req.send_json(&body).await.unwrap(),
                None => req.send().await.unwrap(),
            };
            let request_id = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
            let body: Value = res.json().limit(1 << 20).await.unwrap_or(Value::Null);
            (request_id, body)
        }
    };
    let post = awc::http::Method::POST;
    let (_, login) = call(
        post.clone(),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "admin@localhost", "password": admin_password})),
    )
    .await;
    let admin = login["access_token"].as_str().unwrap().to_owned();
    let admin_id = login["user"]["id"].as_str().unwrap().to_owned();
    let (_, org) = call(post.clone(), "/api/v1/organizations", Some(&admin), Some(json!({"name": "Acme"}))).await;
    let user_password = "customer-secret-pw-002";
    let body =
        json!({"email": "ada@acme.example", "name": "Ada", "password": user_password, "organization_id": org["id"]});
    let (_, ada) = call(post.clone(), "/api/v1/users", Some(&admin), Some(body)).await;
    let (_, ada_login) = call(
        post.clone(),
        "/api/v1/auth/login",
        None,
        Some(json!({"email": "ada@acme.example", "password": user_password})),
    )
    .await;
    let ada_token = ada_login["access_token"].as_str().unwrap().to_owned();
    call(
        awc::http::Method::PUT,
        "/api/v1/me/impersonation-consent",
        Some(&ada_token),
        Some(json!({"duration_hours": 2})),
    )
    .await;
    let body = json!({"target_user_id": ada["id"], "password": admin_password});
    let (_, started) = call(post.clone(), "/api/v1/impersonations", Some(&admin), Some(body)).await;
    let token = started["access_token"].as_str().unwrap().to_owned();
    let session_id = started["session_id"].as_str().unwrap().to_owned();
    let ada_path = format!("/api/v1/users/{}", ada["id"].as_str().unwrap());
    let (request_id, _) =
        call(awc::http::Method::PATCH, &ada_path, Some(&token), Some(json!({"name": "Ada L."}))).await;
    let refused = json!({"name": "Ada L.", "password": "impersonated-secret-pw-003"});
    call(awc::http::Method::PATCH, &ada_path, Some(&token), Some(refused)).await;
    let (me_request, _) = call(awc::http::Method::GET, "/api/v1/me", Some(&token), None).await;
    // The log cannot be written: the error is logged on a blocking thread,
    // and still carries the request's impersonation fields.
    {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut db = diesel::SqliteConnection::establish(dir.join("actas-data/actas.db").to_str().unwrap()).unwrap();
        db.batch_execute("PRAGMA busy_timeout = 5000; ALTER TABLE request_log RENAME TO request_log_gone").unwrap();
    }
    let (failed_request, failed) = call(awc::http::Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(failed["code"], "service_unavailable");
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();

    let lines = lines.lock().unwrap().clone();
    let log = lines.join("\n");
    for secret in [
        admin_password,
        user_password,
        "impersonated-secret-pw-003",
        token.as_str(),
        admin.as_str(),
        ada_token.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret reached the server log");
    }
    // The update logs a line of its own besides the request line.
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal");
    for (request, at_least) in [(&request_id, 2), (&me_request, 1), (&failed_request, 2)] {
        let during: Vec<&String> = lines.iter().filter(|l| l.contains(request.as_str())).collect();
        assert!(during.len() >= at_least, "too few log lines for request {request}: {during:?}");
        for line in during {
            if format == "json" {
                let line: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
                let span = line["spans"].as_array().unwrap().iter().find(|s| s["name"] == "request").unwrap();
                assert_eq!(span["impersonator_id"], admin_id, "{line}");
                assert_eq!(span["session_id"], session_id, "{line}");
            } else {
                assert!(line.contains(&format!("impersonator_id={admin_id}")), "{line}");
                assert!(line.contains(&format!("session_id={session_id}")), "{line}");
            }
        }
    }
    let error_line = lines.iter().find(|l| l.contains("ERROR") && l.contains("writing the request log failed"));
    let error_line = error_line.expect("the failure is logged");
    if format == "json" {
        let error_line: Value = serde_json::from_str(error_line).unwrap();
        assert_eq!(error_line["spans"][0]["session_id"], session_id, "{error_line}");
    } else {
        assert!(error_line.contains(&format!("session_id={session_id}")), "{error_line}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
