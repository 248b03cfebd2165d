//! Written by hand: `diesel print-schema` gives different types per backend.
//! `Uuid` and `Instant` are our cross-backend types (see `sql_types`).

diesel::table! {
    use diesel::sql_types::{Integer, Nullable, Text};
    use crate::store::sql_types::{Instant, Uuid};

    organizations (id) {
        id -> Uuid,
        name -> Text,
        parent_id -> Nullable<Uuid>,
        /// Materialized path of ancestor ids, `/root/…/self/`: subtree = prefix match.
        path -> Text,
        depth -> Integer,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::store::sql_types::{Instant, Uuid};

    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        organization_id -> Uuid,
        role -> Text,
        status -> Text,
        password_hash -> Text,
        created_at -> Instant,
        updated_at -> Instant,
        deleted_at -> Nullable<Instant>,
        name_folded -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::store::sql_types::{Instant, Uuid};

    login_sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Instant,
        expires_at -> Instant,
        ended_at -> Nullable<Instant>,
        end_reason -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::{Bool, Text};
    use crate::store::sql_types::{Instant, Uuid};

    auth_attempts (id) {
        id -> Uuid,
        scope -> Text,
        subject -> Text,
        attempted_at -> Instant,
        pending -> Bool,
    }
}

diesel::joinable!(users -> organizations (organization_id));
diesel::joinable!(login_sessions -> users (user_id));

diesel::table! {
    use diesel::sql_types::{Integer, Nullable};
    use crate::store::sql_types::{Instant, Uuid};

    consents (id) {
        id -> Uuid,
        user_id -> Uuid,
        duration_hours -> Integer,
        granted_at -> Instant,
        expires_at -> Instant,
        revoked_at -> Nullable<Instant>,
        superseded_at -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::store::sql_types::{Instant, Uuid};

    impersonation_sessions (id) {
        id -> Uuid,
        impersonator_id -> Uuid,
        target_id -> Uuid,
        consent_id -> Uuid,
        login_session_id -> Uuid,
        reason -> Nullable<Text>,
        started_at -> Instant,
        expires_at -> Instant,
        ended_at -> Nullable<Instant>,
        end_reason -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::joinable!(consents -> users (user_id));

diesel::table! {
    use diesel::sql_types::{BigInt, Integer, Nullable, Text};
    use crate::store::sql_types::{Instant, Uuid};

    request_log (id) {
        id -> Uuid,
        seq -> BigInt,
        session_id -> Uuid,
        at -> Instant,
        method -> Text,
        path -> Text,
        query -> Nullable<Text>,
        status -> Integer,
        duration_ms -> Integer,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        body -> Nullable<Text>,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::{BigInt, Nullable, Text};
    use crate::store::sql_types::{Instant, Uuid};

    audit_events (id) {
        id -> Uuid,
        seq -> BigInt,
        kind -> Text,
        at -> Instant,
        actor_id -> Nullable<Uuid>,
        subject_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        detail -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::{BigInt, Text};

    audit_chain_heads (chain) {
        chain -> Text,
        seq -> BigInt,
        hash -> Text,
    }
}

/// Calls `$callback!` with every table above, so that lists of all tables
/// (here, and the readiness check) cannot miss one.
macro_rules! with_every_table {
    ($callback:ident) => {
        $callback! {
            organizations,
            users,
            login_sessions,
            auth_attempts,
            consents,
            impersonation_sessions,
            request_log,
            audit_events,
            audit_chain_heads
        }
    };
}
pub(crate) use with_every_table;

macro_rules! joinable_with_each_other {
    ($($table:ident),*) => {
        diesel::allow_tables_to_appear_in_same_query!($($table),*);
    };
}
with_every_table!(joinable_with_each_other);
