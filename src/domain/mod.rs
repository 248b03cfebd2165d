//! Domain rules: pure functions and validated types. No HTTP, no SQL.

pub mod chain;
pub mod consent;
pub mod events;
pub mod impersonation;
pub mod policy;
pub mod rate_limit;
pub mod redact;
pub mod types;
