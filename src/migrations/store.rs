//! SQL for `opshub_migrations` and `opshub_migration_history`, and nothing else. Functions
//! take any executor (pool, connection or transaction) so the runner can put a script, its
//! record update and its history row in one transaction. The lock table lives in `lock.rs`.

use sqlx::{Any, Executor, Row};

use super::model::{Direction, DirtyInfo, HistoryEntry, Migration};
use super::plan::Step;
use super::source::split;
use crate::db::{AnyRow, Db, flag};

const COLUMNS: &str = "id, name, version, execution_order, description, up_script, down_script, \
     transactional, is_active, is_executed, executed_at, checksum, execution_ms, last_error, \
     applied_up, applied_down, dirty, dirty_info, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<Migration, sqlx::Error> {
    let flag_of = |c: &str| -> Result<bool, sqlx::Error> { Ok(r.try_get::<i16, _>(c)? != 0) };
    let dirty_info: Option<String> = r.try_get("dirty_info")?;
    Ok(Migration {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        execution_order: r.try_get("execution_order")?,
        description: r.try_get("description")?,
        up_script: r.try_get("up_script")?,
        down_script: r.try_get("down_script")?,
        transactional: flag_of("transactional")?,
        is_active: flag_of("is_active")?,
        is_executed: flag_of("is_executed")?,
        executed_at: r.try_get("executed_at")?,
        checksum: r.try_get("checksum")?,
        execution_ms: r.try_get("execution_ms")?,
        last_error: r.try_get("last_error")?,
        applied_up: r.try_get("applied_up")?,
        applied_down: r.try_get("applied_down")?,
        dirty: flag_of("dirty")?,
        dirty_info: dirty_info
            .map(|s| serde_json::from_str::<DirtyInfo>(&s))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(e.into()))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn insert<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    m: &Migration,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_migrations (id, name, version, execution_order, description,
            up_script, down_script, transactional, is_active, is_executed, dirty,
            created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
    ))
    .bind(&m.id)
    .bind(&m.name)
    .bind(&m.version)
    .bind(m.execution_order)
    .bind(&m.description)
    .bind(&m.up_script)
    .bind(&m.down_script)
    .bind(flag(m.transactional))
    .bind(flag(m.is_active))
    .bind(&m.created_at)
    .bind(&m.updated_at)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Every migration (order is the caller's: natural order is not SQL order).
pub async fn all<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
) -> Result<Vec<Migration>, sqlx::Error> {
    let rows = sqlx::query(db.sql_dynamic(&format!("SELECT {COLUMNS} FROM opshub_migrations")))
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

/// How many migrations are pending (active, not executed) or dirty: zero means a run
/// has nothing to do, answered with one row instead of the whole set.
pub async fn count_actionable(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql(
        "SELECT COUNT(*) AS n FROM opshub_migrations
         WHERE dirty = 1 OR (is_active = 1 AND is_executed = 0)",
    ))
    .fetch_one(db.pool())
    .await?
    .try_get("n")
}

pub async fn find<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Migration>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM opshub_migrations WHERE id = ?");
    let row = sqlx::query(db.sql_dynamic(&sql))
        .bind(id)
        .fetch_optional(ex)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Writes the user-editable fields of `m`.
pub async fn update_fields<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    m: &Migration,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_migrations SET name = ?, version = ?, execution_order = ?,
            description = ?, up_script = ?, down_script = ?, transactional = ?,
            is_active = ?, updated_at = ?
         WHERE id = ?",
    ))
    .bind(&m.name)
    .bind(&m.version)
    .bind(m.execution_order)
    .bind(&m.description)
    .bind(&m.up_script)
    .bind(&m.down_script)
    .bind(flag(m.transactional))
    .bind(flag(m.is_active))
    .bind(&m.updated_at)
    .bind(&m.id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Deletes a migration that is not executed; false when none matched.
pub async fn delete_unexecuted<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query(db.sql("DELETE FROM opshub_migrations WHERE id = ? AND is_executed = 0"))
            .bind(id)
            .execute(ex)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Marks a migration executed with the scripts as applied; clears error and dirt.
pub async fn mark_executed<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    m: &Migration,
    at: &str,
    checksum: &str,
    ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_migrations SET is_executed = 1, executed_at = ?, checksum = ?,
            execution_ms = ?, last_error = NULL, applied_up = ?, applied_down = ?,
            dirty = 0, dirty_info = NULL, updated_at = ?
         WHERE id = ?",
    ))
    .bind(at)
    .bind(checksum)
    .bind(ms)
    .bind(&m.up_script)
    .bind(&m.down_script)
    .bind(at)
    .bind(&m.id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// PostgreSQL only: the bookkeeping of a group of successful runs as one statement, sent
/// with the group's `COMMIT`: each record updated (up: executed, with the applied scripts;
/// down: not executed) and each history row appended. Values are literals (`E'…'` strings
/// escape both `\\` and `'`, whatever `standard_conforming_strings` says), cast so that a
/// column of NULLs still has its type. Returns the SQL, ending in `;` and a newline.
pub fn record_runs_pg_sql(
    db: &Db,
    steps: &[Step],
    entries: &[HistoryEntry],
    dir: Direction,
    at: &str,
) -> String {
    let up = dir == Direction::Up;
    let text = |v: Option<&str>| v.map_or_else(|| "NULL::text".to_string(), pg_literal);
    let at = pg_literal(at);
    let mut values = Vec::with_capacity(steps.len());
    let mut rows = Vec::with_capacity(steps.len());
    for (step, h) in steps.iter().zip(entries) {
        let m = &step.migration;
        let sum = up.then(|| split::checksum(&m.up_script));
        values.push(format!(
            "({id}, {executed_at}, {checksum}, {ms}::bigint, {applied_up}, {applied_down})",
            id = pg_literal(&m.id),
            executed_at = if up { at.clone() } else { text(None) },
            checksum = text(sum.as_deref()),
            ms = if up {
                h.duration_ms.to_string()
            } else {
                "NULL".into()
            },
            applied_up = text(up.then_some(m.up_script.as_str())),
            applied_down = text(if up { m.down_script.as_deref() } else { None }),
        ));
        rows.push(format!(
            "({}, {}, {}, {}, {}, 1, NULL, {}, {}, {})",
            pg_literal(&h.id),
            pg_literal(&h.migration_id),
            pg_literal(&h.migration_name),
            pg_literal(&h.version),
            pg_literal(&h.direction),
            h.duration_ms,
            pg_literal(&h.started_at),
            pg_literal(&h.actor),
        ));
    }
    let sql = format!(
        "WITH done AS (UPDATE opshub_migrations AS m SET is_executed = {flag},
             executed_at = v.executed_at, checksum = v.checksum, execution_ms = v.ms,
             last_error = NULL, applied_up = v.applied_up, applied_down = v.applied_down,
             dirty = 0, dirty_info = NULL, updated_at = {at}
           FROM (VALUES {values}) AS v (id, executed_at, checksum, ms, applied_up, applied_down)
           WHERE m.id = v.id)
         INSERT INTO opshub_migration_history (id, migration_id, migration_name, version,
             direction, success, error, duration_ms, started_at, actor)
         VALUES {rows};\n",
        flag = flag(up),
        values = values.join(",\n"),
        rows = rows.join(",\n"),
    );
    // The rewrite qualifies the table names; it leaves quoted text (the literals) alone.
    db.sql_dynamic(&sql).0
}

/// A PostgreSQL escape-string literal: `E'…'` with `\\` and `'` doubled.
fn pg_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str("E'");
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Marks a migration not executed (after a rollback, or `resolve --rolled-back`).
pub async fn mark_rolled_back<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_migrations SET is_executed = 0, executed_at = NULL, checksum = NULL,
            execution_ms = NULL, last_error = NULL, applied_up = NULL, applied_down = NULL,
            dirty = 0, dirty_info = NULL, updated_at = ?
         WHERE id = ?",
    ))
    .bind(at)
    .bind(id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Records a failure; `dirty` set when the database was left partially changed.
pub async fn mark_failed<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    error: &str,
    dirty: Option<&DirtyInfo>,
    at: &str,
) -> Result<(), sqlx::Error> {
    let info = dirty.map(serde_json::to_string).transpose();
    let info = info.map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(db.sql(
        "UPDATE opshub_migrations SET last_error = ?, dirty = ?, dirty_info = ?, updated_at = ?
         WHERE id = ?",
    ))
    .bind(error)
    .bind(flag(dirty.is_some()))
    .bind(info)
    .bind(at)
    .bind(id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Marks a migration dirty with its progress (statement-by-statement runs).
pub async fn set_progress<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    info: &DirtyInfo,
    at: &str,
) -> Result<(), sqlx::Error> {
    let info = serde_json::to_string(info).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        db.sql(
            "UPDATE opshub_migrations SET dirty = 1, dirty_info = ?, updated_at = ? WHERE id = ?",
        ),
    )
    .bind(info)
    .bind(at)
    .bind(id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// PostgreSQL only (its catalog): indexes marked INVALID, which a failed `CREATE INDEX
/// CONCURRENTLY` leaves behind, schema-qualified.
pub async fn invalid_indexes<'e>(
    ex: impl Executor<'e, Database = Any>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT CAST(n.nspname AS TEXT) || '.' || CAST(c.relname AS TEXT) AS name
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT i.indisvalid ORDER BY 1",
    )
    .fetch_all(ex)
    .await?;
    rows.iter().map(|r| r.try_get("name")).collect()
}

pub async fn insert_history<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    h: &HistoryEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_migration_history (id, migration_id, migration_name, version,
            direction, success, error, duration_ms, started_at, actor)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(&h.id)
    .bind(&h.migration_id)
    .bind(&h.migration_name)
    .bind(&h.version)
    .bind(&h.direction)
    .bind(flag(h.success))
    .bind(&h.error)
    .bind(h.duration_ms)
    .bind(&h.started_at)
    .bind(&h.actor)
    .execute(ex)
    .await
    .map(|_| ())
}

/// History newest first: entries with id below `before` (ids are UUIDv7, so time order),
/// optionally of one migration.
pub async fn history(
    db: &Db,
    before: Option<&str>,
    migration_id: Option<&str>,
    limit: u32,
) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let sql = format!(
        "SELECT id, migration_id, migration_name, version, direction, success, error,
            duration_ms, started_at, actor
         FROM opshub_migration_history
         WHERE (? = '' OR id < ?) AND (? = '' OR migration_id = ?)
         ORDER BY id DESC LIMIT {limit}"
    );
    // No sentinel bound for "no cursor": a locale collation may not sort it last.
    let rows = sqlx::query(db.sql_dynamic(&sql))
        .bind(before.unwrap_or(""))
        .bind(before.unwrap_or(""))
        .bind(migration_id.unwrap_or(""))
        .bind(migration_id.unwrap_or(""))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryEntry {
                id: r.try_get("id")?,
                migration_id: r.try_get("migration_id")?,
                migration_name: r.try_get("migration_name")?,
                version: r.try_get("version")?,
                direction: r.try_get("direction")?,
                success: r.try_get::<i16, _>("success")? != 0,
                error: r.try_get("error")?,
                duration_ms: r.try_get("duration_ms")?,
                started_at: r.try_get("started_at")?,
                actor: r.try_get("actor")?,
            })
        })
        .collect()
}
