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
    for verb in ["serve", "migrate", "openapi"] {
        assert!(help.contains(verb), "--help does not mention {verb}");
    }
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = temp_dir();
    let db = dir.join("sub/actas.db");
    let out = actas().arg("migrate").env("ACTAS_DATABASE_URL", format!("sqlite://{}", db.display())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(db.exists());
    // Running it again is a no-op.
    let again =
        actas().arg("migrate").env("ACTAS_DATABASE_URL", format!("sqlite://{}", db.display())).output().unwrap();
    assert!(again.status.success());
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

#[test]
fn bad_configuration_names_the_variable() {
    let out = actas().arg("migrate").env("ACTAS_ACCESS_TOKEN_MINUTES", "forever").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("ACTAS_ACCESS_TOKEN_MINUTES"), "{stderr}");
    let out = actas().arg("migrate").env("ACTAS_DATABASE_URL", "mysql://db/x").output().unwrap();
    assert!(String::from_utf8(out.stderr).unwrap().contains("unsupported database URL"));
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
    std::fs::remove_dir_all(dir).unwrap();
}
