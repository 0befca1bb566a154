//! SQL for the webhook log's tables, and nothing else. Source secrets arrive and leave
//! here encrypted; the chain is computed by the caller. Appending a batch (the writer's
//! SQL) is in `append.rs`.

mod append;

pub use append::{append, append_if_head, lock_head};

use sqlx::Row;

use super::chain::Head;
use super::model::{Capture, LogEntry, LogFilter, Source};
use super::replay::Replay;
use crate::db::{AnyRow, Db, Dialect, flag};

const SOURCE_COLUMNS: &str = "id, name, verifier, secret, redact_headers, max_body_bytes, \
     reject_invalid, created_at, updated_at";

/// A source with its stored (encrypted) secret.
pub type StoredSource = (Source, Option<String>);

fn source_from_row(r: &AnyRow) -> Result<StoredSource, sqlx::Error> {
    let verifier: String = r.try_get("verifier")?;
    let redact: String = r.try_get("redact_headers")?;
    let secret: Option<String> = r.try_get("secret")?;
    let source = Source {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        verifier: verifier
            .parse()
            .map_err(|e: super::verify::UnknownVerifier| sqlx::Error::Decode(e.into()))?,
        has_secret: secret.is_some(),
        redact_headers: serde_json::from_str(&redact).map_err(|e| sqlx::Error::Decode(e.into()))?,
        max_body_bytes: r.try_get("max_body_bytes")?,
        reject_invalid: r.try_get::<i16, _>("reject_invalid")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    };
    Ok((source, secret))
}

pub async fn insert_source(db: &Db, s: &Source, secret: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_ingest_sources (id, name, verifier, secret, redact_headers,
         max_body_bytes, reject_invalid, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(&s.id)
    .bind(&s.name)
    .bind(s.verifier.as_str())
    .bind(secret)
    .bind(serde_json::Value::from(s.redact_headers.clone()).to_string())
    .bind(s.max_body_bytes)
    .bind(flag(s.reject_invalid))
    .bind(&s.created_at)
    .bind(&s.updated_at)
    .execute(db.pool())
    .await
    .map(|_| ())
}

pub async fn update_source(db: &Db, s: &Source, secret: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_ingest_sources SET name = ?, verifier = ?, secret = ?, redact_headers = ?,
         max_body_bytes = ?, reject_invalid = ?, updated_at = ? WHERE id = ?",
    ))
    .bind(&s.name)
    .bind(s.verifier.as_str())
    .bind(secret)
    .bind(serde_json::Value::from(s.redact_headers.clone()).to_string())
    .bind(s.max_body_bytes)
    .bind(flag(s.reject_invalid))
    .bind(&s.updated_at)
    .bind(&s.id)
    .execute(db.pool())
    .await
    .map(|_| ())
}

/// The source whose id or name is `key`.
pub async fn find_source(db: &Db, key: &str) -> Result<Option<StoredSource>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {SOURCE_COLUMNS} FROM opshub_ingest_sources WHERE id = ? OR name = ?"
    ));
    let row = sqlx::query(sql)
        .bind(key)
        .bind(key)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(source_from_row).transpose()
}

/// Sources with name after `after`, by name.
pub async fn list_sources(
    db: &Db,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Source>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {SOURCE_COLUMNS} FROM opshub_ingest_sources WHERE name > ? ORDER BY name LIMIT {limit}"
    ));
    let rows = sqlx::query(sql)
        .bind(after.unwrap_or(""))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| source_from_row(r).map(|(s, _)| s))
        .collect()
}

pub async fn delete_source(db: &Db, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(db.sql("DELETE FROM opshub_ingest_sources WHERE id = ?"))
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) const LOG_COLUMNS: &str = "seq, id, source, method, path, query, headers, body, content_type, \
     body_size, remote_addr, received_at, signature_status, signature_reason, prev_hash, hash";
/// What a list shows: everything but the body.
const LIST_COLUMNS: &str = "seq, id, source, method, path, query, headers, content_type, \
     body_size, remote_addr, received_at, signature_status, signature_reason, prev_hash, hash";
fn entry_from_row(r: &AnyRow) -> Result<LogEntry, sqlx::Error> {
    let mut e = entry_without_body(r)?;
    e.capture.body = r.try_get("body")?;
    Ok(e)
}

fn entry_without_body(r: &AnyRow) -> Result<LogEntry, sqlx::Error> {
    Ok(LogEntry {
        seq: r.try_get("seq")?,
        body_size: r.try_get("body_size")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        capture: Capture {
            id: r.try_get("id")?,
            source: r.try_get("source")?,
            method: r.try_get("method")?,
            path: r.try_get("path")?,
            query: r.try_get("query")?,
            headers: r.try_get("headers")?,
            body: Vec::new(),
            content_type: r.try_get("content_type")?,
            remote_addr: r.try_get("remote_addr")?,
            received_at: r.try_get("received_at")?,
            signature_status: r.try_get("signature_status")?,
            signature_reason: r.try_get("signature_reason")?,
        },
    })
}

pub async fn find_entry(db: &Db, id: &str) -> Result<Option<LogEntry>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {LOG_COLUMNS} FROM opshub_webhook_log WHERE id = ?"
    ));
    let row = sqlx::query(sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(entry_from_row).transpose()
}

/// Rows with seq > `after`, oldest first (for verification).
pub async fn entries_after(db: &Db, after: i64, limit: u32) -> Result<Vec<LogEntry>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {LOG_COLUMNS} FROM opshub_webhook_log WHERE seq > ? ORDER BY seq LIMIT {limit}"
    ));
    let rows = sqlx::query(sql).bind(after).fetch_all(db.pool()).await?;
    rows.iter().map(entry_from_row).collect()
}

/// Rows matching `f` with seq < `before`, newest first. The body is left out (empty).
pub async fn list_entries(
    db: &Db,
    f: &LogFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<LogEntry>, sqlx::Error> {
    let mut sql = format!("SELECT {LIST_COLUMNS} FROM opshub_webhook_log WHERE seq < ?");
    let text_clauses = [
        (&f.source, " AND source = ?"),
        (&f.method, " AND method = ?"),
        (&f.from, " AND received_at >= ?"),
        (&f.to, " AND received_at < ?"),
        (&f.signature_status, " AND signature_status = ?"),
    ];
    for (value, clause) in &text_clauses {
        if value.is_some() {
            sql.push_str(clause);
        }
    }
    if f.body_contains.is_some() {
        // A byte search in a BLOB is spelled differently by each backend.
        sql.push_str(match db.dialect() {
            Dialect::Sqlite => " AND instr(body, ?) > 0",
            Dialect::Postgres => " AND position(? IN body) > 0",
            Dialect::Mysql => " AND LOCATE(?, body) > 0",
        });
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
    let mut q = sqlx::query(db.sql_dynamic(&sql)).bind(before.unwrap_or(i64::MAX));
    for (value, _) in text_clauses {
        if let Some(v) = value {
            q = q.bind(v.clone());
        }
    }
    if let Some(needle) = &f.body_contains {
        q = q.bind(needle.clone());
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter().map(entry_without_body).collect()
}

pub async fn read_head(db: &Db) -> Result<Head, sqlx::Error> {
    let r = sqlx::query(db.sql("SELECT seq, hash FROM opshub_webhook_log_head WHERE id = 1"))
        .fetch_one(db.pool())
        .await?;
    Ok(Head {
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
    })
}

/// The newest prune checkpoint, if any: where verification starts.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<Head>, sqlx::Error> {
    let row = sqlx::query(
        db.sql("SELECT seq, hash FROM opshub_webhook_log_checkpoints ORDER BY seq DESC LIMIT 1"),
    )
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Head {
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
        })
    })
    .transpose()
}

/// The smallest seq received at or after `before`, if any.
pub async fn first_seq_from(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    before: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let r =
        sqlx::query(db.sql("SELECT MIN(seq) AS s FROM opshub_webhook_log WHERE received_at >= ?"))
            .bind(before)
            .fetch_one(&mut *tx)
            .await?;
    r.try_get("s")
}

/// The stored hash of row `seq`, if it exists.
pub async fn hash_of(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    seq: i64,
) -> Result<Option<String>, sqlx::Error> {
    let r = sqlx::query(db.sql("SELECT hash FROM opshub_webhook_log WHERE seq = ?"))
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
    r.map(|r| r.try_get("hash")).transpose()
}

/// Records a checkpoint at `at`, then deletes every row up to it (the triggers allow
/// exactly those). Returns the number of rows deleted.
pub async fn checkpoint_and_delete(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    at: &Head,
    before: &str,
    count: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_webhook_log_checkpoints (seq, hash, pruned_rows, before_ts, created_at)
         VALUES (?, ?, ?, ?, ?)",
    ))
    .bind(at.seq)
    .bind(&at.hash)
    .bind(count)
    .bind(before)
    .bind(crate::db::time::now())
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(db.sql("DELETE FROM opshub_webhook_log WHERE seq <= ?"))
        .bind(at.seq)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected())
}

pub async fn count_upto(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    seq: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql("SELECT COUNT(*) AS n FROM opshub_webhook_log WHERE seq <= ?"))
        .bind(seq)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")
}

pub async fn insert_replay(db: &Db, r: &Replay) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_webhook_log_replays (id, log_id, url, status, error, duration_ms, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(&r.id)
    .bind(&r.log_id)
    .bind(&r.url)
    .bind(r.status.map(i64::from))
    .bind(&r.error)
    .bind(r.duration_ms)
    .bind(&r.created_at)
    .execute(db.pool())
    .await
    .map(|_| ())
}

pub async fn list_replays(db: &Db, log_id: &str) -> Result<Vec<Replay>, sqlx::Error> {
    let rows = sqlx::query(db.sql(
        "SELECT id, log_id, url, status, error, duration_ms, created_at
         FROM opshub_webhook_log_replays WHERE log_id = ? ORDER BY id",
    ))
    .bind(log_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Replay {
                id: r.try_get("id")?,
                log_id: r.try_get("log_id")?,
                url: r.try_get("url")?,
                status: r
                    .try_get::<Option<i64>, _>("status")?
                    .and_then(|s| u16::try_from(s).ok()),
                error: r.try_get("error")?,
                duration_ms: r.try_get("duration_ms")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}
