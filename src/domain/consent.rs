//! Consent durations: whole hours from 1 to 168 (one week).

use time::Duration;

use super::types::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationHours(i32);

impl DurationHours {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 168;

    /// A JSON number: `24` and `24.0` are the same whole number, `1.5` is none.
    pub fn parse(hours: f64) -> Result<Self, Invalid> {
        if hours.fract() == 0.0 && (Self::MIN as f64..=Self::MAX as f64).contains(&hours) {
            Ok(Self(hours as i32))
        } else {
            Err(Self::invalid())
        }
    }

    fn invalid() -> Invalid {
        Invalid {
            field: "duration_hours",
            message: format!("must be a whole number from {} to {}", Self::MIN, Self::MAX),
        }
    }

    pub fn hours(self) -> i32 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::hours(i64::from(self.0))
    }
}

/// An impersonation reason: optional free text, trimmed, at most 500 characters.
pub fn parse_reason(raw: Option<&str>) -> Result<Option<String>, Invalid> {
    let Some(reason) = raw.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(None) };
    if reason.chars().count() > 500 {
        return Err(Invalid { field: "reason", message: "must be at most 500 characters".into() });
    }
    if reason.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || crate::domain::types::is_bidi_control(c)) {
        return Err(Invalid { field: "reason", message: "must not contain control characters".into() });
    }
    Ok(Some(reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_from_1_to_168() {
        assert!(DurationHours::parse(0.0).is_err());
        assert_eq!(DurationHours::parse(1.0).unwrap().hours(), 1);
        assert_eq!(DurationHours::parse(168.0).unwrap().duration(), Duration::hours(168));
        assert!(DurationHours::parse(169.0).is_err());
        assert!(DurationHours::parse(-1.0).is_err());
        assert!(DurationHours::parse(1.5).is_err());
        assert!(DurationHours::parse(167.999).is_err());
        assert!(DurationHours::parse(f64::NAN).is_err());
        assert!(DurationHours::parse(f64::INFINITY).is_err());
    }

    #[test]
    fn reasons_are_optional_and_bounded() {
        assert_eq!(parse_reason(None), Ok(None));
        assert_eq!(parse_reason(Some("   ")), Ok(None));
        assert_eq!(parse_reason(Some(" ticket #42 ")), Ok(Some("ticket #42".into())));
        assert!(parse_reason(Some(&"x".repeat(500))).is_ok());
        assert!(parse_reason(Some(&"x".repeat(501))).is_err());
        assert!(parse_reason(Some("ticket \u{202E}24# tekcit")).is_err());
    }
}
