//! The cluster-wide migration lock, taken before any state is read.
//! - PostgreSQL: a session advisory lock on a dedicated connection, taken by polling
//!   `pg_try_advisory_lock` in autocommit, so a waiting runner holds no snapshot that a
//!   holder's `CREATE INDEX CONCURRENTLY` would wait for. Dies with the session.
//! - MySQL/MariaDB: `GET_LOCK` with short waits in a loop, on a dedicated connection.
//! - SQLite: a lease row with an expiry, renewed while the run lasts; an expired lease, or
//!   one whose holder process on this host is gone, is taken over.
//!
//! On every backend the holder writes its identity (host, pid, start) into
//! `opshub_migration_lock`, so a runner that gives up can say who holds the lock.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Row};
use utoipa::ToSchema;

use crate::db::{Db, Dialect, time};

/// How long a SQLite lease lasts without renewal; renewed every third of it.
pub const LEASE_SECS: i64 = 30;
const POLL: Duration = Duration::from_millis(50);
const LOCK_ROW: &str = "migrations";

/// Who holds (or held) the lock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub actor: String,
    pub started_at: String,
}

impl Holder {
    pub fn me(actor: &str) -> Holder {
        Holder {
            host: hostname(),
            pid: std::process::id(),
            actor: actor.to_string(),
            started_at: time::now(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {})",
            self.actor, self.pid, self.host, self.started_at
        )
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the migration lock is held by {}; gave up after {waited_secs} s", .holder.as_ref().map_or_else(|| "another runner".to_string(), ToString::to_string))]
    Timeout {
        holder: Option<Holder>,
        waited_secs: u64,
    },
    #[error("lost the migration lock (lease taken over after it expired)")]
    Lost,
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// A held lock. Release it with [`MigrationLock::release`]; if dropped instead (a panic),
/// the PostgreSQL/MySQL connection is closed, which frees the lock on the server.
pub struct MigrationLock {
    conn: Option<PoolConnection<Any>>,
    work: Option<PoolConnection<Any>>,
    db: Db,
    owner: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl MigrationLock {
    /// Waits up to `timeout` for the lock.
    pub async fn acquire(db: &Db, actor: &str, timeout: Duration) -> Result<Self, LockError> {
        let me = Holder::me(actor);
        let owner = uuid::Uuid::now_v7().to_string();
        let start = Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or_else(|| start + Duration::from_secs(86_400));
        let mut conn = db.pool().acquire().await?;
        loop {
            let got = match db.dialect() {
                Dialect::Postgres => pg_try(db, &mut conn).await?,
                Dialect::Mysql => mysql_try(&mut conn, deadline).await?,
                Dialect::Sqlite => lease_try(db, &mut conn, &owner, &me).await?,
            };
            if got {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LockError::Timeout {
                    holder: read_holder(db).await.ok().flatten(),
                    waited_secs: timeout.as_secs(),
                });
            }
            if db.dialect() != Dialect::Mysql {
                tokio::time::sleep(POLL).await;
            }
        }
        let mut lock = MigrationLock {
            conn: Some(conn),
            work: None,
            db: db.clone(),
            owner: owner.clone(),
            renewer: None,
        };
        if db.dialect() == Dialect::Sqlite {
            lock.renewer = Some(spawn_renewer(db.clone(), lock.owner.clone()));
        } else if let Err(e) = write_holder(db, lock.conn(), &owner, &me).await {
            lock.release().await;
            return Err(e.into());
        }
        Ok(lock)
    }

    /// The lock's own connection, for short bookkeeping statements (reading state,
    /// recording a resolution). On PostgreSQL and MySQL it holds the lock.
    pub fn conn(&mut self) -> &mut PoolConnection<Any> {
        self.conn
            .as_mut()
            .expect("the connection is only taken by release, which consumes the lock")
    }

    /// The connection migrations execute on, taken from the pool on first use. It is
    /// not the lock's: a holder killed mid-script leaves an idle lock session that the
    /// server ends at once, while the busy one may run on until its statement ends.
    pub async fn work(&mut self) -> Result<&mut PoolConnection<Any>, sqlx::Error> {
        if self.work.is_none() {
            let mut conn = self.db.pool().acquire().await?;
            if self.db.dialect() == Dialect::Postgres {
                // PostgreSQL 14+: notice a vanished client during a long statement too.
                let _ = sqlx::query("SET client_connection_check_interval = '1s'")
                    .execute(&mut *conn)
                    .await;
            }
            self.work = Some(conn);
        }
        Ok(self
            .work
            .as_mut()
            .expect("the work connection was set just above"))
    }

    /// The lease owner id (SQLite fences each migration's transaction with it).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let released = match self.db.dialect() {
            Dialect::Postgres => sqlx::query(pg_unlock_sql(&self.db))
                .execute(&mut *conn)
                .await
                .map(|_| ()),
            Dialect::Mysql => sqlx::query(
                "SELECT RELEASE_LOCK(LEFT(CONCAT('opshub_migrations_', DATABASE()), 64))",
            )
            .execute(&mut *conn)
            .await
            .map(|_| ()),
            Dialect::Sqlite => sqlx::query(
                self.db
                    .sql("DELETE FROM opshub_migration_lock WHERE name = ? AND owner = ?"),
            )
            .bind(LOCK_ROW)
            .bind(&self.owner)
            .execute(self.db.pool())
            .await
            .map(|_| ()),
        };
        if let Err(e) = released {
            // Closing the session frees a PostgreSQL/MySQL lock for sure.
            tracing::warn!(error = %e, "could not release the migration lock; closing its connection");
            drop(conn.detach());
        }
    }
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Some(conn) = self.conn.take() {
            // Never hand a connection that may still hold the lock back to the pool.
            drop(conn.detach());
        }
    }
}

/// The advisory lock key: one per opshub schema, so two opshub installations in one
/// database (different schemas) do not block each other.
fn pg_key(db: &Db) -> i64 {
    let digest =
        crate::crypto::sha256_hex(format!("opshub.migrations.{}", db.pg_schema()).as_bytes());
    i64::from_str_radix(&digest[..15], 16).unwrap_or(0x6f7073687562)
}

fn pg_unlock_sql(db: &Db) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT pg_advisory_unlock({})", pg_key(db)))
}

async fn pg_try(db: &Db, conn: &mut PoolConnection<Any>) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "SELECT CAST(CASE WHEN pg_try_advisory_lock({}) THEN 1 ELSE 0 END AS BIGINT) AS got",
        pg_key(db)
    );
    let got: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut **conn)
        .await?
        .try_get("got")?;
    Ok(got == 1)
}

/// `GET_LOCK` names are server-wide, hence the database name in it. Waits at most one
/// second per call so the overall deadline is honoured.
async fn mysql_try(conn: &mut PoolConnection<Any>, deadline: Instant) -> Result<bool, sqlx::Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    let wait = left.as_secs().min(1);
    let sql = format!(
        "SELECT CAST(COALESCE(GET_LOCK(LEFT(CONCAT('opshub_migrations_', DATABASE()), 64), {wait}), 0) AS SIGNED) AS got"
    );
    let got: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut **conn)
        .await?
        .try_get("got")?;
    Ok(got == 1)
}

/// A write transaction on `conn` (`BEGIN IMMEDIATE` on SQLite, as `Db::begin_write`).
pub(crate) async fn begin_on<'c>(
    db: &Db,
    conn: &'c mut PoolConnection<Any>,
) -> Result<sqlx::Transaction<'c, Any>, sqlx::Error> {
    match db.dialect() {
        Dialect::Sqlite => sqlx::Connection::begin_with(&mut **conn, "BEGIN IMMEDIATE").await,
        _ => sqlx::Connection::begin(&mut **conn).await,
    }
}

/// Takes the SQLite lease when it is free, expired, or held by a dead process here.
async fn lease_try(
    db: &Db,
    conn: &mut PoolConnection<Any>,
    owner: &str,
    me: &Holder,
) -> Result<bool, sqlx::Error> {
    let mut tx = begin_on(db, conn).await?;
    let row =
        sqlx::query(db.sql("SELECT holder, expires_at FROM opshub_migration_lock WHERE name = ?"))
            .bind(LOCK_ROW)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(row) = row {
        let holder: String = row.try_get("holder")?;
        let expires: String = row.try_get("expires_at")?;
        let holder: Option<Holder> = serde_json::from_str(&holder).ok();
        let expired = expires < time::now();
        if !expired && !holder.as_ref().is_some_and(is_dead_here) {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(h) = holder {
            tracing::warn!(holder = %h, expired, "taking over a migration lease whose holder is gone");
        }
    }
    sqlx::query(db.sql("DELETE FROM opshub_migration_lock WHERE name = ?"))
        .bind(LOCK_ROW)
        .execute(&mut *tx)
        .await?;
    insert_row(db, &mut tx, owner, me).await?;
    tx.commit().await?;
    Ok(true)
}

/// A holder on this host whose process no longer exists (Linux `/proc`; elsewhere the
/// lease expiry is the only way out).
fn is_dead_here(h: &Holder) -> bool {
    h.host == hostname()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{}", h.pid)).exists()
}

async fn insert_row(
    db: &Db,
    conn: &mut sqlx::AnyConnection,
    owner: &str,
    me: &Holder,
) -> Result<(), sqlx::Error> {
    let holder = serde_json::to_string(me).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(db.sql(
        "INSERT INTO opshub_migration_lock (name, owner, holder, acquired_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    ))
    .bind(LOCK_ROW)
    .bind(owner)
    .bind(holder)
    .bind(time::now())
    .bind(time::in_secs(LEASE_SECS))
    .execute(conn)
    .await
    .map(|_| ())
}

/// PostgreSQL/MySQL: records who holds the lock (informational; the server lock rules).
async fn write_holder(
    db: &Db,
    conn: &mut PoolConnection<Any>,
    owner: &str,
    me: &Holder,
) -> Result<(), sqlx::Error> {
    let mut tx = begin_on(db, conn).await?;
    sqlx::query(db.sql("DELETE FROM opshub_migration_lock WHERE name = ?"))
        .bind(LOCK_ROW)
        .execute(&mut *tx)
        .await?;
    insert_row(db, &mut tx, owner, me).await?;
    tx.commit().await
}

async fn read_holder(db: &Db) -> Result<Option<Holder>, sqlx::Error> {
    let row = sqlx::query(db.sql("SELECT holder FROM opshub_migration_lock WHERE name = ?"))
        .bind(LOCK_ROW)
        .fetch_optional(db.pool())
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<String, _>("holder").ok())
        .and_then(|h| serde_json::from_str(&h).ok()))
}

/// Extends the lease while it is still ours; inside a migration's transaction this is
/// also the fence: a runner that lost its lease cannot commit.
pub async fn renew<'e>(
    db: &Db,
    ex: impl sqlx::Executor<'e, Database = Any>,
    owner: &str,
) -> Result<(), LockError> {
    let done = sqlx::query(
        db.sql("UPDATE opshub_migration_lock SET expires_at = ? WHERE name = ? AND owner = ?"),
    )
    .bind(time::in_secs(LEASE_SECS))
    .bind(LOCK_ROW)
    .bind(owner)
    .execute(ex)
    .await?;
    if done.rows_affected() == 0 {
        return Err(LockError::Lost);
    }
    Ok(())
}

fn spawn_renewer(db: Db, owner: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs((LEASE_SECS / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = renew(&db, db.pool(), &owner).await {
                tracing::warn!(error = %e, "could not renew the migration lease");
            }
        }
    })
}
