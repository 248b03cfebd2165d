//! Keyset paging: `?limit=&cursor=` → `{items, next_cursor}`. The cursor is the
//! opaque, URL-safe encoding of the last item's id (ids are UUIDv7, so id order
//! is creation order and pages stay stable while rows are inserted).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use super::problem::ApiError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

pub struct Page {
    pub limit: i64,
    pub before_id: Option<Uuid>,
}

impl Page {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field("limit", format!("must be from 1 to {MAX_LIMIT}")));
        }
        let before_id = cursor.map(decode_cursor).transpose()?;
        Ok(Self { limit: i64::from(limit), before_id })
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
        rows.last().map(|last| URL_SAFE_NO_PAD.encode(id_of(last).as_bytes()))
    }
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::invalid_field("cursor", "is not a cursor returned by this list"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_pages_trim() {
        let page = Page::parse(Some(2), None).unwrap();
        let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let mut rows = ids.to_vec();
        let cursor = page.finish(&mut rows, |id| *id).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(Page::parse(Some(2), Some(&cursor)).unwrap().before_id, Some(ids[1]));
        let mut last_page = vec![ids[2]];
        assert_eq!(page.finish(&mut last_page, |id| *id), None);
    }

    #[test]
    fn bad_limits_and_cursors_are_validation_errors() {
        assert!(Page::parse(Some(0), None).is_err());
        assert!(Page::parse(Some(201), None).is_err());
        assert!(Page::parse(None, Some("not-a-cursor")).is_err());
    }
}
