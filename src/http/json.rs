//! JSON request bodies: `application/json` only, at most 64 KiB, and errors
//! that name the offending field (`errors[].field`) by its path.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::PartialSchema;

use super::problem::{ApiError, FieldError};

/// Largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// A request body parsed from JSON.
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.type_() == "application" && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
    })
}

/// Whether the request announces a body larger than any endpoint takes: it is
/// refused before a byte of it is awaited (also after `Expect: 100-continue`).
pub fn declares_too_large_body(headers: &actix_web::http::header::HeaderMap) -> bool {
    headers
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|len| len > MAX_JSON_BYTES as u64)
}

/// Why a body is refused for its `Content-Encoding`, unless it is plain.
/// Bodies are taken only as sent: a compressed one would be acted on but
/// could not be recorded readably in the audit log.
pub fn encoded_body_refusal(req: &HttpRequest) -> Option<String> {
    let encoding = req.headers().get(actix_web::http::header::CONTENT_ENCODING)?;
    let encoding = String::from_utf8_lossy(encoding.as_bytes()).trim().to_owned();
    (!encoding.eq_ignore_ascii_case("identity"))
        .then(|| format!("Content-Encoding {encoding:?} is not accepted; send the body uncompressed"))
}

/// Turns a deserialization failure into 400 (not JSON) or 422 (wrong shape).
/// A shape error met before a syntax error further on is still a 400. A 422
/// also lists every required field of `T`'s documented schema the body lacks:
/// serde stops at the first, a client fixing its request wants them all.
pub fn body_error<T: PartialSchema>(error: serde_path_to_error::Error<serde_json::Error>, body: &[u8]) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if !inner.is_data() {
        return ApiError::bad_request("malformed_json", format!("the request body is not valid JSON: {inner}"));
    }
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return ApiError::bad_request("malformed_json", format!("the request body is not valid JSON: {syntax}"));
    }
    let message = inner.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    let mut errors = vec![shape_error(&path, message)];
    for missing in missing_required::<T>(body) {
        if !errors.iter().any(|e| e.field == missing.field) {
            errors.push(missing);
        }
    }
    ApiError::validation(errors)
}

/// The top-level fields `T`'s schema requires that a JSON object body lacks.
fn missing_required<T: PartialSchema>(body: &[u8]) -> Vec<FieldError> {
    let Ok(serde_json::Value::Object(present)) = serde_json::from_slice(body) else { return Vec::new() };
    let RefOr::T(Schema::Object(schema)) = T::schema() else { return Vec::new() };
    schema
        .required
        .into_iter()
        .filter(|name| !present.contains_key(name))
        .map(|field| FieldError { field, message: "is required".into() })
        .collect()
}

/// The field a serde message is about, and the message in our words: a
/// missing field is reported at the object that lacks it, and Rust type names
/// never reach the client.
pub fn shape_error(path: &str, message: &str) -> FieldError {
    let named = || message.split('`').nth(1).map(str::to_owned);
    let missing = message.starts_with("missing field");
    let field = match (path, missing) {
        (".", true) => named().unwrap_or_else(|| "body".into()),
        (parent, true) => format!("{parent}.{}", named().unwrap_or_default()),
        (".", false) if message.starts_with("unknown field") || message.starts_with("duplicate field") => {
            named().unwrap_or_else(|| "body".into())
        }
        (".", false) => "body".into(),
        (at, false) => at.to_owned(),
    };
    let message = if missing {
        "is required".to_owned()
    } else if message.starts_with("unknown field") {
        "is not a known field".to_owned()
    } else if message.contains("expected struct ") || message.contains("expected a sequence") {
        "must be a JSON object".to_owned()
    } else {
        message.to_owned()
    };
    FieldError { field, message }
}

/// For optional fields of a change: absent means "leave it", but `null` is
/// refused (422) instead of being read as absent. Use with `#[serde(default)]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    match Option::<T>::deserialize(deserializer)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom("must not be null; leave the field out to keep it")),
    }
}

/// Whether JSON text holds a `\u0000` escape (a NUL character once parsed),
/// which PostgreSQL cannot store in text: refused at the edge on every backend.
fn has_nul_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(6)
        .enumerate()
        .any(|(at, w)| w == b"\\u0000" && bytes[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0)
}

/// Where in a JSON value the first NUL character is, named as fields are in
/// errors (`items[0].name`); a NUL in a key names that key.
fn nul_path(value: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let join = |key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match value {
        Value::String(text) => text.contains('\0').then(|| if at.is_empty() { "body".into() } else { at.to_owned() }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| nul_path(item, &format!("{at}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, field)| {
            if key.contains('\0') {
                Some(join(&key.replace('\0', "\\u0000")))
            } else {
                nul_path(field, &join(key))
            }
        }),
        _ => None,
    }
}

impl<T: DeserializeOwned + PartialSchema + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let encoded = encoded_body_refusal(req);
        let declared_too_large = declares_too_large_body(req.headers());
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Unsupported media type",
                    "expected Content-Type: application/json",
                ));
            }
            if let Some(refusal) = encoded {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "Unsupported media type",
                    refusal,
                ));
            }
            if declared_too_large {
                return Err(ApiError::payload_too_large());
            }
            let bytes = bytes.await.map_err(|e| ApiError::unreadable(&e))?;
            // Only an object: serde would also take `["a@b", "pw"]` for a
            // struct. (Not JSON at all, like a lone `[`, is a 400 below.)
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            let not_an_object =
                first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
            if not_an_object {
                return Err(ApiError::validation(vec![FieldError {
                    field: "body".into(),
                    message: "must be a JSON object".into(),
                }]));
            }
            if has_nul_escape(&bytes) {
                let parsed = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
                return Err(ApiError::validation(vec![FieldError {
                    field: parsed.as_ref().and_then(|v| nul_path(v, "")).unwrap_or_else(|| "body".into()),
                    message: "text must not contain NUL characters (\\u0000)".into(),
                }]));
            }
            let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
            let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| body_error::<T>(e, &bytes))?;
            deserializer.end().map_err(|e| {
                ApiError::bad_request("malformed_json", format!("the request body is not valid JSON: {e}"))
            })?;
            Ok(JsonBody(value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, utoipa::ToSchema, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Grant {
        duration_hours: i64,
        note: String,
        reason: Option<String>,
    }

    fn fields(e: &ApiError) -> Vec<(&str, &str)> {
        e.errors.as_ref().unwrap().iter().map(|e| (e.field.as_str(), e.message.as_str())).collect()
    }

    fn error_for(body: &str) -> ApiError {
        let mut de = serde_json::Deserializer::from_str(body);
        body_error::<Grant>(serde_path_to_error::deserialize::<_, Grant>(&mut de).unwrap_err(), body.as_bytes())
    }

    #[test]
    fn errors_name_the_field() {
        let e = error_for(r#"{"duration_hours": 1.5, "note": "n"}"#);
        assert_eq!((e.status.as_u16(), e.errors.as_ref().unwrap()[0].field.as_str()), (422, "duration_hours"));
        // Every missing required field at once, not one per round trip.
        let e = error_for(r#"{}"#);
        assert_eq!(fields(&e), [("duration_hours", "is required"), ("note", "is required")]);
        let e = error_for(r#"{"note": "n"}"#);
        assert_eq!(fields(&e), [("duration_hours", "is required")]);
        let e = error_for(r#"{"duration_hours": 1, "admin": true}"#);
        assert_eq!(fields(&e), [("admin", "is not a known field"), ("note", "is required")]);
        let e = error_for(r#"{"duration_hours": "x"}"#);
        assert_eq!(fields(&e)[1], ("note", "is required"));
        let e = error_for(r#"{"duration_hours": "#);
        assert_eq!((e.status.as_u16(), e.code), (400, "malformed_json"));
        // Broken JSON is broken JSON, whatever serde tripped over first.
        let e = error_for(r#"{"admin": "#);
        assert_eq!((e.status.as_u16(), e.code), (400, "malformed_json"));
        let e = error_for(r#"{"duration_hours": "x", "#);
        assert_eq!((e.status.as_u16(), e.code), (400, "malformed_json"));
        let e = error_for(r#""just text""#);
        assert_eq!(e.errors.as_ref().unwrap()[0].message, "must be a JSON object");
    }

    #[test]
    fn nul_escapes_are_found_but_escaped_backslashes_are_not() {
        assert!(has_nul_escape(br#"{"q": "a\u0000b"}"#));
        assert!(has_nul_escape(br#"{"q": "\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"q": "\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"q": "u0000"}"#));
        let at = |json: &str| nul_path(&serde_json::from_str(json).unwrap(), "");
        assert_eq!(at(r#"{"name": "a\u0000b"}"#).as_deref(), Some("name"));
        assert_eq!(at(r#"{"a": {"items": [1, {"b": "\u0000"}]}}"#).as_deref(), Some("a.items[1].b"));
        assert_eq!(at(r#"{"ok": "fine"}"#), None);
    }
}
