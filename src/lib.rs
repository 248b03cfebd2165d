//! actas: consent-based admin impersonation.
//!
//! `http` (routes, extractors, middleware) → `domain` (pure rules) → `store`
//! (diesel). `crypto` holds keys, tokens and password hashing.

pub mod bootstrap;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod server;
pub mod state;
pub mod store;
