//! SQL for `opshub_procedures`, and nothing else. Functions take any executor so a deploy
//! can put the user's script and its record update in one transaction. Catalog reads of
//! the user's objects live in `catalog.rs`.

use sqlx::{Any, Executor, Row};

use super::model::{ProcType, Procedure};
use crate::db::{AnyRow, Db};

const COLUMNS: &str = "id, name, type, version, sort, up_script, down_script, hash, depends_on, \
     is_executed, executed_at, deployed_hash, catalog_hash, catalog_def, catalog_keys, \
     last_error, created_at, updated_at";

fn json_list(r: &AnyRow, col: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: Option<String> = r.try_get(col)?;
    text.map_or(Ok(Vec::new()), |t| {
        serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(e.into()))
    })
}

fn from_row(r: &AnyRow) -> Result<Procedure, sqlx::Error> {
    let ty: String = r.try_get("type")?;
    Ok(Procedure {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        proc_type: ProcType::parse(&ty)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown procedure type {ty}").into()))?,
        version: r.try_get("version")?,
        sort: r.try_get("sort")?,
        up_script: r.try_get("up_script")?,
        down_script: r.try_get("down_script")?,
        hash: r.try_get("hash")?,
        depends_on: json_list(r, "depends_on")?,
        is_executed: r.try_get::<i16, _>("is_executed")? != 0,
        executed_at: r.try_get("executed_at")?,
        deployed_hash: r.try_get("deployed_hash")?,
        catalog_hash: r.try_get("catalog_hash")?,
        catalog_def: r.try_get("catalog_def")?,
        catalog_keys: json_list(r, "catalog_keys")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

pub async fn insert<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    p: &Procedure,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_procedures (id, name, type, version, sort, up_script, down_script,
            hash, depends_on, is_executed, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
    ))
    .bind(&p.id)
    .bind(&p.name)
    .bind(p.proc_type.as_str())
    .bind(&p.version)
    .bind(p.sort)
    .bind(&p.up_script)
    .bind(&p.down_script)
    .bind(&p.hash)
    .bind(to_json(&p.depends_on))
    .bind(&p.created_at)
    .bind(&p.updated_at)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Every procedure (order is the caller's: natural version order is not SQL order).
pub async fn all<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
) -> Result<Vec<Procedure>, sqlx::Error> {
    let rows = sqlx::query(db.sql_dynamic(&format!("SELECT {COLUMNS} FROM opshub_procedures")))
        .fetch_all(ex)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn find<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Procedure>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM opshub_procedures WHERE id = ? OR name = ?");
    let rows = sqlx::query(db.sql_dynamic(&sql))
        .bind(id)
        .bind(id)
        .fetch_all(ex)
        .await?;
    // An id wins over another record's name that happens to equal it.
    let found: Vec<Procedure> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    Ok(found
        .iter()
        .find(|p| p.id == id)
        .or_else(|| found.first())
        .cloned())
}

/// Writes the user-editable fields of `p` (and its recomputed hash).
pub async fn update_fields<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    p: &Procedure,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_procedures SET name = ?, type = ?, version = ?, sort = ?, up_script = ?,
            down_script = ?, hash = ?, depends_on = ?, updated_at = ?
         WHERE id = ?",
    ))
    .bind(&p.name)
    .bind(p.proc_type.as_str())
    .bind(&p.version)
    .bind(p.sort)
    .bind(&p.up_script)
    .bind(&p.down_script)
    .bind(&p.hash)
    .bind(to_json(&p.depends_on))
    .bind(&p.updated_at)
    .bind(&p.id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Renames in every `depends_on` list are the caller's job; this deletes one row.
pub async fn delete<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM opshub_procedures WHERE id = ?"))
        .bind(id)
        .execute(ex)
        .await
        .map(|_| ())
}

/// Records a successful deploy: what was deployed and what the catalog rendered.
pub async fn mark_deployed<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    p: &Procedure,
    catalog: &super::catalog::Rendered,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_procedures SET is_executed = 1, executed_at = ?, deployed_hash = ?,
            catalog_hash = ?, catalog_def = ?, catalog_keys = ?, last_error = NULL,
            updated_at = ?
         WHERE id = ?",
    ))
    .bind(now)
    .bind(&p.hash)
    .bind(&catalog.hash)
    .bind(&catalog.text)
    .bind(to_json(&catalog.keys))
    .bind(now)
    .bind(&p.id)
    .execute(ex)
    .await
    .map(|_| ())
}

pub async fn mark_failed<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    error: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_procedures SET last_error = ?, updated_at = ? WHERE id = ?"))
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(ex)
        .await
        .map(|_| ())
}

pub async fn mark_rolled_back<'e>(
    db: &Db,
    ex: impl Executor<'e, Database = Any>,
    id: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "UPDATE opshub_procedures SET is_executed = 0, executed_at = NULL, deployed_hash = NULL,
            catalog_hash = NULL, catalog_def = NULL, catalog_keys = NULL, last_error = NULL,
            updated_at = ?
         WHERE id = ?",
    ))
    .bind(now)
    .bind(id)
    .execute(ex)
    .await
    .map(|_| ())
}

/// Keeps a count query for the no-op fast path of deploy-all: anything never deployed or
/// whose hash moved since.
pub async fn count_actionable(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query(db.sql(
        "SELECT COUNT(*) AS n FROM opshub_procedures
         WHERE is_executed = 0 OR deployed_hash IS NULL OR deployed_hash <> hash",
    ))
    .fetch_one(db.pool())
    .await?
    .try_get("n")
}
