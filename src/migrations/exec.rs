//! Executes planned migrations, up or down, on the lock's connection.
//! - `Transaction`: script + record update + history row commit together; a failure rolls
//!   all of it back and is then recorded (`lastError`, a failed history row) on its own.
//!   On PostgreSQL consecutive ones share a transaction (group commit, see `pg_group`).
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
use crate::db::{Db, Dialect, error_text, time};
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
    /// Runs `step` in `dir` (PostgreSQL transactions go through [`Exec::pg_group`]).
    async fn run(&mut self, step: &Step, dir: Direction) -> ApiResult<Outcome> {
        match step.mode {
            Mode::Transaction => self.in_transaction(step, dir).await,
            Mode::MysqlTransaction => self.mysql_transaction(step, dir).await,
            Mode::Statements => self.one_by_one(step, dir, 0).await,
        }
    }

    /// Runs the next migration, or on PostgreSQL the next group of them
    /// ([`Exec::pg_group`]); their outcomes in order, the last one possibly a failure.
    pub async fn run_next(&mut self, steps: &[Step], dir: Direction) -> ApiResult<Vec<Outcome>> {
        match steps.first() {
            None => Ok(Vec::new()),
            Some(step)
                if self.db.dialect() == Dialect::Postgres && step.mode == Mode::Transaction =>
            {
                self.pg_group(steps, dir).await
            }
            Some(step) => Ok(vec![self.run(step, dir).await?]),
        }
    }

    /// Continues a dirty migration at the statement that failed.
    pub async fn resume(&mut self, step: &Step, info: &DirtyInfo) -> ApiResult<Outcome> {
        self.one_by_one(step, info.direction, info.completed).await
    }

    /// SQLite: script, record update and history row in one transaction, which also renews
    /// the lease (a runner that lost it cannot commit).
    async fn in_transaction(&mut self, step: &Step, dir: Direction) -> ApiResult<Outcome> {
        let (db, started, t0) = (self.db, time::now(), Instant::now());
        let owner = self.lock.owner().to_string();
        let mut tx = begin(db, self.lock.work().await?).await?;
        if db.dialect() == Dialect::Sqlite {
            lock::renew(db, &mut *tx, &owner).await.map_err(lost)?;
        }
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(step.script.as_str()))
            .execute(&mut *tx)
            .await
        {
            tx.rollback().await?;
            let error = error_text(&e, &step.script, Some(1));
            return self.failed(step, dir, &started, t0, error, None).await;
        }
        let ms = elapsed_ms(t0);
        record_success(db, &mut tx, step, dir, &started, ms, self.actor).await?;
        tx.commit().await?;
        Ok(Outcome::Done { ms })
    }

    /// Whether `step` may share a transaction with the migrations before it: it runs in a
    /// transaction, and no statement controls the transaction or sets its characteristics.
    fn groupable(step: &Step) -> bool {
        step.mode == Mode::Transaction
            && !step
                .statements
                .iter()
                .any(|s| controls_transaction(&s.text))
    }

    /// PostgreSQL group commit. Consecutive migrations from the front of `steps` run in one
    /// transaction, one round trip each (`BEGIN` travels with the first script); their
    /// record updates and history rows are written together right before the `COMMIT`, so
    /// a group commits whole, and with it each migration together with its record.
    ///
    /// The group commits after [`GROUP_MAX`] migrations or once it has run for
    /// [`GROUP_TIME`] (so locks a script takes are held that much longer at most), and
    /// before a migration that cannot share a transaction. When a script fails, the
    /// transaction is rolled back; the migrations before it in the group run again (they
    /// succeeded on this very state), then the failure is recorded: each migration still
    /// applies whole or not at all, exactly once. When the `COMMIT` fails (a deferred
    /// constraint, say), the group's migrations run again one transaction each, so the
    /// failure lands on the migration that causes it.
    async fn pg_group(&mut self, steps: &[Step], dir: Direction) -> ApiResult<Vec<Outcome>> {
        let max = if Self::groupable(&steps[0]) {
            GROUP_MAX
        } else {
            1
        };
        let since = Instant::now();
        let mut ran: Vec<(String, Instant, i64)> = Vec::new();
        let mut failure = None;
        for (k, step) in steps.iter().enumerate() {
            if k > 0 && (k == max || since.elapsed() >= GROUP_TIME || !Self::groupable(step)) {
                break;
            }
            let (started, t0) = (time::now(), Instant::now());
            let (sql, first_line) = if k == 0 {
                (format!("BEGIN;\n{}", step.script), 0)
            } else {
                (step.script.clone(), 1)
            };
            match self.pg_execute(sql, Some(first_line)).await? {
                Ok(()) => ran.push((started, t0, elapsed_ms(t0))),
                Err(error) => {
                    failure = Some((k, started, t0, error));
                    break;
                }
            }
        }
        if let Some((k, started, t0, error)) = failure {
            pg_end(self.lock.work().await?, "ROLLBACK").await?;
            let mut outcomes = Vec::new();
            while outcomes.len() < k {
                let again = Box::pin(self.pg_group(&steps[outcomes.len()..k], dir)).await?;
                let stop = matches!(again.last(), Some(Outcome::Failed { .. }));
                outcomes.extend(again);
                if stop {
                    // The same script failed on the second run: nothing to add.
                    return Ok(outcomes);
                }
            }
            let step = &steps[k];
            outcomes.push(self.failed(step, dir, &started, t0, error, None).await?);
            return Ok(outcomes);
        }
        let done = &steps[..ran.len()];
        let entries: Vec<HistoryEntry> = done
            .iter()
            .zip(&ran)
            .map(|(step, (started, _, ms))| {
                history(step, dir.as_str(), started, *ms, None, self.actor)
            })
            .collect();
        let mut sql = store::record_runs_pg_sql(self.db, done, &entries, dir, &time::now());
        if done.len() < steps.len() {
            // More follow: the run's last commit flushes the WAL for this one too.
            sql.push_str("SET LOCAL synchronous_commit = off;\n");
        }
        sql.push_str("COMMIT;");
        match self.pg_execute(sql, None).await? {
            Ok(()) => Ok(ran
                .iter()
                .map(|(_, _, ms)| Outcome::Done { ms: *ms })
                .collect()),
            Err(error) if done.len() == 1 => {
                pg_end(self.lock.work().await?, "ROLLBACK").await?;
                let (started, t0, _) = &ran[0];
                let failed = self
                    .failed(&done[0], dir, started, *t0, error, None)
                    .await?;
                Ok(vec![failed])
            }
            Err(error) => {
                pg_end(self.lock.work().await?, "ROLLBACK").await?;
                tracing::warn!(
                    migrations = done.len(),
                    %error,
                    "a group of migrations could not commit; running them one transaction each"
                );
                let mut outcomes = Vec::new();
                for step in done {
                    let again = Box::pin(self.pg_group(std::slice::from_ref(step), dir)).await?;
                    let stop = matches!(again.last(), Some(Outcome::Failed { .. }));
                    outcomes.extend(again);
                    if stop {
                        break;
                    }
                }
                Ok(outcomes)
            }
        }
    }

    /// Runs SQL on the work connection: `Ok(Err(message))` when the database refused it
    /// (naming the script line when `first_line` says where the script starts), `Err`
    /// when the connection itself failed.
    async fn pg_execute(
        &mut self,
        sql: String,
        first_line: Option<isize>,
    ) -> ApiResult<Result<(), String>> {
        let conn = self.lock.work().await?;
        match sqlx::raw_sql(AssertSqlSafe(sql.as_str()))
            .execute(&mut **conn)
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(e @ sqlx::Error::Database(_)) => Ok(Err(error_text(&e, &sql, first_line))),
            Err(e) => {
                conn.close_on_drop();
                Err(e.into())
            }
        }
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
                let error = error_text(&e, &s.text, isize::try_from(s.line).ok());
                info.error = Some(error.clone());
                let dirty = committed.then_some(&info);
                return self.failed(step, dir, &started, t0, error, dirty).await;
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
                let error = error_text(&e, &s.text, isize::try_from(s.line).ok());
                info.error = Some(error.clone());
                if db.dialect() == Dialect::Postgres {
                    // Best effort: the failure report matters more than this detail.
                    info.invalid_indexes = store::invalid_indexes(&mut **conn)
                        .await
                        .unwrap_or_default();
                }
                return self
                    .failed(step, dir, &started, t0, error, Some(&info))
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

/// Most migrations one PostgreSQL group commit takes: with one subtransaction each, 64
/// stay within the backend's subtransaction cache (no overflow slowing other sessions).
const GROUP_MAX: usize = 64;
/// A group commits once it has run this long, so it never holds a script's locks for long.
const GROUP_TIME: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether a PostgreSQL statement controls the transaction (rejected when a migration is
/// saved, checked again here) or sets its characteristics, which only works as the first
/// thing in a transaction: such a migration must have a transaction of its own.
fn controls_transaction(stmt: &str) -> bool {
    let mut words = stmt.split_ascii_whitespace().map(str::to_ascii_uppercase);
    split::is_transaction_control(stmt)
        || (words.next().as_deref() == Some("SET")
            && matches!(words.next().as_deref(), Some("TRANSACTION" | "SESSION")))
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

/// Ends a transaction opened by hand on PostgreSQL. When even that fails the connection
/// is closed rather than returned to the pool inside an open transaction.
async fn pg_end(conn: &mut sqlx::pool::PoolConnection<Any>, how: &str) -> ApiResult<()> {
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(how.to_string()))
        .execute(&mut **conn)
        .await
    {
        conn.close_on_drop();
        return Err(e.into());
    }
    Ok(())
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
    fn transaction_control_keeps_a_migration_out_of_a_group() {
        for s in [
            "BEGIN",
            "begin transaction",
            "START TRANSACTION",
            "COMMIT",
            "end",
            "ROLLBACK",
            "SAVEPOINT a",
            "release savepoint a",
            "PREPARE TRANSACTION 'x'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        ] {
            assert!(controls_transaction(s), "{s}");
        }
        for s in [
            "CREATE TABLE t (a int)",
            "SET search_path = x",
            "DO $$ BEGIN PERFORM 1; END $$",
            "ENDPOINT",
            "INSERT INTO begin_log VALUES (1)",
        ] {
            assert!(!controls_transaction(s), "{s}");
        }
    }

    #[test]
    fn only_plain_dml_is_free_of_implicit_commits_on_mysql() {
        assert!(!commits_implicitly("insert into t values (1)"));
        assert!(!commits_implicitly("  UPDATE t SET a = 1"));
        assert!(commits_implicitly("CREATE TABLE t (a int)"));
        assert!(commits_implicitly("alter table t add b int"));
        assert!(commits_implicitly("CALL p()"));
    }
}
