//! Query strings: parsed with errors that name the offending parameter, an
//! empty value (`?status=`) meaning "not given", and no NUL characters (which
//! PostgreSQL cannot store or compare) reaching the database.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::json::shape_error;
use super::problem::{ApiError, FieldError};

/// Query parameters parsed into `T`.
pub struct QueryParams<T>(pub T);

impl<T> QueryParams<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for QueryParams<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for QueryParams<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(QueryParams))
    }
}

pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let invalid = |field: &str, message: &str| {
        ApiError::validation(vec![FieldError { field: field.to_owned(), message: message.to_owned() }])
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| invalid("query", "is not a valid query string"))?;
    if let Some((name, _)) = pairs.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(invalid(name, "must not contain NUL characters"));
    }
    // `_` is the cache buster some HTTP clients append (`?_=1700000000`).
    let given: Vec<(String, String)> = pairs.into_iter().filter(|(k, v)| !v.is_empty() && k != "_").collect();
    let encoded = serde_urlencoded::to_string(&given).map_err(ApiError::internal)?;
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let mut field = shape_error(&path, &error.into_inner().to_string());
        field.message = field.message.replace("known field", "known parameter");
        if field.field == "body" {
            field.field = "query".into();
        }
        // `-1` or `+5` says the same as `0`, not how an integer parser failed.
        if field.field == "limit" {
            field.message = super::paging::LIMIT_RULE.to_owned();
        }
        ApiError::validation(vec![field])
    })
}

/// An optional RFC 3339 instant that is still within years 0000–9999 in UTC
/// (extreme offsets at either end are not), refused at the edge otherwise.
pub mod utc_instant {
    use serde::{de::Error as _, Deserialize, Deserializer};
    use time::format_description::well_known::Rfc3339;
    use time::{OffsetDateTime, UtcOffset};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        let parsed = OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|_| D::Error::custom("must be an RFC 3339 date-time, e.g. 2026-01-31T09:00:00Z"))?;
        match parsed.checked_to_offset(UtcOffset::UTC) {
            Some(utc) if (0..=9999).contains(&utc.year()) => Ok(Some(utc)),
            _ => Err(D::Error::custom("is out of range")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Filter {
        limit: Option<u32>,
        status: Option<Status>,
        id: Option<uuid::Uuid>,
        q: Option<String>,
        #[serde(default, with = "utc_instant")]
        from: Option<time::OffsetDateTime>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Status {
        Ongoing,
    }

    fn field_of(query: &str) -> (String, String) {
        let error = parse::<Filter>(query).unwrap_err();
        let field = &error.errors.as_ref().unwrap()[0];
        (field.field.clone(), field.message.clone())
    }

    #[test]
    fn errors_name_the_parameter() {
        assert_eq!(field_of("limit=abc").0, "limit");
        assert_eq!(field_of("limit=-1"), ("limit".into(), "must be a whole number from 1 to 200".into()));
        assert_eq!(field_of("limit=+5"), ("limit".into(), "must be a whole number from 1 to 200".into()));
        assert_eq!(field_of("q=x&id=xyz").0, "id");
        assert_eq!(field_of("status=bogus").0, "status");
        assert_eq!(field_of("nope=1"), ("nope".into(), "is not a known parameter".into()));
        assert_eq!(field_of("q=a%00b"), ("q".into(), "must not contain NUL characters".into()));
        assert_eq!(field_of("from=yesterday").0, "from");
    }

    #[test]
    fn instants_must_exist_in_utc() {
        assert_eq!(field_of("from=9999-12-31T23:59:59-23:59"), ("from".into(), "is out of range".into()));
        assert_eq!(field_of("from=0000-01-01T00:00:00%2B23:59"), ("from".into(), "is out of range".into()));
        let parsed: Filter = parse("from=2026-01-31T10:00:00%2B01:00").unwrap();
        assert_eq!(parsed.from, Some(time::macros::datetime!(2026-01-31 09:00 UTC)));
    }

    #[test]
    fn empty_values_mean_not_given() {
        let parsed: Filter = parse("status=&limit=&q=ada").unwrap();
        assert_eq!(parsed, Filter { limit: None, status: None, id: None, q: Some("ada".into()), from: None });
        assert_eq!(parse::<Filter>("status=ongoing").unwrap().status, Some(Status::Ongoing));
        assert_eq!(parse::<Filter>("_=1700000000&q=ada").unwrap().q, Some("ada".into()));
    }
}
