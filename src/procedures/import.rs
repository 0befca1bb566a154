//! Import of Flyway repeatable scripts (`R__<name>.sql`) as procedure records, matched by
//! name (the part after `R__`), type from the script's CREATE. An unchanged file writes
//! nothing, so importing twice is a no-op; a changed file updates the record's script, so
//! a deployed procedure then reads as `changed` and deploy-all redeploys it. Used by
//! `opshub proc import DIR` and, inside its own transaction, by `opshub migrate import`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::model::{self, NewProcedure, ProcRef, Procedure};
use super::store;
use crate::db::{Db, time};
use crate::error::{ApiError, ApiResult};
use crate::migrations::run::Runner;
use crate::migrations::source::{self, files::Repeatable};

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ProcedureImportReport)]
pub struct ImportReport {
    pub created: Vec<ProcRef>,
    pub updated: Vec<ProcRef>,
    pub unchanged: usize,
}

/// `opshub proc import DIR`: the folder's repeatable scripts, under the migration lock
/// and in one transaction (a bad file writes nothing).
pub async fn import_dir(db: &Db, runner: &Runner, dir: &Path) -> ApiResult<ImportReport> {
    let set = crate::migrations::import::read_dir(db, dir)?;
    let mut lock = runner.lock(db, None).await?;
    let result = async {
        let mut tx = crate::migrations::lock::begin_on(db, lock.conn()).await?;
        let report = upsert(db, &mut tx, &set.repeatables).await?;
        tx.commit().await?;
        Ok(report)
    }
    .await;
    lock.release().await;
    result
}

/// Upserts `files` on `conn` (inside the caller's transaction).
pub async fn upsert(
    db: &Db,
    conn: &mut AnyConnection,
    files: &[Repeatable],
) -> ApiResult<ImportReport> {
    let dialect = source::dialect(db.dialect());
    let existing: HashMap<String, Procedure> = store::all(db, &mut *conn)
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let mut known: BTreeSet<String> = existing.keys().cloned().collect();
    known.extend(files.iter().map(|f| f.name.clone()));
    let mut report = ImportReport::default();
    for f in files {
        let bad = |e: model::Invalid| {
            ApiError::unprocessable(
                "invalid_folder",
                format!("{}: {}", f.source_file, e.message),
            )
        };
        let (ty, _) = model::analyze(&f.script, None, dialect).map_err(bad)?;
        match existing.get(&f.name) {
            Some(p) if p.up_script == f.script => report.unchanged += 1,
            Some(p) => {
                let mut p = p.clone();
                p.up_script = f.script.clone();
                p.proc_type = ty;
                p.hash = crate::migrations::source::split::checksum(&p.up_script);
                p.updated_at = time::now();
                model::validate(&p, dialect, &known).map_err(bad)?;
                store::update_fields(db, &mut *conn, &p).await?;
                report.updated.push(ProcRef::from(&p));
            }
            None => {
                let p = Procedure::pending(
                    NewProcedure {
                        name: f.name.clone(),
                        proc_type: Some(ty),
                        version: "1".into(),
                        sort: 0,
                        up_script: f.script.clone(),
                        down_script: None,
                        depends_on: Vec::new(),
                    },
                    ty,
                );
                model::validate(&p, dialect, &known).map_err(bad)?;
                store::insert(db, &mut *conn, &p).await?;
                report.created.push(ProcRef::from(&p));
            }
        }
    }
    Ok(report)
}
