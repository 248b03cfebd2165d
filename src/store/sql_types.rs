//! Two SQL types diesel's `MultiConnection` does not know: a UUID and an instant
//! in time. PostgreSQL stores them natively (`uuid`, `timestamptz`); SQLite as
//! TEXT in a fixed-width form, so text order equals time/byte order and the same
//! comparisons work on both backends. Rust values cross the boundary as the
//! newtypes `DbUuid` and `DbTime` (orphan rules forbid implementing diesel's
//! traits on `uuid::Uuid` and `OffsetDateTime` for our own SQL types).

use std::io::Write;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{HasSqlType, SqlType};
use diesel::sqlite::{Sqlite, SqliteValue};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid as RustUuid;

use super::pool::MultiBackend;

/// `uuid` on PostgreSQL, hyphenated lowercase TEXT on SQLite.
#[derive(SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy, Default)]
#[diesel(postgres_type(oid = 2950, array_oid = 2951))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Uuid;

/// An instant: `timestamptz` on PostgreSQL, `YYYY-MM-DDTHH:MM:SS.ffffffZ` TEXT on SQLite.
#[derive(SqlType, diesel::query_builder::QueryId, Debug, Clone, Copy, Default)]
#[diesel(postgres_type(oid = 1184, array_oid = 1185))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Instant;

const SQLITE_TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Formats an instant the way the SQLite store keeps it.
pub fn sqlite_time_text(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC).format(SQLITE_TIME_FORMAT).expect("formatting a UTC instant cannot fail")
}

/// A UUID as stored; dereferences to `uuid::Uuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Uuid)]
pub struct DbUuid(pub RustUuid);

/// An instant as stored; dereferences to `time::OffsetDateTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Instant)]
pub struct DbTime(pub OffsetDateTime);

macro_rules! newtype_conversions {
    ($wrapper:ident, $inner:ty) => {
        impl std::ops::Deref for $wrapper {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }
        impl From<$inner> for $wrapper {
            fn from(value: $inner) -> Self {
                Self(value)
            }
        }
        impl From<$wrapper> for $inner {
            fn from(value: $wrapper) -> Self {
                value.0
            }
        }
    };
}

newtype_conversions!(DbUuid, RustUuid);
newtype_conversions!(DbTime, OffsetDateTime);

macro_rules! multi_backend_type {
    ($sql:ident, $rust:ty) => {
        impl HasSqlType<$sql> for MultiBackend {
            fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
                MultiBackend::lookup_sql_type::<$sql>(lookup)
            }
        }
        impl ToSql<$sql, MultiBackend> for $rust {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
                out.set_value(($sql, self));
                Ok(IsNull::No)
            }
        }
        impl FromSql<$sql, MultiBackend> for $rust {
            fn from_sql(bytes: <MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                bytes.from_sql::<Self, $sql>()
            }
        }
    };
}

multi_backend_type!(Uuid, DbUuid);
multi_backend_type!(Instant, DbTime);

impl ToSql<Uuid, Pg> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Uuid, Pg> for DbUuid {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Self(RustUuid::from_slice(value.as_bytes())?))
    }
}

impl ToSql<Uuid, Sqlite> for DbUuid {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<Uuid, Sqlite> for DbUuid {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)?;
        Ok(Self(RustUuid::parse_str(&text)?))
    }
}

impl ToSql<Instant, Pg> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // Floor, as the SQLite text does: the same instant on both backends, before 1970 too.
        let unix_micros = i64::try_from(self.0.unix_timestamp_nanos().div_euclid(1_000))?;
        out.write_all(&(unix_micros - PG_EPOCH_OFFSET_MICROS).to_be_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Instant, Pg> for DbTime {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let bytes: [u8; 8] = value.as_bytes().try_into().map_err(|_| "timestamptz value is not 8 bytes")?;
        let unix_micros = i64::from_be_bytes(bytes) + PG_EPOCH_OFFSET_MICROS;
        Ok(Self(OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1_000)?))
    }
}

impl ToSql<Instant, Sqlite> for DbTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_time_text(self.0));
        Ok(IsNull::No)
    }
}

impl FromSql<Instant, Sqlite> for DbTime {
    fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<diesel::sql_types::Text, Sqlite>>::from_sql(value)?;
        Ok(Self(time::PrimitiveDateTime::parse(&text, SQLITE_TIME_FORMAT)?.assume_utc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn sqlite_text_sorts_like_time() {
        let early = datetime!(2026-01-02 03:04:05.000007 UTC);
        let late = datetime!(2026-01-02 03:04:05.000010 UTC);
        assert!(sqlite_time_text(early) < sqlite_time_text(late));
        assert_eq!(sqlite_time_text(early), "2026-01-02T03:04:05.000007Z");
    }
}
