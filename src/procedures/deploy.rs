//! Deploy and rollback, under the migration lock (one lock for everything that changes
//! the user's schema). Each procedure deploys in its own transaction: its script, the
//! catalog read-back and its record update commit together on PostgreSQL and SQLite. On
//! MySQL/MariaDB DDL commits implicitly, so the script runs statement by statement and
//! the record is written after it. The first failure stops a deploy-all, is recorded as
//! `lastError`, and the report says what was deployed and what was not attempted.

use std::time::Instant;

use serde_json::json;
use sqlx::AssertSqlSafe;

use super::catalog::{self, Rendered};
use super::model::{
    self, DeployFailed, DeployOptions, DeployReport, Deployed, PlanItem, ProcRef, Procedure,
};
use super::store;
use crate::db::{Db, Dialect, time};
use crate::error::{ApiError, ApiResult};
use crate::migrations::lock::{self, MigrationLock};
use crate::migrations::run::Runner;
use crate::migrations::source::{self, split};

/// Deploys every procedure that is pending or changed, dependencies first.
pub async fn deploy_all(db: &Db, runner: &Runner, opts: &DeployOptions) -> ApiResult<DeployReport> {
    // Options are checked even when there is nothing to do, as for one procedure.
    Runner::check_timeout(opts.lock_timeout)?;
    if opts.dry_run {
        let plan = plan_all(store::all(db, db.pool()).await?)?;
        return Ok(dry(&plan));
    }
    // Nothing to do in one consistent read: answer without taking the lock.
    if store::count_actionable(db).await? == 0 {
        let mut r = dry(&[]);
        r.dry_run = false;
        return Ok(r);
    }
    let mut lock = runner.lock(db, opts.lock_timeout).await?;
    let result = async {
        let plan = plan_all(store::all(db, &mut **lock.conn()).await?)?;
        execute(db, &mut lock, &plan).await
    }
    .await;
    lock.release().await;
    result
}

/// Deploys one procedure whatever its state (a drifted one is restored this way). Its
/// dependencies must be deployed already.
pub async fn deploy_one(
    db: &Db,
    runner: &Runner,
    id: &str,
    opts: &DeployOptions,
) -> ApiResult<DeployReport> {
    if opts.dry_run {
        let all = store::all(db, db.pool()).await?;
        return Ok(dry(&plan_one(&all, id)?));
    }
    let mut lock = runner.lock(db, opts.lock_timeout).await?;
    let result = async {
        let all = store::all(db, &mut **lock.conn()).await?;
        let plan = plan_one(&all, id)?;
        execute(db, &mut lock, &plan).await
    }
    .await;
    lock.release().await;
    result
}

type Plan = Vec<(Procedure, &'static str)>;

fn plan_all(all: Vec<Procedure>) -> ApiResult<Plan> {
    let ordered = model::deploy_order(all).map_err(super::cycle)?;
    Ok(ordered
        .into_iter()
        .filter_map(|p| {
            let reason = if !p.is_executed {
                "pending"
            } else if p.changed() {
                "changed"
            } else {
                return None;
            };
            Some((p, reason))
        })
        .collect())
}

fn plan_one(all: &[Procedure], id: &str) -> ApiResult<Plan> {
    let p = all
        .iter()
        .find(|p| p.id == id || p.name == id)
        .ok_or_else(|| super::not_found(id))?;
    let waiting: Vec<&str> = p
        .depends_on
        .iter()
        .filter(|d| !all.iter().any(|o| &o.name == *d && o.is_executed))
        .map(String::as_str)
        .collect();
    if !waiting.is_empty() {
        return Err(ApiError::Conflict {
            code: "dependencies_not_deployed",
            message: format!(
                "{:?} depends on {} which is not deployed; deploy it first (or deploy all)",
                p.name,
                waiting.join(", ")
            ),
            details: json!({ "dependencies": waiting }),
        });
    }
    Ok(vec![(p.clone(), "requested")])
}

fn dry(plan: &[(Procedure, &'static str)]) -> DeployReport {
    DeployReport {
        dry_run: true,
        plan: plan
            .iter()
            .map(|(p, reason)| PlanItem {
                procedure: ProcRef::from(p),
                version: p.version.clone(),
                sort: p.sort,
                reason: (*reason).to_string(),
                up_script: p.up_script.clone(),
            })
            .collect(),
        deployed: Vec::new(),
        failed: None,
        not_attempted: Vec::new(),
    }
}

async fn execute(db: &Db, lock: &mut MigrationLock, plan: &Plan) -> ApiResult<DeployReport> {
    let mut report = dry(&[]);
    report.dry_run = false;
    for (i, (p, _)) in plan.iter().enumerate() {
        let t0 = Instant::now();
        let relaxed = i + 1 < plan.len();
        match deploy_step(db, lock, p, relaxed).await? {
            Ok(()) => report.deployed.push(Deployed {
                procedure: ProcRef::from(p),
                duration_ms: i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX),
            }),
            Err(error) => {
                tracing::warn!(procedure = %p.name, %error, "procedure deploy failed");
                store::mark_failed(db, db.pool(), &p.id, &error, &time::now()).await?;
                report.failed = Some(DeployFailed {
                    procedure: ProcRef::from(p),
                    error,
                });
                report.not_attempted = plan[i + 1..]
                    .iter()
                    .map(|(p, _)| ProcRef::from(p))
                    .collect();
                break;
            }
        }
    }
    Ok(report)
}

/// Deploys one procedure. The outer error is opshub's own failure; the inner one is the
/// procedure's (its script failed, or it did not create what its type says).
async fn deploy_step(
    db: &Db,
    lock: &mut MigrationLock,
    p: &Procedure,
    relaxed: bool,
) -> ApiResult<Result<(), String>> {
    let dialect = source::dialect(db.dialect());
    let (_, created) =
        model::analyze(&p.up_script, Some(p.proc_type), dialect).map_err(super::invalid)?;
    let drops = catalog::drops(db.dialect(), &created);
    if db.dialect() == Dialect::Mysql {
        return mysql_step(db, lock, p, &created, drops).await;
    }
    let owner = lock.owner().to_string();
    let mut tx = lock::begin_on(db, lock.work().await?).await?;
    if db.dialect() == Dialect::Sqlite {
        lock::renew(db, &mut *tx, &owner)
            .await
            .map_err(crate::migrations::run::lock_error)?;
    }
    let mut script = String::new();
    if relaxed && db.dialect() == Dialect::Postgres {
        // More deploys follow: the last commit of the run flushes the WAL for all.
        script.push_str("SET LOCAL synchronous_commit = off;\n");
    }
    for d in &drops {
        script.push_str(d);
        script.push_str(";\n");
    }
    // The script's first line comes after one line per drop.
    let first_line = isize::try_from(drops.len()).ok().map(|n| 1 - n);
    script.push_str(&p.up_script);
    if let Err(e) = sqlx::raw_sql(AssertSqlSafe(script.as_str()))
        .execute(&mut *tx)
        .await
    {
        tx.rollback().await?;
        return Ok(Err(crate::db::error_text(&e, &script, first_line)));
    }
    let (live, keys) = if db.dialect() == Dialect::Postgres {
        let live = catalog::written_here(db, &mut tx).await?;
        let mut keys: Vec<String> = live.keys().cloned().collect();
        keys.sort();
        (live, keys)
    } else {
        let live = catalog::live(db, &mut tx).await?;
        (live, created.iter().map(catalog::key_of).collect())
    };
    let rendered = match read_back(p, &live, keys) {
        Ok(r) => r,
        Err(e) => {
            tx.rollback().await?;
            return Ok(Err(e));
        }
    };
    store::mark_deployed(db, &mut *tx, p, &rendered, &time::now()).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// The rendered definitions, provided the script left an object of the record's type.
fn read_back(p: &Procedure, live: &catalog::Live, keys: Vec<String>) -> Result<Rendered, String> {
    let (present, missing): (Vec<String>, Vec<String>) =
        keys.into_iter().partition(|k| live.contains_key(k));
    if !present.iter().any(|k| catalog::is_of(k, p.proc_type)) {
        return Err(format!(
            "the script ran but no {} it creates is in the catalog afterwards (missing: {})",
            p.proc_type.as_str(),
            if missing.is_empty() {
                "nothing new was written".to_string()
            } else {
                missing.join(", ")
            }
        ));
    }
    Ok(catalog::render(&present, live).0)
}

/// MySQL/MariaDB: DDL commits implicitly, so statements run one by one (DELIMITER
/// handled by the splitter) and the record is written once the catalog is read back.
async fn mysql_step(
    db: &Db,
    lock: &mut MigrationLock,
    p: &Procedure,
    created: &[model::Created],
    drops: Vec<String>,
) -> ApiResult<Result<(), String>> {
    let statements = match split::split(&p.up_script, split::Dialect::MySql) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let conn = lock.work().await?;
    let all = drops
        .into_iter()
        .chain(statements.into_iter().map(|s| s.text));
    for stmt in all {
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(stmt))
            .execute(&mut **conn)
            .await
        {
            return Ok(Err(crate::db::error_text(&e, "", None)));
        }
    }
    let live = catalog::live(db, conn).await?;
    let rendered = match read_back(p, &live, created.iter().map(catalog::key_of).collect()) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    store::mark_deployed(db, &mut **conn, p, &rendered, &time::now()).await?;
    Ok(Ok(()))
}

/// Runs the procedure's `downScript` and marks it not deployed; refused (409
/// `no_down_script`) without one, or when it is not deployed.
pub async fn rollback(
    db: &Db,
    runner: &Runner,
    id: &str,
    lock_timeout: Option<u64>,
) -> ApiResult<Procedure> {
    let mut lock = runner.lock(db, lock_timeout).await?;
    let result = rollback_locked(db, &mut lock, id).await;
    lock.release().await;
    result
}

async fn rollback_locked(db: &Db, lock: &mut MigrationLock, id: &str) -> ApiResult<Procedure> {
    let p = store::find(db, &mut **lock.conn(), id)
        .await?
        .ok_or_else(|| super::not_found(id))?;
    if !p.is_executed {
        return Err(ApiError::conflict(
            "not_deployed",
            format!(
                "procedure {:?} is not deployed; nothing to roll back",
                p.name
            ),
        ));
    }
    let Some(down) = p.down_script.clone() else {
        return Err(ApiError::Conflict {
            code: "no_down_script",
            message: format!(
                "procedure {:?} has no downScript; add one to roll it back",
                p.name
            ),
            details: json!({ "id": p.id }),
        });
    };
    let outcome = if db.dialect() == Dialect::Mysql {
        run_mysql(lock.work().await?, &down).await
    } else {
        let mut tx = lock::begin_on(db, lock.work().await?).await?;
        match sqlx::raw_sql(AssertSqlSafe(down)).execute(&mut *tx).await {
            Ok(_) => {
                store::mark_rolled_back(db, &mut *tx, &p.id, &time::now()).await?;
                tx.commit().await?;
                Ok(())
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e.to_string())
            }
        }
    };
    match outcome {
        Ok(()) => {
            if db.dialect() == Dialect::Mysql {
                store::mark_rolled_back(db, db.pool(), &p.id, &time::now()).await?;
            }
            Ok(store::find(db, db.pool(), &p.id).await?.unwrap_or(p))
        }
        Err(error) => {
            store::mark_failed(db, db.pool(), &p.id, &error, &time::now()).await?;
            Err(ApiError::Unprocessable {
                code: "rollback_failed",
                message: format!("the downScript of {:?} failed: {error}", p.name),
                details: json!({ "id": p.id }),
            })
        }
    }
}

async fn run_mysql(conn: &mut sqlx::AnyConnection, script: &str) -> Result<(), String> {
    let statements = split::split(script, split::Dialect::MySql).map_err(|e| e.to_string())?;
    for s in statements {
        sqlx::raw_sql(AssertSqlSafe(s.text))
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
