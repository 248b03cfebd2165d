//! Redaction before storage (SPEC §5): any JSON key or query/form parameter
//! whose name contains `password`, `secret`, `token`, `authorization`,
//! `cookie` or `api_key`/`apikey` (any case, any depth) is stored as
//! `"[REDACTED]"`. Bodies over 16 KiB are truncated with a marker.

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const SENSITIVE: [&str; 8] = ["password", "secret", "token", "authorization", "cookie", "api_key", "apikey", "api-key"];

/// Whether a key or parameter name must have its value hidden.
pub fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| name.contains(s))
}

/// A redacted copy of a JSON value, at any depth.
pub fn redact_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    (k.clone(), if is_sensitive(k) { Value::String(REDACTED.into()) } else { redact_json(v) })
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        other => other.clone(),
    }
}

/// A redacted copy of a query string or form body (`a=1&password=x`), keeping
/// the order and the encoding of what is not redacted.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (raw_key, _) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(&raw_key.replace('+', " "));
            if is_sensitive(&key) {
                format!("{raw_key}={}", "%5BREDACTED%5D")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What a request body is stored as.
pub fn redact_body(body: &[u8], content_type: Option<&str>) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let is_form = content_type.is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let text = if let Ok(json) = serde_json::from_slice::<Value>(body) {
        redact_json(&json).to_string()
    } else if is_form {
        redact_query(&String::from_utf8_lossy(body))
    } else {
        scrub_text(&String::from_utf8_lossy(body))
    };
    Some(truncate(text))
}

/// Cuts text over the limit at a character boundary and says how much is gone.
pub fn truncate(text: String) -> String {
    if text.len() <= MAX_BODY_BYTES {
        return text;
    }
    let mut cut = MAX_BODY_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..cut], text.len() - cut)
}

/// Best effort for bodies that are neither JSON nor a form (a broken JSON
/// document, say): after a sensitive name, the value following `:` or `=` is
/// hidden up to the next delimiter.
pub fn scrub_text(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hit = SENSITIVE.iter().filter_map(|s| lower[i..].find(s).map(|at| (i + at, s.len()))).min();
        let Some((start, len)) = hit else {
            out.push_str(&text[i..]);
            break;
        };
        let mut j = start + len;
        // The rest of the name, the closing quote, spaces, then the separator.
        while j < text.len()
            && (text.as_bytes()[j].is_ascii_alphanumeric()
                || matches!(text.as_bytes()[j], b'_' | b'-' | b'"' | b'\'' | b' '))
        {
            j += 1;
        }
        if j < text.len() && matches!(text.as_bytes()[j], b':' | b'=') {
            j += 1;
            while j < text.len() && matches!(text.as_bytes()[j], b' ' | b'"' | b'\'') {
                j += 1;
            }
            let value_end =
                text[j..].find(['"', '\'', ',', '&', '}', ']', '\n', '\r', ';']).map_or(text.len(), |e| j + e);
            out.push_str(&text[i..j]);
            out.push_str(REDACTED);
            i = value_end;
        } else {
            out.push_str(&text[i..j]);
            i = j;
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_names_in_any_case() {
        for name in [
            "password",
            "new_Password",
            "client_secret",
            "access_token",
            "Authorization",
            "set-cookie",
            "api_key",
            "X-ApiKey",
            "api-key",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in ["name", "email", "reason", "duration_hours", "api"] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn json_is_redacted_at_any_depth() {
        let body = json!({
            "email": "a@b.example",
            "password": "hunter2",
            "nested": {"items": [{"client_secret": "s3", "keep": 1}, {"deeper": {"RefreshToken": {"value": "t"}}}]},
            "list": [["x", {"api_key": 7}]]
        });
        assert_eq!(
            redact_json(&body),
            json!({
                "email": "a@b.example",
                "password": REDACTED,
                "nested": {"items": [{"client_secret": REDACTED, "keep": 1}, {"deeper": {"RefreshToken": REDACTED}}]},
                "list": [["x", {"api_key": REDACTED}]]
            })
        );
    }

    #[test]
    fn queries_and_forms_are_redacted_by_parameter_name() {
        assert_eq!(redact_query("q=ada&access_token=abc&limit=5"), "q=ada&access_token=%5BREDACTED%5D&limit=5");
        assert_eq!(redact_query("pass%77ord=x"), "pass%77ord=%5BREDACTED%5D");
        assert_eq!(redact_query("flag&Api_Key="), "flag&Api_Key=%5BREDACTED%5D");
        let form = redact_body(b"grant_type=x&subject_token=abc&password=p", Some("application/x-www-form-urlencoded"))
            .unwrap();
        assert_eq!(form, "grant_type=x&subject_token=%5BREDACTED%5D&password=%5BREDACTED%5D");
    }

    #[test]
    fn broken_json_and_text_are_scrubbed() {
        let stored = redact_body(br#"{"password": "hunter2", "name": "x""#, Some("application/json")).unwrap();
        assert!(!stored.contains("hunter2"), "{stored}");
        assert!(stored.contains("name"));
        let stored = redact_body(b"token=abc123; secret: s3cr3t\nplain", Some("text/plain")).unwrap();
        assert!(!stored.contains("abc123") && !stored.contains("s3cr3t"), "{stored}");
        assert!(stored.ends_with("plain"));
    }

    #[test]
    fn large_bodies_are_truncated_with_a_marker() {
        let big = "é".repeat(10_000);
        let stored = redact_body(big.as_bytes(), Some("text/plain")).unwrap();
        assert!(stored.len() < MAX_BODY_BYTES + 40);
        assert!(stored.ends_with(&format!("…[truncated {} bytes]", big.len() - MAX_BODY_BYTES)));
        assert_eq!(redact_body(b"", None), None);
    }
}
