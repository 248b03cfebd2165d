//! Keyset paging: `?limit=&cursor=` → `{items, next_cursor}`. The cursor is the
//! opaque, URL-safe encoding of the list it belongs to and the last item's id
//! (ids are UUIDv7, so id order is creation order and pages stay stable while
//! rows are inserted) or sequence number (audit rows).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use super::problem::ApiError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// What a `limit` must be, said the same whatever was wrong with it.
pub const LIMIT_RULE: &str = "must be a whole number from 1 to 200";

/// Which list a cursor belongs to: a cursor is only accepted by its own list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum List {
    Users = 1,
    Organizations = 2,
    Impersonations = 3,
    SessionsOfMe = 4,
    RequestLog = 5,
    Events = 6,
}

pub struct Page {
    list: List,
    pub limit: i64,
    pub before_id: Option<Uuid>,
    /// For lists ordered by a sequence number (audit rows).
    pub before_seq: Option<i64>,
}

impl Page {
    /// For lists ordered by id (newest first).
    pub fn by_id(list: List, limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let before_id = cursor
            .map(|c| decode_cursor(list, c, 16))
            .transpose()?
            .map(|bytes| Uuid::from_slice(&bytes).map_err(|_| bad_cursor()));
        Ok(Self { list, limit: parse_limit(limit)?, before_id: before_id.transpose()?, before_seq: None })
    }

    /// For lists ordered by sequence number (audit rows, newest first).
    pub fn by_seq(list: List, limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let before_seq = cursor.map(|c| decode_cursor(list, c, 8)).transpose()?.map(|bytes| {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&bytes);
            i64::from_be_bytes(seq)
        });
        Ok(Self { list, limit: parse_limit(limit)?, before_id: None, before_seq })
    }

    /// Rows are fetched with one extra to learn whether another page exists.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Trims the extra row and returns the cursor of the next page, if any.
    pub fn finish<T>(&self, rows: &mut Vec<T>, id_of: impl Fn(&T) -> Uuid) -> Option<String> {
        if rows.len() as i64 <= self.limit {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|last| encode_cursor(self.list, id_of(last).as_bytes()))
    }

    /// Like `finish`, for lists ordered by sequence number.
    pub fn finish_seq<T>(&self, rows: &mut Vec<T>, seq_of: impl Fn(&T) -> i64) -> Option<String> {
        if rows.len() as i64 <= self.limit {
            return None;
        }
        rows.truncate(self.limit as usize);
        rows.last().map(|last| encode_cursor(self.list, &seq_of(last).to_be_bytes()))
    }
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_field("cursor", "is not a cursor returned by this list")
}

fn parse_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(i64::from(limit))
    } else {
        Err(ApiError::invalid_field("limit", LIMIT_RULE))
    }
}

fn encode_cursor(list: List, position: &[u8]) -> String {
    let mut bytes = vec![list as u8];
    bytes.extend_from_slice(position);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `len` position bytes of a cursor of `list`, URL-safe base64.
fn decode_cursor(list: List, cursor: &str, len: usize) -> Result<Vec<u8>, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok().filter(|b| b.len() == len + 1 && b[0] == list as u8);
    bytes.map(|b| b[1..].to_vec()).ok_or_else(bad_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_pages_trim() {
        let page = Page::by_id(List::Users, Some(2), None).unwrap();
        let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let mut rows = ids.to_vec();
        let cursor = page.finish(&mut rows, |id| *id).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(Page::by_id(List::Users, Some(2), Some(&cursor)).unwrap().before_id, Some(ids[1]));
        // Another list's cursor, even of the same shape, is refused.
        assert!(Page::by_id(List::Impersonations, Some(2), Some(&cursor)).is_err());
        let mut last_page = vec![ids[2]];
        assert_eq!(page.finish(&mut last_page, |id| *id), None);
    }

    #[test]
    fn bad_limits_and_cursors_are_validation_errors() {
        assert!(Page::by_id(List::Users, Some(0), None).is_err());
        assert!(Page::by_id(List::Users, Some(201), None).is_err());
        assert!(Page::by_id(List::Users, None, Some("not-a-cursor")).is_err());
        // A cursor of the other kind of list is refused, not ignored.
        let mut rows = vec![3_i64, 2, 1];
        let seq_cursor = Page::by_seq(List::Events, Some(1), None).unwrap().finish_seq(&mut rows, |s| *s).unwrap();
        assert!(Page::by_id(List::Users, None, Some(&seq_cursor)).is_err());
        assert!(Page::by_seq(List::RequestLog, None, Some(&seq_cursor)).is_err());
        assert_eq!(Page::by_seq(List::Events, None, Some(&seq_cursor)).unwrap().before_seq, Some(3));
    }
}
