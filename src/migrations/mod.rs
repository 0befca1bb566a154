//! Versioned schema migrations (SPEC §3): records with their execution state kept in the
//! managed database itself, a runner that locks first and then plans, one transaction per
//! migration (script + record + history), statement-by-statement execution with recorded
//! progress where a transaction is impossible, rollback with the down script stored at
//! apply time, validation, baseline, and import of Flyway / golang-migrate / sqlx / dbmate
//! folders. This file holds the record operations (CRUD); the rest has a file each.

pub mod api;
pub mod cli;
mod exec;
pub mod import;
pub mod lock;
pub mod model;
mod output;
mod plan;
pub mod run;
pub mod source;
mod store;
pub mod validate;

use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::page::{Page, PageRequest};
use model::{Migration, MigrationPatch, NewMigration};

/// Creates a migration record (inactive unless asked otherwise); nothing is run.
pub async fn create(db: &Db, new: NewMigration) -> ApiResult<Migration> {
    let m = Migration::pending(new);
    model::validate(&m, source::dialect(db.dialect())).map_err(invalid)?;
    match store::insert(db, db.pool(), &m).await {
        Ok(()) => Ok(m),
        Err(e) if crate::db::is_unique_violation(&e) => Err(duplicate_name(&m.name)),
        Err(e) => Err(e.into()),
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::unprocessable("invalid_migration", message)
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::conflict(
        "duplicate_name",
        format!("a migration named {name:?} exists already"),
    )
}

/// Migrations in natural order (version, executionOrder, name). The cursor is the last
/// item's id; the whole set is ordered in memory because natural version order is not an
/// SQL order (a migration set is hundreds or thousands of rows, not millions).
pub async fn list(db: &Db, page: PageRequest) -> ApiResult<Page<Migration>> {
    let mut all = store::all(db, db.pool()).await?;
    all.sort_by(model::order);
    let start = match &page.after {
        Some(after) => all
            .iter()
            .position(|m| &m.id == after)
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let items: Vec<Migration> = all
        .into_iter()
        .skip(start)
        .take(page.limit as usize + 1)
        .collect();
    Ok(Page::from_overfetch(items, page.limit, |m| m.id.clone()))
}

pub async fn get(db: &Db, id: &str) -> ApiResult<Migration> {
    store::find(db, db.pool(), id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found("migration_not_found", format!("no migration with id {id}"))
}

/// Updates a migration. Scripts, version and transactional mode of an executed migration
/// are frozen: 409 `migration_executed`.
pub async fn update(db: &Db, id: &str, patch: MigrationPatch) -> ApiResult<Migration> {
    let mut tx = db.begin_write().await?;
    let current = store::find(db, &mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    // A dirty migration stays editable: fixing its failed statement precedes a resume.
    if current.is_executed && patch.touches_scripts(&current) {
        return Err(executed(&current, "changed"));
    }
    let mut m = patch.apply(current);
    model::validate(&m, source::dialect(db.dialect())).map_err(invalid)?;
    m.updated_at = time::now();
    match store::update_fields(db, &mut *tx, &m).await {
        Ok(()) => {}
        Err(e) if crate::db::is_unique_violation(&e) => return Err(duplicate_name(&m.name)),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(m)
}

fn executed(m: &Migration, what: &str) -> ApiError {
    ApiError::Conflict {
        code: "migration_executed",
        message: format!(
            "migration {:?} is executed{}; its scripts cannot be {what} (roll it back first, \
             or add a new migration)",
            m.name,
            if m.dirty { " (partially: dirty)" } else { "" }
        ),
        details: serde_json::json!({ "id": m.id, "executedAt": m.executed_at }),
    }
}

/// Deletes a migration that has not been executed.
pub async fn delete(db: &Db, id: &str) -> ApiResult<Migration> {
    let mut tx = db.begin_write().await?;
    let m = store::find(db, &mut *tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if m.is_executed || m.dirty {
        return Err(executed(&m, "deleted"));
    }
    store::delete_unexecuted(db, &mut *tx, id).await?;
    tx.commit().await?;
    Ok(m)
}

/// The append-only history, newest first; optionally of one migration.
pub async fn history(
    db: &Db,
    page: PageRequest,
    migration_id: Option<&str>,
) -> ApiResult<Page<model::HistoryEntry>> {
    let items = store::history(db, page.after.as_deref(), migration_id, page.limit + 1).await?;
    Ok(Page::from_overfetch(items, page.limit, |h| h.id.clone()))
}
