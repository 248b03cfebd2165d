//! The audit hash chain: `hash = SHA-256(prev_hash ‖ canonical row)`, hex.
//! Each audit table is one chain, ordered by its `seq` (1, 2, 3, …). Changing,
//! removing or reordering a row breaks every link from there on.

use sha2::{Digest, Sha256};

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The link that follows `prev_hash` for a row whose canonical bytes are given.
pub fn link(prev_hash: &str, canonical: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(canonical);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored row as the verifier sees it.
pub struct Stored<Id> {
    pub id: Id,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub canonical: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<Id> {
    pub checked: u64,
    /// The first row whose link does not hold.
    pub first_bad: Option<Id>,
}

/// Checks rows one at a time, in `seq` order from the start of the chain,
/// keeping only the last link in memory.
pub struct Verifier<Id> {
    expected_prev: String,
    expected_seq: i64,
    checked: u64,
    first_bad: Option<Id>,
}

impl<Id> Default for Verifier<Id> {
    fn default() -> Self {
        Self { expected_prev: GENESIS.to_owned(), expected_seq: 1, checked: 0, first_bad: None }
    }
}

impl<Id> Verifier<Id> {
    /// Checks the next row; false once a link has failed (later rows are not looked at).
    pub fn push(&mut self, row: Stored<Id>) -> bool {
        if self.first_bad.is_some() {
            return false;
        }
        self.checked += 1;
        let ok = row.seq == self.expected_seq
            && row.prev_hash == self.expected_prev
            && link(&row.prev_hash, &row.canonical) == row.hash;
        if !ok {
            self.first_bad = Some(row.id);
            return false;
        }
        self.expected_prev = row.hash;
        self.expected_seq += 1;
        true
    }

    /// `seq` and hash of the last good row (0 and the genesis hash for none).
    pub fn last_link(&self) -> (i64, &str) {
        (self.expected_seq - 1, &self.expected_prev)
    }

    pub fn finish(self) -> Verdict<Id> {
        Verdict { checked: self.checked, first_bad: self.first_bad }
    }
}

/// Walks rows in `seq` order from the start of the chain (the store feeds a
/// [`Verifier`] in batches instead).
#[cfg(test)]
pub fn verify<Id>(rows: impl IntoIterator<Item = Stored<Id>>) -> Verdict<Id> {
    let mut verifier = Verifier::default();
    for row in rows {
        if !verifier.push(row) {
            break;
        }
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(rows: &[&str]) -> Vec<Stored<usize>> {
        let mut prev = GENESIS.to_owned();
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                let hash = link(&prev, row.as_bytes());
                let stored = Stored {
                    id: i,
                    seq: i as i64 + 1,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                    canonical: row.as_bytes().to_vec(),
                };
                prev = hash;
                stored
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(chain(&["a", "b", "c"])), Verdict { checked: 3, first_bad: None });
        assert_eq!(verify(Vec::<Stored<usize>>::new()), Verdict { checked: 0, first_bad: None });
    }

    #[test]
    fn an_edited_row_is_found() {
        let mut rows = chain(&["a", "b", "c"]);
        rows[1].canonical = b"B".to_vec();
        assert_eq!(verify(rows).first_bad, Some(1));
    }

    #[test]
    fn a_removed_row_breaks_the_next_link() {
        let mut rows = chain(&["a", "b", "c"]);
        rows.remove(1);
        assert_eq!(verify(rows).first_bad, Some(2));
    }

    #[test]
    fn a_rehashed_row_still_breaks_the_next_link() {
        let mut rows = chain(&["a", "b", "c"]);
        rows[1].canonical = b"B".to_vec();
        rows[1].hash = link(&rows[1].prev_hash, b"B");
        assert_eq!(verify(rows).first_bad, Some(2));
    }

    #[test]
    fn the_link_is_sha256_of_prev_and_row() {
        // SHA-256 of 64 '0' characters followed by "abc" (as `sha256sum` says).
        assert_eq!(link(GENESIS, b"abc"), "b64374d04ef9c4f39fddb1e0d6be38a0130f6c057fc0f4ee467ea0e18bc758f1");
        assert_ne!(link(GENESIS, b"abc"), link(GENESIS, b"abd"));
    }
}
