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
    let is_form = content_type
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        return Some(truncate(redact_json(&json).to_string()));
    }
    if is_form {
        return Some(truncate(redact_query(&String::from_utf8_lossy(body))));
    }
    // Only what can be stored is scrubbed: at most the limit, plus a little
    // so that a value straddling the cut is still recognised.
    let lossy = String::from_utf8_lossy(body);
    let mut head_len = lossy.len().min(MAX_BODY_BYTES + 1024);
    while !lossy.is_char_boundary(head_len) {
        head_len -= 1;
    }
    Some(cut(scrub_text(&lossy[..head_len]), lossy.len() - head_len))
}

/// Cuts text over the limit at a character boundary and says how much is
/// gone, counting `already_dropped` bytes that never made it into `text`.
fn cut(text: String, already_dropped: usize) -> String {
    if text.len() <= MAX_BODY_BYTES && already_dropped == 0 {
        return text;
    }
    let mut at = text.len().min(MAX_BODY_BYTES);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}…[truncated {} bytes]", &text[..at], text.len() - at + already_dropped)
}

/// Cuts text over the limit at a character boundary and says how much is gone.
pub fn truncate(text: String) -> String {
    cut(text, 0)
}

/// Best effort for bodies that are neither JSON nor a form (a broken JSON
/// document, say): after a sensitive name, the value that follows `:` or `=`
/// is hidden, a quoted value up to its closing quote, anything else up to the
/// next delimiter. One pass over the text.
pub fn scrub_text(text: &str) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    // Next occurrence of each name at or after the cursor; searched again only
    // once the cursor has passed it, so the whole scan stays linear.
    let mut next: Vec<Option<usize>> = SENSITIVE.iter().map(|s| lower.find(s)).collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    loop {
        for (k, word) in SENSITIVE.iter().enumerate() {
            if next[k].is_some_and(|at| at < i) {
                next[k] = lower[i..].find(word).map(|at| i + at);
            }
        }
        let Some((k, start)) =
            next.iter().enumerate().filter_map(|(k, at)| at.map(|at| (k, at))).min_by_key(|(_, at)| *at)
        else {
            out.push_str(&text[i..]);
            return out;
        };
        let mut j = start + SENSITIVE[k].len();
        // The rest of the name, its closing quote and any space, then the separator.
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric()
                || matches!(bytes[j], b'_' | b'-' | b'"' | b'\'' | b' ' | b'\t' | b'\r' | b'\n'))
        {
            j += 1;
        }
        if j >= bytes.len() || !matches!(bytes[j], b':' | b'=') {
            out.push_str(&text[i..j]);
            i = j;
            continue;
        }
        j += 1;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t' | b'\r' | b'\n') {
            j += 1;
        }
        out.push_str(&text[i..j]);
        let value_end = match bytes.get(j) {
            Some(&quote @ (b'"' | b'\'')) => {
                // Up to the matching unescaped quote, or the end of the text.
                let mut e = j + 1;
                while e < bytes.len() && bytes[e] != quote {
                    e += if bytes[e] == b'\\' { 2 } else { 1 };
                }
                out.push(quote as char);
                out.push_str(REDACTED);
                if e < bytes.len() {
                    out.push(quote as char);
                }
                (e + 1).min(bytes.len())
            }
            _ => {
                out.push_str(REDACTED);
                text[j..].find([',', '&', '}', ']', '\n', '\r', ';', ' ', '"']).map_or(bytes.len(), |e| j + e)
            }
        };
        i = value_end;
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
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
    fn quoted_secrets_are_hidden_whole() {
        for body in [
            r#"{"password":"a,b;c}d",}"#,
            r#"{"password" : "has \"escaped\" quotes, commas",}"#,
            "{\"password\"\n\t:\n \"after newlines\",}",
            r#"{"api_key": 'single, quoted' ,}"#,
            r#"{"password": "never closed, runs to the end"#,
        ] {
            let stored = redact_body(body.as_bytes(), Some("application/json")).unwrap();
            for fragment in
                ["a,b", "c}d", "escaped", "commas", "after newlines", "single", "quoted", "never closed", "runs to"]
            {
                assert!(!stored.contains(fragment), "{fragment:?} kept from {body:?}: {stored}");
            }
            assert!(stored.contains(REDACTED), "{stored}");
        }
    }

    #[test]
    fn odd_encodings_do_not_panic_or_leak() {
        assert_eq!(redact_query("%€=x&%E2%82%AC=y&%=z&%4"), "%€=x&%E2%82%AC=y&%=z&%4");
        assert_eq!(redact_query("new+password=hunter2"), "new+password=%5BREDACTED%5D");
        let upper = redact_body(b"password=hunter2", Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8")).unwrap();
        assert!(!upper.contains("hunter2"), "{upper}");
    }

    #[test]
    fn scrubbing_is_linear() {
        // A megabyte of near-misses: quadratic scanning would take minutes.
        let body = "tokentoken".repeat(100_000);
        let started = std::time::Instant::now();
        let stored = redact_body(body.as_bytes(), Some("text/plain")).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(
            stored.ends_with(&format!("…[truncated {} bytes]", body.len() - MAX_BODY_BYTES)),
            "{}",
            &stored[stored.len() - 40..]
        );
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
