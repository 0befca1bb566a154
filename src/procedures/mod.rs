//! Procedures (SPEC §4): functions, procedures, triggers and views kept as records whose
//! scripts opshub deploys under the migration lock, one transaction each, and whose live
//! definitions it compares with what the database rendered right after the deploy, so
//! drift is caught both in code (`changed`) and in the database (`drifted`, `missing`).
//! This file holds the record operations (CRUD and their validation); deploy, drift and
//! import have a file each.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod deploy;
pub mod diff;
pub mod drift;
pub mod import;
pub mod model;
pub mod report;
mod store;

use std::collections::BTreeSet;

use serde_json::json;

use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::migrations::source;
use crate::page::{Page, PageRequest};
use model::{Invalid, NewProcedure, Procedure, ProcedurePatch};

/// Creates a procedure record; nothing is deployed. The type comes from the script.
pub async fn create(db: &Db, new: NewProcedure) -> ApiResult<Procedure> {
    let dialect = source::dialect(db.dialect());
    let (ty, _) = model::analyze(&new.up_script, new.proc_type, dialect).map_err(invalid)?;
    let p = Procedure::pending(new, ty);
    let mut tx = db.begin_write().await?;
    let all = store::all(db, &mut *tx).await?;
    let known: BTreeSet<String> = all.iter().map(|o| o.name.clone()).collect();
    model::validate(&p, dialect, &known).map_err(invalid)?;
    match store::insert(db, &mut *tx, &p).await {
        Ok(()) => {}
        Err(e) if crate::db::is_unique_violation(&e) => return Err(duplicate_name(&p.name)),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(p)
}

pub(crate) fn invalid(e: Invalid) -> ApiError {
    ApiError::unprocessable(e.code, e.message)
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::conflict(
        "duplicate_name",
        format!("a procedure named {name:?} exists already"),
    )
}

/// Procedures in deploy order's tie-break (version, sort, name); the cursor is an id.
pub async fn list(db: &Db, page: PageRequest) -> ApiResult<Page<Procedure>> {
    let mut all = store::all(db, db.pool()).await?;
    all.sort_by(model::order);
    let start = match &page.after {
        Some(after) => all
            .iter()
            .position(|p| &p.id == after)
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let items: Vec<Procedure> = all
        .into_iter()
        .skip(start)
        .take(page.limit as usize + 1)
        .collect();
    Ok(Page::from_overfetch(items, page.limit, |p| p.id.clone()))
}

/// One procedure, by id or by name.
pub async fn get(db: &Db, id: &str) -> ApiResult<Procedure> {
    store::find(db, db.pool(), id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "procedure_not_found",
        format!("no procedure with id or name {id:?}"),
    )
}

/// Updates a procedure. Editing a deployed one's script is allowed: it then reads as
/// `changed` until deployed again. A rename is refused while others depend on the name.
pub async fn update(db: &Db, id: &str, patch: ProcedurePatch) -> ApiResult<Procedure> {
    let dialect = source::dialect(db.dialect());
    let mut tx = db.begin_write().await?;
    let all = store::all(db, &mut *tx).await?;
    let current = all
        .iter()
        .find(|p| p.id == id || p.name == id)
        .cloned()
        .ok_or_else(|| not_found(id))?;
    let renamed = patch.name.as_ref().is_some_and(|n| *n != current.name);
    if renamed {
        refuse_if_depended_on(&all, &current, "renamed")?;
    }
    let mut p = patch.apply(current.clone());
    let known: BTreeSet<String> = all
        .iter()
        .filter(|o| o.id != p.id)
        .map(|o| o.name.clone())
        .collect();
    model::validate(&p, dialect, &known).map_err(invalid)?;
    let mut next: Vec<Procedure> = all.into_iter().filter(|o| o.id != p.id).collect();
    next.push(p.clone());
    model::deploy_order(next).map_err(cycle)?;
    p.updated_at = time::now();
    match store::update_fields(db, &mut *tx, &p).await {
        Ok(()) => {}
        Err(e) if crate::db::is_unique_violation(&e) => return Err(duplicate_name(&p.name)),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(p)
}

pub(crate) fn cycle(names: Vec<String>) -> ApiError {
    ApiError::Unprocessable {
        code: "dependency_cycle",
        message: format!(
            "dependsOn forms a cycle among {}; no deploy order exists",
            names.join(", ")
        ),
        details: json!({ "procedures": names }),
    }
}

fn refuse_if_depended_on(all: &[Procedure], p: &Procedure, what: &str) -> ApiResult<()> {
    let dependents: Vec<&str> = all
        .iter()
        .filter(|o| o.depends_on.contains(&p.name))
        .map(|o| o.name.as_str())
        .collect();
    if dependents.is_empty() {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "has_dependents",
        message: format!(
            "procedure {:?} cannot be {what}: {} depend(s) on it",
            p.name,
            dependents.join(", ")
        ),
        details: json!({ "dependents": dependents }),
    })
}

/// Deletes a procedure record that is not deployed (roll it back first) and that no
/// other procedure depends on. The database object is never touched here.
pub async fn delete(db: &Db, id: &str) -> ApiResult<Procedure> {
    let mut tx = db.begin_write().await?;
    let all = store::all(db, &mut *tx).await?;
    let p = all
        .iter()
        .find(|p| p.id == id || p.name == id)
        .cloned()
        .ok_or_else(|| not_found(id))?;
    if p.is_executed {
        return Err(ApiError::Conflict {
            code: "procedure_deployed",
            message: format!(
                "procedure {:?} is deployed; roll it back first (or its object would be left \
                 in the database unmanaged)",
                p.name
            ),
            details: json!({ "id": p.id, "executedAt": p.executed_at }),
        });
    }
    refuse_if_depended_on(&all, &p, "deleted")?;
    store::delete(db, &mut *tx, &p.id).await?;
    tx.commit().await?;
    Ok(p)
}
