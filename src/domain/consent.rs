//! Consent durations: whole hours from 1 to 168 (one week).

use time::Duration;

use super::types::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationHours(i32);

impl DurationHours {
    pub const MIN: i64 = 1;
    pub const MAX: i64 = 168;

    /// A JSON number as written: `24`, `24.0` and `2.4e1` are the same whole
    /// number; `1.5` is none, and neither is `0.99999999999999999`, though a
    /// float would round it to 1. Read exactly, as decimal digits.
    pub fn parse(literal: &str) -> Result<Self, Invalid> {
        Self::whole_number(literal.trim())
            .filter(|hours| (Self::MIN..=Self::MAX).contains(hours))
            .map(|hours| Self(hours as i32))
            .ok_or_else(Self::invalid)
    }

    /// The value of a JSON number literal when it is a whole number below
    /// 1000 (larger ones, negative ones and anything else are `None`).
    fn whole_number(literal: &str) -> Option<i64> {
        let unsigned = literal.strip_prefix('-').unwrap_or(literal);
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], unsigned[at + 1..].strip_prefix('+').unwrap_or(&unsigned[at + 1..])),
            None => (unsigned, "0"),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, "0"));
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let exponent_digits = exponent.strip_prefix('-').unwrap_or(exponent);
        if !all_digits(integer) || !all_digits(fraction) || !all_digits(exponent_digits) {
            return None;
        }
        // digits × 10^scale, with the digits' zeros at both ends taken off.
        let digits = format!("{integer}{fraction}");
        let significant = digits.trim_start_matches('0').trim_end_matches('0');
        if significant.is_empty() {
            return Some(0);
        }
        let trailing_zeros = digits.len() - digits.trim_end_matches('0').len();
        let exponent: i64 = match exponent.parse() {
            Ok(e) => e,
            // Beyond i64: tiny (fractional) or huge, never within bounds.
            Err(_) => return None,
        };
        let scale = exponent.checked_add(trailing_zeros as i64)?.checked_sub(fraction.len() as i64)?;
        if scale < 0 || significant.len() as i64 > 3 - scale || literal.starts_with('-') {
            return None;
        }
        Some(significant.parse::<i64>().ok()? * 10_i64.pow(scale as u32))
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
        assert_eq!(DurationHours::parse("1").unwrap().hours(), 1);
        assert_eq!(DurationHours::parse("168").unwrap().duration(), Duration::hours(168));
        for same in ["24", "24.0", "24.000", "2.4e1", "2.4E+1", "240e-1", "0.024e3", "024"] {
            assert_eq!(DurationHours::parse(same).map(DurationHours::hours), Ok(24), "{same}");
        }
        for refused in [
            "0",
            "-0",
            "0.0",
            "169",
            "-1",
            "-24",
            "1.5",
            "167.999",
            "1e400",
            "-1e400",
            "1e-400",
            "100000000000000000000",
            // A float would round these to whole hours within bounds.
            "0.99999999999999999",
            "1.0000000000000001",
            "167.99999999999999999",
            "168.00000000000001",
            // Not numbers.
            "",
            "\"24\"",
            "null",
            "true",
            "[24]",
            "1.",
            ".5",
            "1e",
            "e1",
            "+24",
            "2 4",
            "0x18",
            "1e99999999999999999999",
            "1.1e9223372036854775807",
            "12e9223372036854775806",
        ] {
            assert!(DurationHours::parse(refused).is_err(), "{refused}");
        }
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
