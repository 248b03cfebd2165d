//! Every setting, read from the environment in one place, with its default.

use std::path::PathBuf;

use crate::domain::types::{Email, NewPassword};

#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub bind: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub issuer: String,
    /// Whether `ACTAS_ISSUER` was given (several nodes must share one).
    pub issuer_configured: bool,
    pub audience: String,
    /// `None`: generated once into `data_dir/signing-key.pem`.
    pub signing_key_file: Option<PathBuf>,
    pub previous_signing_key_files: Vec<PathBuf>,
    pub access_token_minutes: i64,
    pub max_impersonation_minutes: i64,
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<String>,
    pub rate_limit_max_failures: u32,
    pub rate_limit_window_minutes: i64,
    /// Take the client address from the last `X-Forwarded-For` entry (only behind a proxy you run).
    pub trust_proxy_headers: bool,
    pub log_format: LogFormat,
    /// Browser origins (`https://app.example.com`) allowed to call the API; none by default.
    pub cors_allowed_origins: Vec<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("data_dir", &self.data_dir)
            .field("database_url", &crate::store::pool::redact_url(&self.database_url))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("bootstrap_admin_password", &self.bootstrap_admin_password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Each variable: name, default, meaning. Shown by `actas --help`; the
/// README's configuration table says the same.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("ACTAS_BIND", "127.0.0.1:8080", "Address and port to listen on"),
    ("ACTAS_DATA_DIR", "actas-data", "Directory for the SQLite database and the generated signing key"),
    ("ACTAS_DATABASE_URL", "sqlite://actas-data/actas.db", "`sqlite://path` or `postgres://user:password@host/db`"),
    (
        "ACTAS_ISSUER",
        "http://<ACTAS_BIND>",
        "`iss` of every token (`0.0.0.0` becomes `127.0.0.1`, `[::]` becomes `[::1]`)",
    ),
    ("ACTAS_AUDIENCE", "actas", "`aud` of every token"),
    ("ACTAS_SIGNING_KEY_FILE", "<data dir>/signing-key.pem", "Ed25519 PKCS#8 PEM private key"),
    (
        "ACTAS_PREVIOUS_SIGNING_KEY_FILES",
        "",
        "Comma-separated earlier keys (public or private PEM) that still verify during rotation",
    ),
    ("ACTAS_ACCESS_TOKEN_MINUTES", "60", "Lifetime of login tokens and their sessions"),
    ("ACTAS_MAX_IMPERSONATION_MINUTES", "30", "Cap on an impersonation session's lifetime"),
    ("ACTAS_BOOTSTRAP_ADMIN_EMAIL", "admin@localhost", "First super admin, created on an empty database"),
    ("ACTAS_BOOTSTRAP_ADMIN_PASSWORD", "random, printed once", "Its password (at least 12 characters)"),
    (
        "ACTAS_RATE_LIMIT_MAX_FAILURES",
        "5",
        "Failed logins/confirmations allowed per window, per email, IP and impersonator",
    ),
    ("ACTAS_RATE_LIMIT_WINDOW_MINUTES", "15", "Length of that window"),
    ("ACTAS_TRUST_PROXY_HEADERS", "false", "Read the client IP from X-Forwarded-For (only behind your own proxy)"),
    ("ACTAS_LOG_FORMAT", "text", "`text` or `json`"),
    ("ACTAS_CORS_ALLOWED_ORIGINS", "", "Comma-separated browser origins allowed to call the API (CORS)"),
    ("RUST_LOG", "info", "Log filter, e.g. `actas=debug,info`"),
];

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let bind = get("ACTAS_BIND").unwrap_or_else(|| "127.0.0.1:8080".into());
        let data_dir = PathBuf::from(get("ACTAS_DATA_DIR").unwrap_or_else(|| "actas-data".into()));
        let database_url =
            get("ACTAS_DATABASE_URL").unwrap_or_else(|| format!("sqlite://{}", data_dir.join("actas.db").display()));
        let issuer_configured = get("ACTAS_ISSUER").is_some();
        let issuer = get("ACTAS_ISSUER").unwrap_or_else(|| format!("http://{}", reachable(&bind)));
        issuer_url(&issuer).map_err(|why| ConfigError {
            name: "ACTAS_ISSUER",
            message: format!("{issuer:?} is not a URL like https://actas.example.com: {why}"),
        })?;
        let whole_number = |name: &'static str, default: i64, max: i64| -> Result<i64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(raw) => match raw.trim().parse::<i64>() {
                    Ok(v) if (1..=max).contains(&v) => Ok(v),
                    _ => Err(ConfigError {
                        name,
                        message: format!("must be a whole number from 1 to {max}, got {raw:?}"),
                    }),
                },
            }
        };
        // Checked before anything is created: a start that cannot bootstrap
        // leaves no database or key behind.
        let bootstrap_admin_email = get("ACTAS_BOOTSTRAP_ADMIN_EMAIL");
        if let Some(Err(e)) = bootstrap_admin_email.as_deref().map(Email::parse) {
            return Err(ConfigError { name: "ACTAS_BOOTSTRAP_ADMIN_EMAIL", message: e.message });
        }
        let bootstrap_admin_password = get("ACTAS_BOOTSTRAP_ADMIN_PASSWORD");
        if let Some(Err(e)) = bootstrap_admin_password.as_deref().map(|p| NewPassword::parse("password", p)) {
            return Err(ConfigError { name: "ACTAS_BOOTSTRAP_ADMIN_PASSWORD", message: e.message });
        }
        let trust_proxy_headers =
            match get("ACTAS_TRUST_PROXY_HEADERS").as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("false" | "0" | "no") => false,
                Some("true" | "1" | "yes") => true,
                Some(other) => {
                    return Err(ConfigError {
                        name: "ACTAS_TRUST_PROXY_HEADERS",
                        message: format!("must be true or false (also 1 or 0, yes or no), got {other:?}"),
                    })
                }
            };
        let log_format = match get("ACTAS_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    name: "ACTAS_LOG_FORMAT",
                    message: format!("must be text or json, got {other:?}"),
                })
            }
        };
        Ok(Self {
            bind,
            database_url,
            issuer,
            issuer_configured,
            audience: get("ACTAS_AUDIENCE").unwrap_or_else(|| "actas".into()),
            signing_key_file: get("ACTAS_SIGNING_KEY_FILE").map(PathBuf::from),
            previous_signing_key_files: get("ACTAS_PREVIOUS_SIGNING_KEY_FILES")
                .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect())
                .unwrap_or_default(),
            access_token_minutes: whole_number("ACTAS_ACCESS_TOKEN_MINUTES", 60, 24 * 60)?,
            max_impersonation_minutes: whole_number("ACTAS_MAX_IMPERSONATION_MINUTES", 30, 24 * 60)?,
            bootstrap_admin_email,
            bootstrap_admin_password,
            rate_limit_max_failures: whole_number("ACTAS_RATE_LIMIT_MAX_FAILURES", 5, 1000)? as u32,
            rate_limit_window_minutes: whole_number("ACTAS_RATE_LIMIT_WINDOW_MINUTES", 15, 24 * 60)?,
            trust_proxy_headers,
            log_format,
            cors_allowed_origins: match get("ACTAS_CORS_ALLOWED_ORIGINS") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(|origin| {
                        browser_origin(origin).map_err(|why| ConfigError {
                            name: "ACTAS_CORS_ALLOWED_ORIGINS",
                            message: format!("{origin:?} is not an origin like https://app.example.com: {why}"),
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
            data_dir,
        })
    }

    /// The path of the issuer URL (`/actas` in `https://example.com/actas`),
    /// if it has one: RFC 8414 §3.1 puts the metadata under it.
    pub fn issuer_path(&self) -> Option<&str> {
        let after_scheme = self.issuer.split_once("://").map_or(self.issuer.as_str(), |(_, rest)| rest);
        let path = after_scheme.find('/').map(|at| after_scheme[at..].trim_end_matches('/'))?;
        (!path.is_empty()).then_some(path)
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file.clone().unwrap_or_else(|| self.data_dir.join("signing-key.pem"))
    }
}

/// A listening address as a client can reach it: "every interface" becomes
/// the loopback one (`0.0.0.0:8080` is reached at `127.0.0.1:8080`).
fn reachable(bind: &str) -> String {
    match (bind.strip_prefix("0.0.0.0:"), bind.strip_prefix("[::]:")) {
        (Some(port), _) => format!("127.0.0.1:{port}"),
        (_, Some(port)) => format!("[::1]:{port}"),
        _ => bind.to_owned(),
    }
}

/// Whether an issuer is what RFC 8414 §2 asks: an http(s) URL with a host
/// and no query or fragment (clients compare it character by character with
/// `iss` and build the metadata address from it).
fn issuer_url(issuer: &str) -> Result<(), &'static str> {
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| issuer.strip_prefix(scheme))
        .ok_or("it must start with https:// (or http://)")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err("it needs a host, and no user name");
    }
    if issuer.contains(['?', '#']) {
        return Err("it may not have a query or fragment");
    }
    if issuer.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
        return Err("it may not contain spaces, controls or non-ASCII characters");
    }
    Ok(())
}

/// An origin as browsers send it in `Origin` (lowercase scheme and host, no
/// default port, no path), so the configured form matches theirs exactly.
fn browser_origin(origin: &str) -> Result<String, &'static str> {
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or("it needs a scheme, http:// or https://")?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return Err("the scheme must be http:// or https://"),
    };
    // A single trailing slash is how origins are often pasted from the address bar.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("an origin has no path");
    }
    if authority.is_empty() || authority.contains(['*', ' ', '?', '#', '@']) {
        return Err("it needs a plain host name, no wildcards");
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn issuer_path_is_what_follows_the_host() {
        let path = |issuer: &str| config(&[("ACTAS_ISSUER", issuer)]).unwrap().issuer_path().map(str::to_owned);
        assert_eq!(path("https://example.com"), None);
        assert_eq!(path("https://example.com/"), None);
        assert_eq!(path("https://example.com/actas"), Some("/actas".into()));
        assert_eq!(path("https://example.com:8443/a/b/"), Some("/a/b".into()));
    }

    #[test]
    fn the_default_issuer_is_where_clients_reach_the_bind_address() {
        let issuer = |bind: &str| config(&[("ACTAS_BIND", bind)]).unwrap().issuer;
        assert_eq!(issuer("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(issuer("[::]:8080"), "http://[::1]:8080");
        assert_eq!(issuer("10.0.0.0:8080"), "http://10.0.0.0:8080");
        assert_eq!(issuer("actas.internal:9000"), "http://actas.internal:9000");
    }

    #[test]
    fn the_issuer_must_be_an_http_url() {
        for good in ["https://actas.example.com", "http://127.0.0.1:8080", "https://example.com/actas/"] {
            assert!(config(&[("ACTAS_ISSUER", good)]).is_ok(), "{good}");
        }
        for bad in [
            "not a url",
            "ftp://x",
            "actas.example.com",
            "https://",
            "https:///path",
            "https://:443",
            "https://user@example.com",
            "https://example.com/?x=1",
            "https://example.com#top",
            "https://exa mple.com",
            "https://exämple.com",
        ] {
            assert_eq!(config(&[("ACTAS_ISSUER", bad)]).unwrap_err().name, "ACTAS_ISSUER", "{bad}");
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.bind, "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://actas-data/actas.db");
        assert_eq!((c.access_token_minutes, c.max_impersonation_minutes), (60, 30));
        assert_eq!((c.rate_limit_max_failures, c.rate_limit_window_minutes), (5, 15));
        assert_eq!(c.signing_key_path(), PathBuf::from("actas-data/signing-key.pem"));
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
    }

    #[test]
    fn cors_origins_are_kept_as_browsers_send_them() {
        let origins = |list: &str| config(&[("ACTAS_CORS_ALLOWED_ORIGINS", list)]).map(|c| c.cors_allowed_origins);
        let kept =
            origins("HTTP://LocalHost:5173/, https://app.example.com:443,http://a.example:80,https://b.example:8443");
        assert_eq!(
            kept.unwrap(),
            ["http://localhost:5173", "https://app.example.com", "http://a.example", "https://b.example:8443"]
        );
        for (bad, why) in [
            ("https://app.example.com/app", "no path"),
            ("app.example.com", "scheme"),
            ("ftp://app.example.com", "scheme"),
            ("https://*.example.com", "wildcards"),
            ("https://", "plain host"),
        ] {
            let err = origins(bad).err().unwrap();
            assert_eq!(err.name, "ACTAS_CORS_ALLOWED_ORIGINS");
            assert!(err.message.contains(why), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        let err = config(&[("ACTAS_ACCESS_TOKEN_MINUTES", "0")]).err().unwrap();
        assert_eq!(err.name, "ACTAS_ACCESS_TOKEN_MINUTES");
        assert!(config(&[("ACTAS_MAX_IMPERSONATION_MINUTES", "ten")]).is_err());
        assert!(config(&[("ACTAS_LOG_FORMAT", "xml")]).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = config(&[
            ("ACTAS_DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("ACTAS_BOOTSTRAP_ADMIN_PASSWORD", "hunter2hunter2"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
