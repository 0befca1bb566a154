//! The SQL of appending to the chain: locking the head, inserting a batch and moving the
//! head, on PostgreSQL also as one compare-and-set statement.

use sqlx::Row;

use super::LOG_COLUMNS;
use crate::db::{Db, Dialect};
use crate::webhook_log::chain::Head;
use crate::webhook_log::model::LogEntry;

/// Reads the chain head and locks it until the transaction ends, so writers on every
/// instance append one after another. SQLite has no row locks; its `BEGIN IMMEDIATE`
/// already holds the database's only write lock.
pub async fn lock_head(tx: &mut sqlx::AnyConnection, db: &Db) -> Result<Head, sqlx::Error> {
    let sql = match db.dialect() {
        Dialect::Sqlite => db.sql("SELECT seq, hash FROM opshub_webhook_log_head WHERE id = 1"),
        _ => db.sql("SELECT seq, hash FROM opshub_webhook_log_head WHERE id = 1 FOR UPDATE"),
    };
    let r = sqlx::query(sql).fetch_one(&mut *tx).await?;
    Ok(Head {
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
    })
}

/// Inserts `rows` and moves the head to `head`. PostgreSQL gets the whole batch as one
/// JSON parameter in one statement (a single cached shape, one round trip, whatever the
/// batch size); the others use multi-row INSERTs and a separate head update.
pub async fn append(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    rows: &[LogEntry],
    head: &Head,
) -> Result<(), sqlx::Error> {
    if db.dialect() != Dialect::Postgres {
        insert_entries(tx, db, rows).await?;
        return set_head(tx, db, head).await;
    }
    sqlx::query(db.sql(
        "WITH batch AS (
           SELECT * FROM json_to_recordset(?::json) AS r(seq BIGINT, id TEXT, source TEXT,
             method TEXT, path TEXT, query TEXT, headers TEXT, body TEXT, content_type TEXT,
             body_size BIGINT, remote_addr TEXT, received_at TEXT, signature_status TEXT,
             signature_reason TEXT, prev_hash TEXT, hash TEXT)
         ), inserted AS (
           INSERT INTO opshub_webhook_log (seq, id, source, method, path, query, headers, body,
             content_type, body_size, remote_addr, received_at, signature_status,
             signature_reason, prev_hash, hash)
           SELECT seq, id, source, method, path, query, headers, decode(body, 'base64'),
             content_type, body_size, remote_addr, received_at, signature_status,
             signature_reason, prev_hash, hash FROM batch ORDER BY seq
         )
         UPDATE opshub_webhook_log_head SET seq = ?, hash = ? WHERE id = 1",
    ))
    .bind(batch_json(rows))
    .bind(head.seq)
    .bind(&head.hash)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// PostgreSQL, without a transaction: inserts `rows` and moves the head from `expected`
/// to `head` in one statement, only if the head is still `expected` (compare-and-set; a
/// concurrent mover makes the UPDATE match nothing, and then nothing is inserted). True
/// when the batch was stored.
pub async fn append_if_head(
    conn: &mut sqlx::AnyConnection,
    db: &Db,
    expected: &Head,
    rows: &[LogEntry],
    head: &Head,
) -> Result<bool, sqlx::Error> {
    let moved: i64 = sqlx::query(db.sql(
        "WITH moved AS (
           UPDATE opshub_webhook_log_head SET seq = ?, hash = ?
           WHERE id = 1 AND seq = ? AND hash = ? RETURNING id
         ), batch AS (
           SELECT * FROM json_to_recordset(?::json) AS r(seq BIGINT, id TEXT, source TEXT,
             method TEXT, path TEXT, query TEXT, headers TEXT, body TEXT, content_type TEXT,
             body_size BIGINT, remote_addr TEXT, received_at TEXT, signature_status TEXT,
             signature_reason TEXT, prev_hash TEXT, hash TEXT)
         ), inserted AS (
           INSERT INTO opshub_webhook_log (seq, id, source, method, path, query, headers, body,
             content_type, body_size, remote_addr, received_at, signature_status,
             signature_reason, prev_hash, hash)
           SELECT seq, id, source, method, path, query, headers, decode(body, 'base64'),
             content_type, body_size, remote_addr, received_at, signature_status,
             signature_reason, prev_hash, hash FROM batch
           WHERE EXISTS (SELECT 1 FROM moved) ORDER BY seq
         )
         SELECT COUNT(*) AS moved FROM moved",
    ))
    .bind(head.seq)
    .bind(&head.hash)
    .bind(expected.seq)
    .bind(&expected.hash)
    .bind(batch_json(rows))
    .fetch_one(&mut *conn)
    .await?
    .try_get("moved")?;
    Ok(moved > 0)
}

/// Rows as a JSON array of objects named like the columns, bodies in base64.
fn batch_json(rows: &[LogEntry]) -> String {
    use base64::Engine;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|e| {
            let c = &e.capture;
            serde_json::json!({
                "seq": e.seq, "id": c.id, "source": c.source, "method": c.method,
                "path": c.path, "query": c.query, "headers": c.headers,
                "body": base64::engine::general_purpose::STANDARD.encode(&c.body),
                "content_type": c.content_type, "body_size": e.body_size,
                "remote_addr": c.remote_addr, "received_at": c.received_at,
                "signature_status": c.signature_status, "signature_reason": c.signature_reason,
                "prev_hash": e.prev_hash, "hash": e.hash,
            })
        })
        .collect();
    serde_json::Value::from(items).to_string()
}

async fn set_head(tx: &mut sqlx::AnyConnection, db: &Db, head: &Head) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_webhook_log_head SET seq = ?, hash = ? WHERE id = 1"))
        .bind(head.seq)
        .bind(&head.hash)
        .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// Most rows per INSERT statement: 16 parameters each stays far below every backend's
/// limit. Statements hold a power-of-two number of rows, so a connection's statement cache
/// holds the eight shapes there are instead of preparing a new one for each batch size.
const ROWS_PER_INSERT: usize = 128;

/// Bytes of bodies per INSERT statement, below MySQL's default `max_allowed_packet`.
const BYTES_PER_INSERT: usize = 4 * 1024 * 1024;

/// Splits rows into runs that each fit one INSERT: by body bytes (a single larger row goes
/// alone), then into power-of-two counts up to [`ROWS_PER_INSERT`].
fn insert_chunks(rows: &[LogEntry]) -> Vec<&[LogEntry]> {
    let mut chunks = Vec::new();
    for run in by_bytes(rows) {
        chunks.extend(crate::db::pow2_chunks(run, ROWS_PER_INSERT));
    }
    chunks
}

fn by_bytes(rows: &[LogEntry]) -> Vec<&[LogEntry]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let len = row.capture.body.len();
        if i > start && bytes + len > BYTES_PER_INSERT {
            chunks.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// Inserts rows with multi-row INSERTs.
async fn insert_entries(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    rows: &[LogEntry],
) -> Result<(), sqlx::Error> {
    for chunk in insert_chunks(rows) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()];
        let sql = format!(
            "INSERT INTO opshub_webhook_log ({LOG_COLUMNS}) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(db.sql_dynamic(&sql));
        for e in chunk {
            let c = &e.capture;
            q = q
                .bind(e.seq)
                .bind(&c.id)
                .bind(&c.source)
                .bind(&c.method)
                .bind(&c.path)
                .bind(&c.query)
                .bind(&c.headers)
                .bind(&c.body)
                .bind(&c.content_type)
                .bind(e.body_size)
                .bind(&c.remote_addr)
                .bind(&c.received_at)
                .bind(&c.signature_status)
                .bind(&c.signature_reason)
                .bind(&e.prev_hash)
                .bind(&e.hash);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook_log::chain::{Head, link};
    use crate::webhook_log::model::Capture;

    fn rows(sizes: &[usize]) -> Vec<LogEntry> {
        let captures = sizes
            .iter()
            .map(|&n| Capture {
                id: String::new(),
                source: String::new(),
                method: String::new(),
                path: String::new(),
                query: None,
                headers: String::new(),
                body: vec![0; n],
                content_type: None,
                remote_addr: String::new(),
                received_at: String::new(),
                signature_status: String::new(),
                signature_reason: None,
            })
            .collect();
        link(&Head::genesis(), captures).0
    }

    #[test]
    fn insert_chunks_respect_row_count_and_body_bytes() {
        let lens = |c: Vec<&[LogEntry]>| c.iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(
            lens(insert_chunks(&rows(&[1; 450]))),
            vec![128, 128, 128, 64, 2]
        );
        assert_eq!(lens(insert_chunks(&rows(&[1; 7]))), vec![4, 2, 1]);
        let mib = 1024 * 1024;
        assert_eq!(
            lens(insert_chunks(&rows(&[mib, mib, mib, 2 * mib, 1]))),
            vec![2, 1, 2]
        );
        assert_eq!(lens(insert_chunks(&rows(&[5 * mib, 5 * mib]))), vec![1, 1]);
        assert!(insert_chunks(&[]).is_empty());
    }
}
