//! Validated values, parsed once at the edge and trusted inside.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a value was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
/// Ordered by privilege: `member` < `admin` < `super_admin`.
pub enum Role {
    Member,
    Admin,
    SuperAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::SuperAdmin => "super_admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "super_admin" => Some(Role::SuperAdmin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Suspended,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Suspended => "suspended",
            UserStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "suspended" => Some(UserStatus::Suspended),
            "deleted" => Some(UserStatus::Deleted),
            _ => None,
        }
    }
}

/// Bidirectional overrides, embeddings and isolates: they reorder how the
/// text around them is shown, so a name or reason could display as something
/// other than what it says ("Trojan Source").
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show as nothing: two emails differing only by them would
/// look the same to whoever reads them.
pub(crate) fn is_invisible(c: char) -> bool {
    is_bidi_control(c)
        || matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// Full- and half-width forms, and the dots IDNA reads as `.`: mail systems
/// fold them to ordinary characters, so `ａｄａ@acme.example` would be a
/// second account for someone's mailbox, looking like theirs.
fn is_width_variant(c: char) -> bool {
    matches!(c, '\u{FF00}'..='\u{FFEF}' | '\u{3002}')
}

/// A syntactically plausible email address, trimmed and lowercased so that
/// uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    /// The form emails are stored and compared in (case-insensitive, SPEC §1).
    pub fn normalize(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = Self::normalize(raw);
        let invalid = || Invalid::new("email", "must be an email address such as ada@example.com");
        let unseen = |c: char| c.is_whitespace() || c.is_control() || is_invisible(c);
        if email.is_empty() || email.len() > Self::MAX_LEN || email.chars().any(unseen) {
            return Err(invalid());
        }
        if email.chars().any(is_width_variant) {
            return Err(Invalid::new(
                "email",
                "must be typed in ordinary characters, not full-width ones (ａ, ＠, ．)",
            ));
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name for a person or an organization: trimmed, 1..=200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(Invalid::new(field, format!("must be 1 to {} characters", Self::MAX_CHARS)));
        }
        if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(Invalid::new(field, "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A new password that meets the policy. Never printed: `Debug` hides it.
#[derive(Clone)]
pub struct NewPassword(String);

impl NewPassword {
    pub const MIN_CHARS: usize = 12;
    /// argon2 accepts more, but an unbounded password is a cheap way to burn CPU.
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(Invalid::new(field, format!("must be at least {} characters", Self::MIN_CHARS)));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(Invalid::new(field, format!("must be at most {} bytes", Self::MAX_BYTES)));
        }
        if raw.trim().is_empty() {
            return Err(Invalid::new(field, "must not be only whitespace"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in ["", "ada", "@x.io", "ada@", "a b@x.io", "a@b@c", "ada@.x", "ada@x."] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(250))).is_err());
        // Invisible characters would make two addresses look alike.
        for invisible in ['\u{200B}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}', '\u{202E}'] {
            assert!(Email::parse(&format!("ada{invisible}@x.io")).is_err(), "{invisible:?} accepted");
        }
        assert!(Email::parse("adä@exämple.de").is_ok());
        // Look-alikes that mail systems fold to ASCII are refused.
        for variant in ["ａｄａ@acme.example", "ada＠acme.example", "ada@acme．example", "ada@acme。example"] {
            let err = Email::parse(variant).unwrap_err();
            assert!(err.message.contains("full-width"), "{variant:?}: {}", err.message);
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("name", "  Ada ").unwrap().into_string(), "Ada");
        assert!(Name::parse("name", "   ").is_err());
        assert!(Name::parse("name", &"x".repeat(200)).is_ok());
        assert!(Name::parse("name", &"x".repeat(201)).is_err());
        assert!(Name::parse("name", "a\u{0}b").is_err());
        // Display reordering is refused; joiners that scripts need are not.
        assert!(Name::parse("name", "Ada \u{202E}nimda").is_err());
        assert!(Name::parse("name", "a\u{2067}b").is_err());
        assert!(Name::parse("name", "می\u{200C}خواهم").is_ok());
    }

    #[test]
    fn password_policy_boundaries() {
        assert!(NewPassword::parse("password", &"x".repeat(11)).is_err());
        assert!(NewPassword::parse("password", &"x".repeat(12)).is_ok());
        assert!(NewPassword::parse("password", &"x".repeat(1024)).is_ok());
        assert!(NewPassword::parse("password", &"x".repeat(1025)).is_err());
        assert!(NewPassword::parse("password", &" ".repeat(12)).is_err());
        assert_eq!(format!("{:?}", NewPassword::parse("p", "correct horse battery").unwrap()), "NewPassword(***)");
    }

    #[test]
    fn roles_are_ordered_by_privilege() {
        assert!(Role::Member < Role::Admin && Role::Admin < Role::SuperAdmin);
        for role in [Role::Member, Role::Admin, Role::SuperAdmin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
