//! SQL for `opshub_tokens`, and nothing else.

use sqlx::Row;

use super::model::{Scope, Token};
use crate::db::{AnyRow, Db};

const COLUMNS: &str = "id, name, scope, prefix, created_at, last_used_at, revoked_at";

fn from_row(r: &AnyRow) -> Result<Token, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    Ok(Token {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        scope: scope
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub async fn insert(db: &Db, t: &Token, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_tokens (id, name, scope, token_hash, prefix, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    ))
    .bind(&t.id)
    .bind(&t.name)
    .bind(t.scope.as_str())
    .bind(token_hash)
    .bind(&t.prefix)
    .bind(&t.created_at)
    .execute(db.pool())
    .await
    .map(|_| ())
}

/// The token whose hash is `token_hash`, with that stored hash for a constant-time check.
pub async fn find_by_hash(
    db: &Db,
    token_hash: &str,
) -> Result<Option<(Token, String)>, sqlx::Error> {
    let row = sqlx::query(db.sql(
        "SELECT id, name, scope, prefix, created_at, last_used_at, revoked_at, token_hash
         FROM opshub_tokens WHERE token_hash = ?",
    ))
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| Ok((from_row(&r)?, r.try_get("token_hash")?)))
        .transpose()
}

/// Tokens with id greater than `after`, oldest first.
pub async fn list(db: &Db, after: Option<&str>, limit: u32) -> Result<Vec<Token>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {COLUMNS} FROM opshub_tokens WHERE id > ? ORDER BY id LIMIT {limit}"
    ));
    let rows = sqlx::query(sql)
        .bind(after.unwrap_or(""))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Active (not revoked) tokens whose id or name is `id_or_name`.
pub async fn find_active(db: &Db, id_or_name: &str) -> Result<Vec<Token>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!(
        "SELECT {COLUMNS} FROM opshub_tokens
         WHERE (id = ? OR name = ?) AND revoked_at IS NULL ORDER BY id"
    ));
    let rows = sqlx::query(sql)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn find(db: &Db, id: &str) -> Result<Option<Token>, sqlx::Error> {
    let sql = db.sql_dynamic(&format!("SELECT {COLUMNS} FROM opshub_tokens WHERE id = ?"));
    let row = sqlx::query(sql).bind(id).fetch_optional(db.pool()).await?;
    row.as_ref().map(from_row).transpose()
}

/// Marks a token revoked; false when it was unknown or already revoked.
pub async fn revoke(db: &Db, id: &str, at: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        db.sql("UPDATE opshub_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
    )
    .bind(at)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn touch(db: &Db, id: &str, at: &str) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("UPDATE opshub_tokens SET last_used_at = ? WHERE id = ?"))
        .bind(at)
        .bind(id)
        .execute(db.pool())
        .await
        .map(|_| ())
}

pub async fn count_active_admin(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query(
        db.sql("SELECT COUNT(*) AS n FROM opshub_tokens WHERE revoked_at IS NULL AND scope = ?"),
    )
    .bind(Scope::Admin.as_str())
    .fetch_one(db.pool())
    .await?
    .try_get("n")
}

/// Records that first-start bootstrap happened; true only for the one caller that did it,
/// so instances starting together print at most one generated token.
pub async fn claim_bootstrap(db: &Db, at: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(db.sql("INSERT INTO opshub_meta (name, value) VALUES ('bootstrap', ?)"))
        .bind(at)
        .execute(db.pool())
        .await;
    match res {
        Ok(_) => Ok(true),
        Err(e) if crate::db::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
