//! `opshub migrate import DIR`: upserts records from a Flyway, golang-migrate / sqlx or
//! dbmate folder, as active migrations, matched by name (`<version>_<description>`).
//! Under the migration lock and in one transaction, so concurrent `migrate up --dir` runs
//! import once. A file whose executed migration was applied with different text is a
//! validation failure (409 `checksum_mismatch`, exit 4) and nothing is written; a
//! whitespace/comment-only difference is a warning. Repeatable `R__` scripts are handed to
//! the procedures import in the same transaction (upserted as procedure records).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::model::{self, Migration, MigrationRef, NewMigration};
use super::run::Runner;
use super::source;
use super::source::files::{self, ImportSet, ImportedMigration};
use super::source::split::{self, Dialect};
use super::store;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MigrationImportReport)]
pub struct ImportReport {
    pub created: Vec<MigrationRef>,
    pub updated: Vec<MigrationRef>,
    pub unchanged: usize,
    /// Repeatable scripts (`R__*.sql`), imported as procedures.
    pub repeatables: crate::procedures::import::ImportReport,
    pub warnings: Vec<String>,
}

/// Reads a folder; a malformed folder is bad input (422 `invalid_folder`).
pub fn read_dir(db: &Db, dir: &Path) -> ApiResult<ImportSet> {
    files::parse_dir(dir, source::dialect(db.dialect()))
        .map_err(|e| ApiError::unprocessable("invalid_folder", e.to_string()))
}

impl Runner {
    pub async fn import(&self, db: &Db, set: ImportSet) -> ApiResult<ImportReport> {
        let mut lock = self.lock(db, None).await?;
        let result = import_locked(db, &mut lock, set).await;
        lock.release().await;
        result
    }
}

async fn import_locked(
    db: &Db,
    lock: &mut super::lock::MigrationLock,
    set: ImportSet,
) -> ApiResult<ImportReport> {
    let dialect = source::dialect(db.dialect());
    let mut report = ImportReport::default();
    let mut tx = super::lock::begin_on(db, lock.conn()).await?;
    report.repeatables = crate::procedures::import::upsert(db, &mut tx, &set.repeatables).await?;
    let existing: HashMap<String, Migration> = store::all(db, &mut *tx)
        .await?
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    let mut changed_executed = Vec::new();
    for file in set.migrations {
        match decide(&file, existing.get(&file.name), dialect) {
            Action::Create(m) => {
                model::validate(&m, dialect).map_err(|e| invalid(&file, e))?;
                store::insert(db, &mut *tx, &m).await?;
                report.created.push(MigrationRef::from(&m));
            }
            Action::Update(m) => {
                model::validate(&m, dialect).map_err(|e| invalid(&file, e))?;
                store::update_fields(db, &mut *tx, &m).await?;
                report.updated.push(MigrationRef::from(&m));
            }
            Action::Unchanged(warning) => {
                report.unchanged += 1;
                report.warnings.extend(warning);
            }
            Action::ChangedExecuted(what) => changed_executed.push(what),
        }
    }
    if !changed_executed.is_empty() {
        tx.rollback().await?;
        return Err(ApiError::Conflict {
            code: "checksum_mismatch",
            message: format!(
                "{} file(s) differ from migrations that are already executed; an executed \
                 migration's script is never rewritten (add a new migration instead). Nothing \
                 was imported",
                changed_executed.len()
            ),
            details: json!({ "changed": changed_executed }),
        });
    }
    tx.commit().await?;
    Ok(report)
}

/// What importing one file does to the records.
enum Action {
    Create(Migration),
    Update(Migration),
    /// Nothing to write; maybe a warning (a cosmetic change to an executed script).
    Unchanged(Option<String>),
    /// The file differs from what an executed migration applied: refused.
    ChangedExecuted(serde_json::Value),
}

fn decide(file: &ImportedMigration, current: Option<&Migration>, dialect: Dialect) -> Action {
    let Some(current) = current else {
        return Action::Create(record(file));
    };
    if current.is_executed || current.dirty {
        let applied = current
            .checksum
            .clone()
            .unwrap_or_else(|| split::checksum(&current.up_script));
        if split::checksum(&file.up_script) == applied {
            return Action::Unchanged(None);
        }
        let cosmetic = current.applied_up.as_deref().is_some_and(|a| {
            split::normalize_for_compare(a, dialect)
                == split::normalize_for_compare(&file.up_script, dialect)
        });
        if cosmetic {
            return Action::Unchanged(Some(format!(
                "{}: only whitespace or comments differ from the applied script",
                file.source_file
            )));
        }
        return Action::ChangedExecuted(
            json!({ "file": file.source_file, "migration": MigrationRef::from(current) }),
        );
    }
    let mut m = record(file);
    m.id = current.id.clone();
    m.created_at = current.created_at.clone();
    // A migration someone deactivated stays inactive; imports only add active ones.
    m.is_active = current.is_active;
    m.execution_order = current.execution_order;
    if same(current, &m) {
        Action::Unchanged(None)
    } else {
        Action::Update(m)
    }
}

fn record(f: &ImportedMigration) -> Migration {
    Migration::pending(NewMigration {
        name: f.name.clone(),
        version: f.version.as_str().to_string(),
        execution_order: 0,
        description: f.description.clone(),
        up_script: f.up_script.clone(),
        down_script: f.down_script.clone(),
        transactional: f.transactional,
        is_active: true,
    })
}

fn same(a: &Migration, b: &Migration) -> bool {
    a.version == b.version
        && a.description == b.description
        && a.up_script == b.up_script
        && a.down_script == b.down_script
        && a.transactional == b.transactional
}

fn invalid(f: &ImportedMigration, e: String) -> ApiError {
    ApiError::unprocessable("invalid_folder", format!("{}: {e}", f.source_file))
}
