//! SQL for the key-value tables, and nothing else. Writers call [`next_revision`] first: its
//! row lock serialises every KV write, so revisions commit in increasing order and a reader
//! of `revision > N` can never miss a later-committing lower revision.

use sqlx::{Any, AnyConnection, Executor, Row};

use super::model::Entry;
use crate::db::{AnyRow, Db, Dialect, flag};

const ENTRY_COLUMNS: &str = "key_name, type, value, secret_ct, is_active, is_cached, description, \
     version, revision, deleted, updated_at, updated_by";

fn from_row(r: &AnyRow) -> Result<Entry, sqlx::Error> {
    let ty: String = r.try_get("type")?;
    Ok(Entry {
        key: r.try_get("key_name")?,
        value_type: ty.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        value: r.try_get("value")?,
        secret_ct: r.try_get("secret_ct")?,
        is_active: r.try_get::<i64, _>("is_active")? != 0,
        is_cached: r.try_get::<i64, _>("is_cached")? != 0,
        description: r.try_get("description")?,
        version: r.try_get("version")?,
        revision: r.try_get("revision")?,
        deleted: r.try_get::<i64, _>("deleted").unwrap_or(0) != 0,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

/// Takes the write lock and returns the revision this write gets.
pub async fn next_revision(db: &Db, conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_kv_revision SET revision = revision + 1 WHERE id = 1"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(db.sql("SELECT revision FROM opshub_kv_revision WHERE id = 1"))
        .fetch_one(&mut *conn)
        .await?
        .try_get("revision")
}

/// The latest revision (cheap: one row), for pollers.
pub async fn current_revision(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql("SELECT revision FROM opshub_kv_revision WHERE id = 1"))
        .fetch_one(db.pool())
        .await?
        .try_get("revision")
}

/// The current row of `key`, tombstones included.
pub async fn find<'c>(
    db: &Db,
    exec: impl Executor<'c, Database = Any>,
    key: &str,
) -> Result<Option<Entry>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {ENTRY_COLUMNS} FROM opshub_kv WHERE key_name = ?"
    ));
    let row = sqlx::query(sql).bind(key).fetch_optional(exec).await?;
    row.as_ref().map(from_row).transpose()
}

/// Live (not deleted) entries whose key starts with `prefix`, after `after`, in key order.
pub async fn list(
    db: &Db,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Entry>, sqlx::Error> {
    // SUBSTR, not LIKE: keys contain `_` (a LIKE wildcard), and SQLite's LIKE ignores case.
    let sql = db.sql_dynamic(&format!(
        "SELECT {ENTRY_COLUMNS} FROM opshub_kv
         WHERE deleted = 0 AND SUBSTR(key_name, 1, ?) = ? AND key_name > ?
         ORDER BY key_name LIMIT {limit}"
    ));
    let rows = sqlx::query(sql)
        .bind(i32::try_from(prefix.len()).unwrap_or(i32::MAX)) // PostgreSQL substr takes int4
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// How many live (not deleted) keys there are.
pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql("SELECT COUNT(*) AS n FROM opshub_kv WHERE deleted = 0"))
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}

/// Inserts or replaces the current row of `e.key`.
pub async fn upsert(
    db: &Db,
    conn: &mut AnyConnection,
    e: &Entry,
    exists: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = if exists {
        db.sql(
            "UPDATE opshub_kv SET type = ?, value = ?, secret_ct = ?, is_active = ?, is_cached = ?,
             description = ?, version = ?, revision = ?, deleted = ?, updated_at = ?, updated_by = ?
             WHERE key_name = ?",
        )
    } else {
        db.sql(
            "INSERT INTO opshub_kv (type, value, secret_ct, is_active, is_cached, description,
             version, revision, deleted, updated_at, updated_by, key_name, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
    };
    let q = sqlx::query(sql)
        .bind(e.value_type.as_str())
        .bind(e.value.clone())
        .bind(e.secret_ct.clone())
        .bind(flag(e.is_active))
        .bind(flag(e.is_cached))
        .bind(e.description.clone())
        .bind(e.version)
        .bind(e.revision)
        .bind(flag(e.deleted))
        .bind(e.updated_at.clone())
        .bind(e.updated_by.clone())
        .bind(e.key.clone());
    let q = if exists { q } else { q.bind(now.to_string()) };
    q.execute(conn).await.map(|_| ())
}

/// Appends the history row of a change; `op` is put, delete or rollback.
pub async fn insert_history(
    db: &Db,
    conn: &mut AnyConnection,
    e: &Entry,
    op: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_kv_history (key_name, version, revision, op, type, value, secret_ct,
         is_active, is_cached, description, at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(e.key.clone())
    .bind(e.version)
    .bind(e.revision)
    .bind(op)
    .bind(e.value_type.as_str())
    .bind(e.value.clone())
    .bind(e.secret_ct.clone())
    .bind(flag(e.is_active))
    .bind(flag(e.is_cached))
    .bind(e.description.clone())
    .bind(e.updated_at.clone())
    .bind(e.updated_by.clone())
    .execute(conn)
    .await
    .map(|_| ())
}

const HISTORY_COLUMNS: &str = "key_name, type, value, secret_ct, is_active, is_cached, description, \
     version, revision, at AS updated_at, actor AS updated_by, op";

/// History of `key`, newest first, versions below `before`.
pub async fn history(
    db: &Db,
    key: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<(Entry, String)>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {HISTORY_COLUMNS} FROM opshub_kv_history WHERE key_name = ? AND version < ?
         ORDER BY version DESC LIMIT {limit}"
    ));
    let rows = sqlx::query(sql)
        .bind(key)
        .bind(before.unwrap_or(i64::MAX))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((from_row(r)?, r.try_get("op")?)))
        .collect()
}

/// One version of `key` from history.
pub async fn history_version<'c>(
    db: &Db,
    exec: impl Executor<'c, Database = Any>,
    key: &str,
    version: i64,
) -> Result<Option<Entry>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {HISTORY_COLUMNS} FROM opshub_kv_history WHERE key_name = ? AND version = ?"
    ));
    let row = sqlx::query(sql)
        .bind(key)
        .bind(version)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Changes after `since`, in revision order: (entry as of that change, op).
pub async fn changes_since(
    db: &Db,
    since: i64,
    limit: u32,
) -> Result<Vec<(Entry, String)>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {HISTORY_COLUMNS} FROM opshub_kv_history WHERE revision > ? ORDER BY revision LIMIT {limit}"
    ));
    let rows = sqlx::query(sql).bind(since).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| Ok((from_row(r)?, r.try_get("op")?)))
        .collect()
}

/// Tells other instances that `key` changed. PostgreSQL only (LISTEN/NOTIFY); delivered at
/// commit, never on rollback. Others learn through the revision poller.
pub async fn notify(
    db: &Db,
    conn: &mut AnyConnection,
    revision: i64,
    key: &str,
) -> Result<(), sqlx::Error> {
    if db.dialect() != Dialect::Postgres {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(super::notify_channel(db))
        .bind(format!("{revision} {key}"))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Every stored secret ciphertext: (table, key, version or 0 for the current row, ct).
pub async fn secret_cts(
    db: &Db,
    conn: &mut AnyConnection,
) -> Result<Vec<(&'static str, String, i64, String)>, sqlx::Error> {
    let mut out = Vec::new();
    let current = sqlx::query(
        db.sql("SELECT key_name, secret_ct FROM opshub_kv WHERE secret_ct IS NOT NULL"),
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in current {
        out.push(("kv", r.try_get("key_name")?, 0, r.try_get("secret_ct")?));
    }
    let history = sqlx::query(db.sql(
        "SELECT key_name, version, secret_ct FROM opshub_kv_history WHERE secret_ct IS NOT NULL",
    ))
    .fetch_all(&mut *conn)
    .await?;
    for r in history {
        out.push((
            "kv history",
            r.try_get("key_name")?,
            r.try_get("version")?,
            r.try_get("secret_ct")?,
        ));
    }
    Ok(out)
}

/// Replaces one ciphertext found by [`secret_cts`].
pub async fn set_secret_ct(
    db: &Db,
    conn: &mut AnyConnection,
    table: &str,
    key: &str,
    version: i64,
    ct: &str,
) -> Result<(), sqlx::Error> {
    let q = if table == "kv" {
        sqlx::query(db.sql("UPDATE opshub_kv SET secret_ct = ? WHERE key_name = ?"))
            .bind(ct.to_string())
            .bind(key.to_string())
    } else {
        sqlx::query(
            db.sql("UPDATE opshub_kv_history SET secret_ct = ? WHERE key_name = ? AND version = ?"),
        )
        .bind(ct.to_string())
        .bind(key.to_string())
        .bind(version)
    };
    q.execute(conn).await.map(|_| ())
}
