//! Read-only checks and bookkeeping over the whole set: `status` (what is pending, out of
//! order or dirty), `validate` (executed scripts changed since apply: an error, or a
//! warning when only whitespace/comments changed) and `baseline` (mark everything up to a
//! version executed without running it, under the lock).

use std::cmp::Ordering;

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{Migration, MigrationRef};
use super::plan;
use super::run::{Runner, sorted};
use super::source::split::{self, Dialect};
use super::source::{self, version};
use super::store;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};

/// One migration's state in `status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusItem {
    #[serde(flatten)]
    pub migration: MigrationRef,
    pub execution_order: i64,
    /// `executed`, `pending`, `out_of_order` (pending, ordered before an executed one),
    /// `dirty` or `inactive`.
    pub state: &'static str,
    pub executed_at: Option<String>,
}

/// The state of every migration, in natural order, with counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub executed: usize,
    pub pending: usize,
    pub out_of_order: usize,
    pub dirty: usize,
    pub inactive: usize,
    pub migrations: Vec<StatusItem>,
}

pub async fn status(db: &Db) -> ApiResult<Status> {
    let all = sorted(store::all(db, db.pool()).await?);
    let late: Vec<String> = plan::out_of_order(&all)
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let migrations: Vec<StatusItem> = all
        .iter()
        .map(|m| StatusItem {
            migration: MigrationRef::from(m),
            execution_order: m.execution_order,
            state: state(m, late.contains(&m.id)),
            executed_at: m.executed_at.clone(),
        })
        .collect();
    let count = |s: &str| migrations.iter().filter(|i| i.state == s).count();
    Ok(Status {
        executed: count("executed"),
        pending: count("pending") + count("out_of_order"),
        out_of_order: count("out_of_order"),
        dirty: count("dirty"),
        inactive: count("inactive"),
        migrations,
    })
}

fn state(m: &Migration, late: bool) -> &'static str {
    match (m.dirty, m.is_executed, m.is_active, late) {
        (true, ..) => "dirty",
        (false, true, ..) => "executed",
        (false, false, false, _) => "inactive",
        (false, false, true, true) => "out_of_order",
        (false, false, true, false) => "pending",
    }
}

/// One finding of `validate`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `checksum_mismatch`, `cosmetic_change`, `out_of_order` or `dirty`.
    pub code: &'static str,
    #[serde(flatten)]
    pub migration: MigrationRef,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationReport {
    /// False when there is any error (warnings do not count).
    pub valid: bool,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

pub async fn validate(db: &Db) -> ApiResult<ValidationReport> {
    let all = sorted(store::all(db, db.pool()).await?);
    Ok(report(&all, source::dialect(db.dialect())))
}

/// The validation of a sorted set, pure.
pub fn report(all: &[Migration], dialect: Dialect) -> ValidationReport {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for m in all.iter().filter(|m| m.is_executed) {
        if let Some(f) = script_change(m, dialect) {
            if f.code == "cosmetic_change" {
                warnings.push(f);
            } else {
                errors.push(f);
            }
        }
    }
    for m in plan::out_of_order(all) {
        errors.push(finding(
            "out_of_order",
            m,
            "pending, but ordered before an executed migration".into(),
        ));
    }
    for m in all.iter().filter(|m| m.dirty) {
        errors.push(finding(
            "dirty",
            m,
            "partially applied; resolve or resume it".into(),
        ));
    }
    ValidationReport {
        valid: errors.is_empty(),
        errors,
        warnings,
    }
}

/// How an executed migration's current script differs from what was applied.
pub fn script_change(m: &Migration, dialect: Dialect) -> Option<Finding> {
    let applied_sum = m.checksum.as_deref()?;
    if split::checksum(&m.up_script) == applied_sum {
        return None;
    }
    let cosmetic = m.applied_up.as_deref().is_some_and(|applied| {
        split::normalize_for_compare(applied, dialect)
            == split::normalize_for_compare(&m.up_script, dialect)
    });
    Some(if cosmetic {
        finding(
            "cosmetic_change",
            m,
            "only whitespace or comments changed since it was applied".into(),
        )
    } else {
        finding(
            "checksum_mismatch",
            m,
            format!(
                "the up script changed since it was applied (checksum {} now, {} applied)",
                short(&split::checksum(&m.up_script)),
                short(applied_sum)
            ),
        )
    })
}

fn short(sum: &str) -> &str {
    sum.get(..12).unwrap_or(sum)
}

fn finding(code: &'static str, m: &Migration, message: String) -> Finding {
    Finding {
        code,
        migration: MigrationRef::from(m),
        message,
    }
}

impl Runner {
    /// Marks every not-executed migration with a version up to `version` (inclusive) as
    /// executed, without running it; returns those marked.
    pub async fn baseline(&self, db: &Db, version: &str) -> ApiResult<Vec<MigrationRef>> {
        version::parse_version(version)
            .map_err(|e| ApiError::bad_request("invalid_option", format!("version: {e}")))?;
        let mut lock = self.lock(db, None).await?;
        let result = baseline_locked(db, &mut lock, version, &self.actor).await;
        lock.release().await;
        result
    }
}

async fn baseline_locked(
    db: &Db,
    lock: &mut super::lock::MigrationLock,
    version: &str,
    actor: &str,
) -> ApiResult<Vec<MigrationRef>> {
    let all = sorted(store::all(db, &mut **lock.conn()).await?);
    plan::check_clean(&all).map_err(super::run::refusal)?;
    let chosen: Vec<&Migration> = all
        .iter()
        .filter(|m| !m.is_executed)
        .filter(|m| version::compare_versions(&m.version, version) != Ordering::Greater)
        .collect();
    let now = time::now();
    let mut tx = super::lock::begin_on(db, lock.conn()).await?;
    for m in &chosen {
        store::mark_executed(db, &mut *tx, m, &now, &split::checksum(&m.up_script), 0).await?;
        let step = plan::step(m, String::new(), source::dialect(db.dialect()))
            .map_err(super::run::refusal)?;
        let entry = super::exec::history(&step, "baseline", &now, 0, None, actor);
        store::insert_history(db, &mut *tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(chosen.into_iter().map(MigrationRef::from).collect())
}
