use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;

use actas::config::Config;
use actas::server;
use actas::store::pool::{connect_read_only, migrate, redact_url};

/// Consent-based admin impersonation service.
///
/// Configuration comes from ACTAS_* environment variables (see the README).
#[derive(Parser)]
#[command(name = "actas", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, bootstrap an empty database, and serve HTTP (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (the one committed at openapi/openapi.json).
    Openapi,
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit hash chains; prints {ok, checked, first_bad_id}; exits 1 when broken, 2 when it cannot check.
    Verify,
}

fn main() {
    let mut environment = String::from("Environment:\n");
    for (name, default, meaning) in actas::config::VARIABLES {
        environment.push_str(&format!("  {name:<34} {meaning} (default: {default})\n"));
    }
    let cli = Cli::from_arg_matches(&Cli::command().after_help(environment).get_matches()).unwrap_or_else(|e| e.exit());
    if let Err(message) = run(cli.command.unwrap_or(Command::Serve)) {
        eprintln!("actas: error: {message}");
        std::process::exit(1);
    }
}

/// Writes a result to standard output: a full disk is a one-line error, a
/// closed pipe (`| head`) the reader's choice and no error at all.
fn print(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write the output: {e}")),
        _ => Ok(()),
    }
}

/// Prints the report; true when every chain is intact.
fn verify_audit() -> Result<bool, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let mut conn = connect_read_only(&config.database_url).map_err(|e| e.to_string())?;
    let report = actas::store::audit::verify(&mut conn)
        .map_err(|e| format!("cannot read the audit trail ({e}); is this an actas database?"))?;
    print(&serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?)?;
    Ok(report.ok)
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Openapi => {
            let doc = actas::http::openapi_document();
            print(&doc.to_pretty_json().map_err(|e| e.to_string())?)
        }
        Command::Migrate => {
            let config = Config::from_env().map_err(|e| e.to_string())?;
            server::init_tracing(config.log_format);
            migrate(&config.database_url).map_err(|e| e.to_string())?;
            tracing::info!(database = %redact_url(&config.database_url), "migrations applied");
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify } => match verify_audit() {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            // A cron job must tell "could not check" from "tampered with".
            Err(message) => {
                eprintln!("actas: error: {message}");
                std::process::exit(2)
            }
        },
        Command::Serve => {
            let config = Config::from_env().map_err(|e| e.to_string())?;
            server::init_tracing(config.log_format);
            actix_web::rt::System::new().block_on(server::serve(config)).map_err(|e| e.to_string())
        }
    }
}
