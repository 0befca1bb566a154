//! SQL for `opshub_console_sessions`, and nothing else.

use sqlx::Row;

use crate::db::Db;

/// A stored session: the token it was opened with, its CSRF token and its expiry.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub token_id: String,
    pub csrf: String,
    pub expires_at: String,
}

pub async fn insert(
    db: &Db,
    id_hash: &str,
    row: &SessionRow,
    created_at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql(
        "INSERT INTO opshub_console_sessions (id_hash, token_id, csrf, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    ))
    .bind(id_hash)
    .bind(&row.token_id)
    .bind(&row.csrf)
    .bind(created_at)
    .bind(&row.expires_at)
    .execute(db.pool())
    .await
    .map(|_| ())
}

pub async fn find(db: &Db, id_hash: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    let row = sqlx::query(
        db.sql("SELECT token_id, csrf, expires_at FROM opshub_console_sessions WHERE id_hash = ?"),
    )
    .bind(id_hash)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(SessionRow {
            token_id: r.try_get("token_id")?,
            csrf: r.try_get("csrf")?,
            expires_at: r.try_get("expires_at")?,
        })
    })
    .transpose()
}

pub async fn delete(db: &Db, id_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM opshub_console_sessions WHERE id_hash = ?"))
        .bind(id_hash)
        .execute(db.pool())
        .await
        .map(|_| ())
}

/// Drops every session that expired before `now` (done at each login, so the table stays
/// small without a sweeper task).
pub async fn delete_expired(db: &Db, now: &str) -> Result<(), sqlx::Error> {
    sqlx::query(db.sql("DELETE FROM opshub_console_sessions WHERE expires_at < ?"))
        .bind(now)
        .execute(db.pool())
        .await
        .map(|_| ())
}
