//! Drift: per procedure, has the code changed since deploy (`hash` ≠ `deployedHash`), and
//! does the live catalog still render what it rendered right after the deploy
//! (`catalogHash`)? Comparing catalog text with catalog text means a server's cosmetic
//! re-rendering of a definition never reads as drift. The catalog is read once, set-based.

use std::collections::BTreeMap;

use super::catalog;
use super::diff;
use super::model::{self, DriftItem, DriftReport, DriftState, ProcRef};
use super::store;
use crate::db::Db;
use crate::error::ApiResult;

pub async fn drift(db: &Db) -> ApiResult<DriftReport> {
    let mut all = store::all(db, db.pool()).await?;
    all.sort_by(model::order);
    let live = if all.iter().any(|p| p.is_executed) {
        let mut conn = db.pool().acquire().await?;
        catalog::live(db, &mut conn).await?
    } else {
        catalog::Live::new()
    };
    let items: Vec<DriftItem> = all
        .iter()
        .map(|p| {
            if !p.is_executed {
                return item(p, DriftState::Pending, None, Vec::new(), None);
            }
            let (now, missing) = catalog::render(&p.catalog_keys, &live);
            let drifted = p.catalog_hash.as_deref() != Some(now.hash.as_str());
            let state = DriftState::of(true, !missing.is_empty(), p.changed(), drifted);
            let diff = drifted.then(|| {
                diff::unified(
                    p.catalog_def.as_deref().unwrap_or(""),
                    &now.text,
                    "deployed",
                    "live",
                )
            });
            item(p, state, Some(now.hash), missing, diff)
        })
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in &items {
        *counts.entry(i.state.as_str().to_string()).or_default() += 1;
    }
    Ok(DriftReport {
        in_sync: items.iter().all(|i| i.state == DriftState::InSync),
        counts,
        items,
    })
}

fn item(
    p: &model::Procedure,
    state: DriftState,
    live_hash: Option<String>,
    missing_objects: Vec<String>,
    diff: Option<String>,
) -> DriftItem {
    DriftItem {
        procedure: ProcRef::from(p),
        state,
        hash: p.hash.clone(),
        deployed_hash: p.deployed_hash.clone(),
        catalog_hash: p.catalog_hash.clone(),
        live_hash,
        missing_objects,
        diff,
    }
}
