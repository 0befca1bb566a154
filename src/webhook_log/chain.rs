//! The hash chain: `hash = SHA-256(prevHash ‖ canonical row)`, hex, with the first row's
//! `prevHash` being 64 zeros. The canonical row is a length-prefixed encoding of every
//! stored field in a fixed order (docs/webhook-log.md), so no field can bleed into another
//! and a null differs from an empty string. Pure: linking and checking, no I/O.

use sha2::{Digest, Sha256};

use super::model::{Capture, LogEntry};

/// The `prevHash` of the first row ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain stands: the last seq and its hash (or a checkpoint's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    pub fn genesis() -> Head {
        Head {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Appends one field: a presence byte, then (if present) its length as 8 bytes big-endian
/// and its bytes.
fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// The canonical encoding of a row at `seq` (everything stored except the two hashes).
pub fn canonical(seq: i64, c: &Capture) -> Vec<u8> {
    let mut out = Vec::with_capacity(c.body.len() + c.headers.len() + 256);
    out.extend_from_slice(b"opshub-webhook-log-v1");
    let seq_text = seq.to_string();
    let size_text = c.body.len().to_string();
    let fields: [Option<&[u8]>; 14] = [
        Some(seq_text.as_bytes()),
        Some(c.id.as_bytes()),
        Some(c.source.as_bytes()),
        Some(c.method.as_bytes()),
        Some(c.path.as_bytes()),
        c.query.as_deref().map(str::as_bytes),
        Some(c.headers.as_bytes()),
        Some(&c.body),
        c.content_type.as_deref().map(str::as_bytes),
        Some(size_text.as_bytes()),
        Some(c.remote_addr.as_bytes()),
        Some(c.received_at.as_bytes()),
        Some(c.signature_status.as_bytes()),
        c.signature_reason.as_deref().map(str::as_bytes),
    ];
    for f in fields {
        field(&mut out, f);
    }
    out
}

/// `SHA-256(prev_hash ‖ canonical row)` as lowercase hex; `prev_hash` enters as its hex text.
pub fn row_hash(prev_hash: &str, seq: i64, c: &Capture) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical(seq, c));
    hex::encode(h.finalize())
}

/// Gives each capture, in order, the next seq and its hashes; returns the rows and the new
/// head.
pub fn link(head: &Head, captures: Vec<Capture>) -> (Vec<LogEntry>, Head) {
    let mut seq = head.seq;
    let mut prev = head.hash.clone();
    let rows: Vec<LogEntry> = captures
        .into_iter()
        .map(|capture| {
            seq += 1;
            let hash = row_hash(&prev, seq, &capture);
            LogEntry {
                seq,
                body_size: capture.body.len() as i64,
                capture,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect();
    (rows, Head { seq, hash: prev })
}

/// What is wrong with a row, checked against the row before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// Rows are missing: `seq` was expected but a later one came.
    Missing { seq: i64 },
    /// The row's `prevHash` is not the previous row's hash.
    PrevHash { seq: i64 },
    /// The row's content no longer hashes to its stored `hash`.
    Content { seq: i64 },
}

impl Break {
    pub fn seq(&self) -> i64 {
        match self {
            Break::Missing { seq } | Break::PrevHash { seq } | Break::Content { seq } => *seq,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Break::Missing { seq } => format!("row {seq} is missing"),
            Break::PrevHash { seq } => {
                format!("row {seq}'s prevHash is not the hash of the row before it")
            }
            Break::Content { seq } => format!("row {seq} was changed: its hash does not match"),
        }
    }
}

/// Checks `row` as the successor of `at`; on success `at` moves to it.
pub fn check_next(at: &mut Head, row: &LogEntry) -> Result<(), Break> {
    let expected = at.seq + 1;
    if row.seq != expected {
        return Err(Break::Missing { seq: expected });
    }
    if row.prev_hash != at.hash {
        return Err(Break::PrevHash { seq: row.seq });
    }
    let size_matches = usize::try_from(row.body_size).ok() == Some(row.capture.body.len());
    if !size_matches || row_hash(&row.prev_hash, row.seq, &row.capture) != row.hash {
        return Err(Break::Content { seq: row.seq });
    }
    *at = Head {
        seq: row.seq,
        hash: row.hash.clone(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(body: &[u8]) -> Capture {
        Capture {
            id: "0190".into(),
            source: "s".into(),
            method: "POST".into(),
            path: "/".into(),
            query: None,
            headers: "[]".into(),
            body: body.to_vec(),
            content_type: None,
            remote_addr: "127.0.0.1:1".into(),
            received_at: "2026-01-01T00:00:00.000000Z".into(),
            signature_status: "unchecked".into(),
            signature_reason: None,
        }
    }

    #[test]
    fn links_rows_in_order_from_the_head() {
        let (rows, head) = link(&Head::genesis(), vec![capture(b"a"), capture(b"b")]);
        assert_eq!(rows[0].seq, 1);
        assert_eq!(rows[0].prev_hash, GENESIS);
        assert_eq!(rows[1].prev_hash, rows[0].hash);
        assert_eq!(head.seq, 2);
        assert_eq!(head.hash, rows[1].hash);
        let mut at = Head::genesis();
        for r in &rows {
            check_next(&mut at, r).expect("intact chain");
        }
    }

    #[test]
    fn detects_edits_gaps_and_relinks() {
        let (rows, _) = link(
            &Head::genesis(),
            vec![capture(b"a"), capture(b"b"), capture(b"c")],
        );
        let mut edited = rows[1].clone();
        edited.capture.body = b"B".to_vec();
        let mut at = Head::genesis();
        check_next(&mut at, &rows[0]).expect("first");
        assert_eq!(
            check_next(&mut at.clone(), &edited),
            Err(Break::Content { seq: 2 })
        );
        assert_eq!(
            check_next(&mut at.clone(), &rows[2]),
            Err(Break::Missing { seq: 2 })
        );
        let mut relinked = rows[1].clone();
        relinked.prev_hash = GENESIS.into();
        assert_eq!(
            check_next(&mut at, &relinked),
            Err(Break::PrevHash { seq: 2 })
        );
    }

    #[test]
    fn null_and_empty_fields_hash_differently() {
        let mut a = capture(b"");
        let mut b = capture(b"");
        a.query = None;
        b.query = Some(String::new());
        assert_ne!(row_hash(GENESIS, 1, &a), row_hash(GENESIS, 1, &b));
        // Moving a byte from one field to the next changes the encoding too.
        a.query = Some("ab".into());
        a.content_type = Some("c".into());
        b.query = Some("a".into());
        b.content_type = Some("bc".into());
        assert_ne!(canonical(1, &a), canonical(1, &b));
    }
}
