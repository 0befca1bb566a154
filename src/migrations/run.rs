//! Runs: up, rollback, resume, resolve and baseline. Every one takes the migration lock
//! FIRST, then reads state and plans, so two runners never plan from the same snapshot. A
//! dry run only plans (no lock, nothing written). Refusals become API errors with stable
//! codes the CLI maps to exit codes.

use std::time::Duration;

use serde_json::json;

use super::exec::{Exec, Outcome};
use super::lock::{LockError, MigrationLock};
use super::model::{
    Applied, Direction, Failed, Migration, MigrationRef, RollbackOptions, RunOptions, RunReport,
};
use super::plan::{self, Refusal, Step};
use super::source::{self, split};
use super::store;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};

/// The longest lock wait a run may ask for (a day), as for the configured default.
pub const MAX_LOCK_TIMEOUT_SECS: u64 = 86_400;

/// Runs `f` in its own task so that it completes even if the request that started it is
/// abandoned (a client disconnect or a time limit never cancels a migration half-way).
pub async fn detached<T: Send + 'static>(
    f: impl Future<Output = ApiResult<T>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(f)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("migration task failed: {e}")))?
}

/// Who runs, and how long to wait for the lock by default.
#[derive(Debug, Clone)]
pub struct Runner {
    pub actor: String,
    pub lock_timeout: Duration,
}

impl Runner {
    fn timeout(&self, asked: Option<u64>) -> Duration {
        asked.map_or(self.lock_timeout, Duration::from_secs)
    }

    pub fn check_timeout(asked: Option<u64>) -> ApiResult<()> {
        if asked.is_some_and(|s| s > MAX_LOCK_TIMEOUT_SECS) {
            return Err(ApiError::bad_request(
                "invalid_option",
                format!("lockTimeout must be at most {MAX_LOCK_TIMEOUT_SECS} seconds"),
            ));
        }
        Ok(())
    }

    pub(crate) async fn lock(&self, db: &Db, asked: Option<u64>) -> ApiResult<MigrationLock> {
        Self::check_timeout(asked)?;
        MigrationLock::acquire(db, &self.actor, self.timeout(asked))
            .await
            .map_err(lock_error)
    }

    /// Applies pending migrations (or plans them, with `dryRun`).
    pub async fn up(&self, db: &Db, opts: &RunOptions) -> ApiResult<RunReport> {
        Self::check_timeout(opts.lock_timeout)?;
        plan::check_up(opts).map_err(refusal)?;
        let dialect = source::dialect(db.dialect());
        if opts.dry_run {
            let all = sorted(store::all(db, db.pool()).await?);
            let steps = plan::up(&all, opts, dialect).map_err(refusal)?;
            return Ok(dry(Direction::Up, &steps));
        }
        // Nothing pending or dirty in one consistent read: answer without the lock. That
        // run is indistinguishable from one ordered before any concurrent change, and it
        // keeps the usual deploy-time no-op to one query and no lock writes. Anything
        // else locks, then reads and plans.
        if store::count_actionable(db).await? == 0 {
            return Ok(dry(Direction::Up, &[]).not_dry());
        }
        let mut lock = self.lock(db, opts.lock_timeout).await?;
        let result = async {
            let all = sorted(store::all(db, &mut **lock.conn()).await?);
            let steps = plan::up(&all, opts, dialect).map_err(refusal)?;
            self.execute(db, &mut lock, &steps, Direction::Up).await
        }
        .await;
        lock.release().await;
        result
    }

    /// Rolls back executed migrations, newest first, with their stored down scripts.
    pub async fn down(&self, db: &Db, opts: &RollbackOptions) -> ApiResult<RunReport> {
        let dialect = source::dialect(db.dialect());
        if opts.dry_run {
            let all = sorted(store::all(db, db.pool()).await?);
            let steps = plan::down(&all, opts, dialect).map_err(refusal)?;
            return Ok(dry(Direction::Down, &steps));
        }
        let mut lock = self.lock(db, opts.lock_timeout).await?;
        let result = async {
            let all = sorted(store::all(db, &mut **lock.conn()).await?);
            let steps = plan::down(&all, opts, dialect).map_err(refusal)?;
            self.execute(db, &mut lock, &steps, Direction::Down).await
        }
        .await;
        lock.release().await;
        result
    }

    async fn execute(
        &self,
        db: &Db,
        lock: &mut MigrationLock,
        steps: &[Step],
        dir: Direction,
    ) -> ApiResult<RunReport> {
        let mut report = RunReport {
            direction: dir,
            dry_run: false,
            applied: Vec::new(),
            failed: None,
            not_attempted: Vec::new(),
            plan: Vec::new(),
        };
        let mut exec = Exec {
            db,
            lock,
            actor: &self.actor,
        };
        let mut i = 0;
        while i < steps.len() {
            let outcomes = exec.run_next(&steps[i..], dir).await?;
            for outcome in outcomes {
                let migration = MigrationRef::from(&steps[i].migration);
                i += 1;
                match outcome {
                    Outcome::Done { ms } => report.applied.push(Applied {
                        migration,
                        duration_ms: ms,
                    }),
                    Outcome::Failed { error, dirty } => {
                        tracing::warn!(migration = %migration.name, %error, dirty, "migration failed");
                        report.failed = Some(Failed {
                            migration,
                            error,
                            dirty,
                        });
                        report.not_attempted = steps[i..]
                            .iter()
                            .map(|s| MigrationRef::from(&s.migration))
                            .collect();
                        return Ok(report);
                    }
                }
            }
        }
        Ok(report)
    }

    /// Continues a dirty migration at its failed statement, when the statements that
    /// completed are unchanged.
    pub async fn resume(&self, db: &Db, id: &str, timeout: Option<u64>) -> ApiResult<RunReport> {
        let mut lock = self.lock(db, timeout).await?;
        let result = async {
            let m = find_dirty(db, &mut lock, id).await?;
            let info = m.dirty_info.clone().ok_or_else(|| not_dirty(&m))?;
            let script = match info.direction {
                Direction::Up => m.up_script.clone(),
                Direction::Down => m.applied_down.clone().unwrap_or_default(),
            };
            let step = plan::step(&m, script, source::dialect(db.dialect())).map_err(refusal)?;
            let done = &step.statements[..info.completed.min(step.statements.len())];
            if super::exec::completed_checksum(done) != info.completed_checksum {
                return Err(ApiError::conflict(
                    "resume_unsafe",
                    format!(
                        "the {} statements of {:?} that completed have changed since; fix the \
                         database by hand and use resolve --applied or --rolled-back",
                        info.completed, m.name
                    ),
                ));
            }
            let mut exec = Exec {
                db,
                lock: &mut lock,
                actor: &self.actor,
            };
            let outcome = exec.resume(&step, &info).await?;
            Ok(single_report(info.direction, &m, outcome))
        }
        .await;
        lock.release().await;
        result
    }

    /// Declares a dirty (or any) migration applied or rolled back, running nothing.
    pub async fn resolve(&self, db: &Db, id: &str, applied: bool) -> ApiResult<Migration> {
        let mut lock = self.lock(db, None).await?;
        let result = async {
            let m = store::find(db, &mut **lock.conn(), id)
                .await?
                .ok_or_else(|| super::not_found(id))?;
            let now = time::now();
            let mut tx = super::lock::begin_on(db, lock.conn()).await?;
            let direction = if applied {
                store::mark_executed(db, &mut *tx, &m, &now, &split::checksum(&m.up_script), 0)
                    .await?;
                "resolve_applied"
            } else {
                store::mark_rolled_back(db, &mut *tx, &m.id, &now).await?;
                "resolve_rolled_back"
            };
            let step = plan::Step {
                migration: m.clone(),
                script: String::new(),
                statements: Vec::new(),
                mode: plan::Mode::Transaction,
                reason: None,
            };
            let entry = super::exec::history(&step, direction, &now, 0, None, &self.actor);
            store::insert_history(db, &mut *tx, &entry).await?;
            tx.commit().await?;
            Ok(store::find(db, db.pool(), id).await?.unwrap_or(m))
        }
        .await;
        lock.release().await;
        result
    }
}

async fn find_dirty(db: &Db, lock: &mut MigrationLock, id: &str) -> ApiResult<Migration> {
    let m = store::find(db, &mut **lock.conn(), id)
        .await?
        .ok_or_else(|| super::not_found(id))?;
    if !m.dirty {
        return Err(not_dirty(&m));
    }
    Ok(m)
}

fn not_dirty(m: &Migration) -> ApiError {
    ApiError::conflict(
        "not_dirty",
        format!("migration {:?} is not dirty; nothing to resume", m.name),
    )
}

fn single_report(dir: Direction, m: &Migration, outcome: Outcome) -> RunReport {
    let migration = MigrationRef::from(m);
    let (applied, failed) = match outcome {
        Outcome::Done { ms } => (
            vec![Applied {
                migration,
                duration_ms: ms,
            }],
            None,
        ),
        Outcome::Failed { error, dirty } => (
            Vec::new(),
            Some(Failed {
                migration,
                error,
                dirty,
            }),
        ),
    };
    RunReport {
        direction: dir,
        dry_run: false,
        applied,
        failed,
        not_attempted: Vec::new(),
        plan: Vec::new(),
    }
}

pub fn sorted(mut all: Vec<Migration>) -> Vec<Migration> {
    all.sort_by(super::model::order);
    all
}

impl RunReport {
    fn not_dry(mut self) -> RunReport {
        self.dry_run = false;
        self
    }
}

fn dry(direction: Direction, steps: &[Step]) -> RunReport {
    RunReport {
        direction,
        dry_run: true,
        applied: Vec::new(),
        failed: None,
        not_attempted: Vec::new(),
        plan: steps.iter().map(Step::item).collect(),
    }
}

pub fn lock_error(e: LockError) -> ApiError {
    match e {
        LockError::Timeout { ref holder, .. } => ApiError::Conflict {
            code: "locked",
            message: e.to_string(),
            details: json!({ "holder": holder }),
        },
        LockError::Lost => ApiError::conflict("lock_lost", e.to_string()),
        LockError::Sqlx(s) => s.into(),
    }
}

/// A refusal as an API error (stable codes; the CLI maps them to exit codes).
pub fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::BadInput(m) => ApiError::bad_request("invalid_option", m),
        Refusal::Dirty(list) => dirty_error(&list),
        Refusal::OutOfOrder(list) => ApiError::Conflict {
            code: "out_of_order",
            message: format!(
                "{} pending migration(s) are ordered before an executed one ({}); pass \
                 outOfOrder to apply them anyway",
                list.len(),
                names(&list)
            ),
            details: json!({ "migrations": list }),
        },
        Refusal::NoDownScript(list) => ApiError::Conflict {
            code: "no_down_script",
            message: format!("no down script was stored when applying {}", names(&list)),
            details: json!({ "migrations": list }),
        },
        Refusal::NothingToRollBack => {
            ApiError::conflict("nothing_to_roll_back", "no executed migration to roll back")
        }
        Refusal::InvalidScript(m, msg) => ApiError::Unprocessable {
            code: "invalid_script",
            message: format!("migration {:?}: {msg}", m.name),
            details: json!({ "migration": m }),
        },
    }
}

fn left_behind(indexes: &[String]) -> String {
    if indexes.is_empty() {
        return String::new();
    }
    format!(
        "; INVALID indexes now in the database (a failed CREATE INDEX CONCURRENTLY leaves one; drop it before resume): {}",
        indexes.join(", ")
    )
}

fn names(list: &[MigrationRef]) -> String {
    let n: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    n.join(", ")
}

/// "Dirty" says what is known: statements completed, the failing one, the error.
fn dirty_error(list: &[Migration]) -> ApiError {
    let what: Vec<String> = list
        .iter()
        .map(|m| match &m.dirty_info {
            Some(i) => format!(
                "{:?} ({}): {} of {} statements completed; failed at: {}; error: {}{}",
                m.name,
                i.direction.as_str(),
                i.completed,
                i.total,
                i.failed_statement.as_deref().unwrap_or("(interrupted)"),
                i.error
                    .as_deref()
                    .unwrap_or("(none recorded: the runner stopped)"),
                left_behind(&i.invalid_indexes)
            ),
            None => format!("{:?}", m.name),
        })
        .collect();
    let details: Vec<serde_json::Value> = list
        .iter()
        .map(|m| json!({ "id": m.id, "name": m.name, "version": m.version, "dirtyInfo": m.dirty_info }))
        .collect();
    ApiError::Conflict {
        code: "dirty",
        message: format!(
            "a partially applied migration blocks the run: {}. Fix the database, then \
             `opshub migrate resume ID` or `opshub migrate resolve ID --applied|--rolled-back`",
            what.join("; ")
        ),
        details: json!({ "migrations": details }),
    }
}
