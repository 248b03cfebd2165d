//! actas: consent-based admin impersonation.
//!
//! `http` (routes, extractors, middleware) → `domain` (pure rules) → `store`
//! (diesel). `crypto` holds keys, tokens and password hashing.

pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod server;
pub mod state;
pub mod store;

/// Creates a directory (and its parents) readable only by this user: the
/// data directory holds the signing key, password hashes and the audit trail.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
