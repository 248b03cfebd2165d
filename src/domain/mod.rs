//! Domain rules: pure functions and validated types. No HTTP, no SQL.

pub mod consent;
pub mod impersonation;
pub mod policy;
pub mod rate_limit;
pub mod types;
