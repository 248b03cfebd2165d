//! One module per resource. A handler reads like a sentence: authenticate,
//! parse, ask the domain whether it is allowed, store, answer.

pub mod audit;
pub mod auth;
pub mod consent;
pub mod health;
pub mod impersonations;
pub mod me;
pub mod oauth;
pub mod organizations;
pub mod users;
pub mod well_known;
