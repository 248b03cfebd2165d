//! Building the application state from configuration, and serving it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use tracing_subscriber::EnvFilter;

use crate::bootstrap::{self, Outcome};
use crate::config::{Config, LogFormat};
use crate::crypto::keys::{self, SigningKeys};
use crate::crypto::password::PasswordHasher;
use crate::state::{AppState, Clock};
use crate::store::pool::{connect_and_migrate, DbSetupError};
use crate::store::{attempts, audit, write_transaction, Backend};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Database(#[from] DbSetupError),
    #[error("{0}")]
    Key(#[from] keys::KeyError),
    #[error("{0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("cannot listen on {addr} (ACTAS_BIND): {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Loads the current signing key (generated on first start when no file is
/// configured) and the previous keys that still verify.
pub fn load_keys(config: &Config) -> Result<SigningKeys, keys::KeyError> {
    let current = match &config.signing_key_file {
        Some(path) => keys::read_pem(path)?,
        None => keys::load_or_generate(&config.signing_key_path())?,
    };
    let previous =
        config.previous_signing_key_files.iter().map(|p| keys::read_previous_pem(p)).collect::<Result<Vec<_>, _>>()?;
    Ok(SigningKeys::new(&current, &previous))
}

/// Connects, migrates, loads keys and bootstraps: everything before serving.
/// Blocking; call it off the async workers.
pub fn prepare(config: Config, clock: Clock) -> Result<AppState, StartupError> {
    let (pool, backend) = connect_and_migrate(&config.database_url)?;
    let keys = load_keys(&config)?;
    let mut conn = pool.get()?;
    match bootstrap::run(&mut conn, &config, clock.now())? {
        Outcome::AlreadyBootstrapped => {
            if config.bootstrap_admin_email.is_some() || config.bootstrap_admin_password.is_some() {
                tracing::warn!(
                    "ACTAS_BOOTSTRAP_ADMIN_* are ignored: they apply only to an empty database, and this one has its super admin"
                );
            }
        }
        Outcome::Created { email, generated_password: Some(password) } => {
            // Printed once, on purpose, so the operator can log in; never logged again.
            println!(
                "\n  actas: created the owner organization and super admin {email}\n  password (shown only now): {password}\n  change it with PUT /api/v1/me/password\n"
            );
        }
        Outcome::Created { email, generated_password: None } => {
            tracing::info!(%email, "created the owner organization and super admin from ACTAS_BOOTSTRAP_ADMIN_*");
        }
    }
    drop(conn);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    Ok(AppState {
        config: Arc::new(config),
        pool,
        backend,
        keys: Arc::new(keys),
        hasher: PasswordHasher::new(workers),
        clock,
        metrics: Default::default(),
        sqlite_writer: (backend == Backend::Sqlite).then(Default::default),
        session_turns: Default::default(),
    })
}

pub async fn serve(config: Config) -> Result<(), StartupError> {
    // Take the address before touching the database: a port in use must not
    // leave a freshly bootstrapped database (and its one-time password) behind.
    let listener = std::net::TcpListener::bind(config.bind.as_str())
        .map_err(|source| StartupError::Bind { addr: config.bind.clone(), source })?;
    let state = actix_web::web::block(move || prepare(config, Clock::default()))
        .await
        .map_err(|e| StartupError::Io(std::io::Error::other(e.to_string())))??;
    let backend = match state.backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
    };
    let loopback = state.config.bind.starts_with("127.") || state.config.bind.starts_with("localhost:");
    if !state.config.issuer_configured && (state.backend == Backend::Postgres || !loopback) {
        tracing::warn!(
            issuer = %state.config.issuer,
            "ACTAS_ISSUER is not set: tokens and server metadata name this node's own address, \
             which clients elsewhere (and other nodes) cannot use"
        );
    }
    if state.backend == Backend::Postgres && state.config.signing_key_file.is_none() {
        tracing::warn!(
            key = %state.config.signing_key_path().display(),
            "ACTAS_SIGNING_KEY_FILE is not set: this node signs with a key of its own data directory, \
             so other nodes will refuse its tokens; give every node the same key file"
        );
    }
    spawn_housekeeping(state.clone());
    let app_state = state.clone();
    let server = HttpServer::new(move || crate::http::app(app_state.clone())).listen(listener)?;
    for addr in server.addrs() {
        tracing::info!(%addr, backend, "listening; Swagger UI at http://{addr}/swagger-ui/");
    }
    server.run().await?;
    Ok(())
}

/// Housekeeping every 30 seconds: record the end of sessions that reached
/// their expiry (with their `impersonation_ended` events), and forget
/// credential attempts that no rate-limit window can see any more.
fn spawn_housekeeping(state: AppState) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if let Err(e) = housekeeping(&state).await {
                tracing::warn!(error = %e, "housekeeping failed; will retry");
            }
        }
    });
}

pub async fn housekeeping(state: &AppState) -> Result<usize, crate::http::problem::ApiError> {
    let now = state.clock.now();
    let cutoff = now - time::Duration::minutes(state.config.rate_limit_window_minutes);
    state
        .db_write(move |conn| {
            let expired = write_transaction(conn, |conn| audit::end_expired(conn, now))?;
            attempts::prune(conn, cutoff)?;
            Ok(expired)
        })
        .await
}
