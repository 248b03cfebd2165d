//! Audit events: which kinds there are and the facts each one records in its
//! `detail`, decided here once so every event says its times the same way.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::impersonation::EndReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ConsentGranted,
    ConsentRevoked,
    ImpersonationStarted,
    /// Stopped by the impersonator (stop, or logout with the impersonation token).
    ImpersonationStopped,
    /// Ended otherwise: expiry, revocation, logout, suspension, deletion.
    ImpersonationEnded,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::ConsentGranted,
        EventKind::ConsentRevoked,
        EventKind::ImpersonationStarted,
        EventKind::ImpersonationStopped,
        EventKind::ImpersonationEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ConsentGranted => "consent_granted",
            EventKind::ConsentRevoked => "consent_revoked",
            EventKind::ImpersonationStarted => "impersonation_started",
            EventKind::ImpersonationStopped => "impersonation_stopped",
            EventKind::ImpersonationEnded => "impersonation_ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why sessions end, beyond the stored `end_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The reason says it all.
    Reason,
    /// A user's role changed: sessions they take part in end (`stopped`),
    /// though their impersonator did not stop them.
    RoleChanged,
}

/// One audit event's facts.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ConsentGranted { duration_hours: i32, expires_at: OffsetDateTime },
    ConsentRevoked { granted_at: OffsetDateTime },
    ImpersonationStarted { impersonator_id: Uuid, reason: Option<String>, expires_at: OffsetDateTime },
    ImpersonationEnded { impersonator_id: Uuid, end_reason: EndReason, cause: Cause },
}

impl Event {
    /// An end is `impersonation_stopped` only when the impersonator stopped
    /// it; a role change also ends sessions as `stopped`, but nobody stopped them.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::ConsentGranted { .. } => EventKind::ConsentGranted,
            Event::ConsentRevoked { .. } => EventKind::ConsentRevoked,
            Event::ImpersonationStarted { .. } => EventKind::ImpersonationStarted,
            Event::ImpersonationEnded { end_reason: EndReason::Stopped, cause: Cause::Reason, .. } => {
                EventKind::ImpersonationStopped
            }
            Event::ImpersonationEnded { .. } => EventKind::ImpersonationEnded,
        }
    }

    /// The stored `detail`: instants as RFC 3339, like every time the API shows.
    pub fn detail(&self) -> Value {
        match self {
            Event::ConsentGranted { duration_hours, expires_at } => {
                json!({"duration_hours": duration_hours, "expires_at": rfc3339(*expires_at)})
            }
            Event::ConsentRevoked { granted_at } => json!({"consent_granted_at": rfc3339(*granted_at)}),
            Event::ImpersonationStarted { impersonator_id, reason, expires_at } => {
                json!({"impersonator_id": impersonator_id, "reason": reason, "expires_at": rfc3339(*expires_at)})
            }
            Event::ImpersonationEnded { impersonator_id, end_reason, cause } => {
                let mut detail = json!({"end_reason": end_reason.as_str(), "impersonator_id": impersonator_id});
                if *cause == Cause::RoleChanged {
                    detail["cause"] = json!("role_changed");
                }
                detail
            }
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("every instant the service handles lies within years 0..=9999")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn only_the_impersonator_stops_a_session() {
        let ended = |end_reason, cause| Event::ImpersonationEnded { impersonator_id: Uuid::nil(), end_reason, cause };
        assert_eq!(ended(EndReason::Stopped, Cause::Reason).kind(), EventKind::ImpersonationStopped);
        assert_eq!(ended(EndReason::Stopped, Cause::RoleChanged).kind(), EventKind::ImpersonationEnded);
        assert_eq!(ended(EndReason::ConsentRevoked, Cause::Reason).kind(), EventKind::ImpersonationEnded);
        assert_eq!(ended(EndReason::Expired, Cause::Reason).kind(), EventKind::ImpersonationEnded);
        let role_change = ended(EndReason::Stopped, Cause::RoleChanged).detail();
        assert_eq!(role_change["cause"], "role_changed");
        assert_eq!(role_change["end_reason"], "stopped");
        assert!(ended(EndReason::Stopped, Cause::Reason).detail().get("cause").is_none());
    }

    #[test]
    fn every_detail_says_its_times_in_rfc3339() {
        let at = datetime!(2026-11-21 10:00:00.5 UTC);
        assert_eq!(
            Event::ConsentGranted { duration_hours: 2, expires_at: at }.detail(),
            json!({"duration_hours": 2, "expires_at": "2026-11-21T10:00:00.5Z"})
        );
        assert_eq!(
            Event::ConsentRevoked { granted_at: at }.detail(),
            json!({"consent_granted_at": "2026-11-21T10:00:00.5Z"})
        );
        let started = Event::ImpersonationStarted { impersonator_id: Uuid::nil(), reason: None, expires_at: at };
        assert_eq!(started.detail()["expires_at"], "2026-11-21T10:00:00.5Z");
        assert_eq!(started.detail()["reason"], Value::Null);
    }

    #[test]
    fn kinds_read_back_as_written() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("impersonation_paused"), None);
    }
}
