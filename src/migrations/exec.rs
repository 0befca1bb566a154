//! Executes one planned migration, up or down, on the lock's connection.
//! - `Transaction`: script + record update + history row commit together; a failure rolls
//!   all of it back and is then recorded (`lastError`, a failed history row) on its own.
//! - `MysqlTransaction`: the same, statement by statement; DDL commits implicitly on MySQL,
//!   so a failure after a DDL statement leaves the migration dirty.
//! - `Statements`: no transaction; progress is committed after each statement, so a failure
//!   or a crash leaves a dirty migration that says what completed and what failed.

use std::time::Instant;

use sqlx::{Any, AssertSqlSafe};

use super::lock::{self, MigrationLock, begin_on as begin};
use super::model::{Direction, DirtyInfo, HistoryEntry};
use super::plan::{Mode, Step};
use super::source::split::{self, Statement};
use super::store;
use crate::db::{Db, Dialect, time};
use crate::error::{ApiError, ApiResult};

/// What became of one migration.
pub enum Outcome {
    Done { ms: i64 },
    Failed { error: String, dirty: bool },
}

/// Everything an execution needs.
pub struct Exec<'a> {
    pub db: &'a Db,
    pub lock: &'a mut MigrationLock,
    pub actor: &'a str,
}

impl Exec<'_> {
    /// Runs `step` in `dir`. `relaxed`: more migrations follow in this run, so PostgreSQL
    /// may skip the commit's WAL flush (the run's last commit flushes them all; each
    /// commit stays atomic, and a crash can only lose whole trailing migrations together
    /// with their records).
    pub async fn run(&mut self, step: &Step, dir: Direction, relaxed: bool) -> ApiResult<Outcome> {
        match step.mode {
            Mode::Transaction => self.in_transaction(step, dir, relaxed).await,
            Mode::MysqlTransaction => self.mysql_transaction(step, dir).await,
            Mode::Statements => self.one_by_one(step, dir, 0).await,
        }
    }

    /// Continues a dirty migration at the statement that failed.
    pub async fn resume(&mut self, step: &Step, info: &DirtyInfo) -> ApiResult<Outcome> {
        self.one_by_one(step, info.direction, info.completed).await
    }

    async fn in_transaction(
        &mut self,
        step: &Step,
        dir: Direction,
        relaxed: bool,
    ) -> ApiResult<Outcome> {
        let (db, started, t0) = (self.db, time::now(), Instant::now());
        let owner = self.lock.owner().to_string();
        let mut tx = begin(db, self.lock.work().await?).await?;
        if db.dialect() == Dialect::Sqlite {
            lock::renew(db, &mut *tx, &owner).await.map_err(lost)?;
        }
        let script = if relaxed && db.dialect() == Dialect::Postgres {
            format!("SET LOCAL synchronous_commit = off;\n{}", step.script)
        } else {
            step.script.clone()
        };
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(script)).execute(&mut *tx).await {
            tx.rollback().await?;
            return self
                .failed(step, dir, &started, t0, e.to_string(), None)
                .await;
        }
        let ms = elapsed_ms(t0);
        record_success(db, &mut tx, step, dir, &started, ms, self.actor).await?;
        tx.commit().await?;
        Ok(Outcome::Done { ms })
    }

    async fn mysql_transaction(&mut self, step: &Step, dir: Direction) -> ApiResult<Outcome> {
        let (db, started, t0) = (self.db, time::now(), Instant::now());
        let id = step.migration.id.clone();
        let mut info = progress(step, dir, 0, &started);
        let mut tx = begin(db, self.lock.work().await?).await?;
        for (i, s) in step.statements.iter().enumerate() {
            let commits = commits_implicitly(&s.text);
            if commits {
                // Committed on another connection before a statement that commits
                // implicitly: a crash from here on shows as dirty.
                let marker = progress(step, dir, i, &started);
                store::set_progress(db, db.pool(), &id, &marker, &time::now()).await?;
            }
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(s.text.clone()))
                .execute(&mut *tx)
                .await
            {
                tx.rollback().await?;
                let committed = step.statements[..i]
                    .iter()
                    .any(|s| commits_implicitly(&s.text));
                info.failed_statement = Some(s.text.clone());
                info.error = Some(e.to_string());
                let dirty = committed.then_some(&info);
                return self
                    .failed(step, dir, &started, t0, e.to_string(), dirty)
                    .await;
            }
            info = progress(step, dir, i + 1, &started);
            if commits {
                store::set_progress(db, db.pool(), &id, &info, &time::now()).await?;
            }
        }
        let ms = elapsed_ms(t0);
        record_success(db, &mut tx, step, dir, &started, ms, self.actor).await?;
        tx.commit().await?;
        Ok(Outcome::Done { ms })
    }

    async fn one_by_one(&mut self, step: &Step, dir: Direction, from: usize) -> ApiResult<Outcome> {
        let (db, started, t0) = (self.db, time::now(), Instant::now());
        let owner = self.lock.owner().to_string();
        let id = step.migration.id.clone();
        let mut info = progress(step, dir, from, &started);
        store::set_progress(db, &mut **self.lock.work().await?, &id, &info, &started).await?;
        for (i, s) in step.statements.iter().enumerate().skip(from) {
            let conn = self.lock.work().await?;
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(s.text.clone()))
                .execute(&mut **conn)
                .await
            {
                info.failed_statement = Some(s.text.clone());
                info.error = Some(e.to_string());
                if db.dialect() == Dialect::Postgres {
                    // Best effort: the failure report matters more than this detail.
                    info.invalid_indexes = store::invalid_indexes(&mut **conn)
                        .await
                        .unwrap_or_default();
                }
                return self
                    .failed(step, dir, &started, t0, e.to_string(), Some(&info))
                    .await;
            }
            info = progress(step, dir, i + 1, &started);
            store::set_progress(db, &mut **conn, &id, &info, &time::now()).await?;
            if db.dialect() == Dialect::Sqlite {
                lock::renew(db, &mut **conn, &owner).await.map_err(lost)?;
            }
        }
        let ms = elapsed_ms(t0);
        let mut tx = begin(db, self.lock.work().await?).await?;
        record_success(db, &mut tx, step, dir, &started, ms, self.actor).await?;
        tx.commit().await?;
        Ok(Outcome::Done { ms })
    }

    /// Records a failure in its own transaction (the migration's was rolled back).
    async fn failed(
        &mut self,
        step: &Step,
        dir: Direction,
        started: &str,
        t0: Instant,
        error: String,
        dirty: Option<&DirtyInfo>,
    ) -> ApiResult<Outcome> {
        let db = self.db;
        let entry = history(
            step,
            dir.as_str(),
            started,
            elapsed_ms(t0),
            Some(&error),
            self.actor,
        );
        let mut tx = begin(db, self.lock.work().await?).await?;
        store::mark_failed(
            db,
            &mut *tx,
            &step.migration.id,
            &error,
            dirty,
            &time::now(),
        )
        .await?;
        store::insert_history(db, &mut *tx, &entry).await?;
        tx.commit().await?;
        Ok(Outcome::Failed {
            error,
            dirty: dirty.is_some(),
        })
    }
}

/// Marks the migration executed (up) or not (down) and appends the history row, inside
/// the caller's transaction.
async fn record_success(
    db: &Db,
    tx: &mut sqlx::Transaction<'_, Any>,
    step: &Step,
    dir: Direction,
    started: &str,
    ms: i64,
    actor: &str,
) -> ApiResult<()> {
    let m = &step.migration;
    let now = time::now();
    match dir {
        Direction::Up => {
            let sum = split::checksum(&m.up_script);
            store::mark_executed(db, &mut **tx, m, &now, &sum, ms).await?;
        }
        Direction::Down => store::mark_rolled_back(db, &mut **tx, &m.id, &now).await?,
    }
    let entry = history(step, dir.as_str(), started, ms, None, actor);
    store::insert_history(db, &mut **tx, &entry).await?;
    Ok(())
}

pub fn history(
    step: &Step,
    direction: &str,
    started: &str,
    ms: i64,
    error: Option<&str>,
    actor: &str,
) -> HistoryEntry {
    let m = &step.migration;
    HistoryEntry {
        id: uuid::Uuid::now_v7().to_string(),
        migration_id: m.id.clone(),
        migration_name: m.name.clone(),
        version: m.version.clone(),
        direction: direction.to_string(),
        success: error.is_none(),
        error: error.map(str::to_string),
        duration_ms: ms,
        started_at: started.to_string(),
        actor: actor.to_string(),
    }
}

/// Progress after `completed` statements.
fn progress(step: &Step, dir: Direction, completed: usize, started: &str) -> DirtyInfo {
    DirtyInfo {
        direction: dir,
        completed,
        total: step.statements.len(),
        failed_statement: None,
        error: None,
        started_at: started.to_string(),
        completed_checksum: completed_checksum(
            &step.statements[..completed.min(step.statements.len())],
        ),
        invalid_indexes: Vec::new(),
    }
}

/// Checksum of the statements that completed, to tell whether a resume is safe.
pub fn completed_checksum(done: &[Statement]) -> String {
    let joined: Vec<&str> = done.iter().map(|s| s.text.as_str()).collect();
    split::checksum(&joined.join("\n;\n"))
}

/// Whether a MySQL statement may commit implicitly: everything but plain DML.
fn commits_implicitly(stmt: &str) -> bool {
    let word: String = stmt
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    !matches!(
        word.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "SELECT" | "WITH" | "VALUES" | "SET" | "DO"
    )
}

fn elapsed_ms(t0: Instant) -> i64 {
    i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX)
}

fn lost(e: lock::LockError) -> ApiError {
    ApiError::conflict("lock_lost", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_dml_is_free_of_implicit_commits_on_mysql() {
        assert!(!commits_implicitly("insert into t values (1)"));
        assert!(!commits_implicitly("  UPDATE t SET a = 1"));
        assert!(commits_implicitly("CREATE TABLE t (a int)"));
        assert!(commits_implicitly("alter table t add b int"));
        assert!(commits_implicitly("CALL p()"));
    }
}
