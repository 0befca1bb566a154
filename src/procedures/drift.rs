//! Drift: per procedure, has the code changed since deploy (`hash` ≠ `deployedHash`), and
//! does the live catalog still render what it rendered right after the deploy
//! (`catalogHash`)? Comparing catalog text with catalog text means a server's cosmetic
//! re-rendering of a definition never reads as drift. The catalog is read once, set-based.

use std::collections::BTreeMap;

use super::catalog;
use super::diff;
use super::model::{self, DriftItem, DriftReport, DriftState, ProcRef, Procedure};
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
    let items: Vec<DriftItem> = all.iter().map(|p| assess(p, &live).0).collect();
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

/// One procedure's drift item and the text its objects render as now (deployed only).
fn assess(p: &Procedure, live: &catalog::Live) -> (DriftItem, Option<String>) {
    if !p.is_executed {
        return (item(p, DriftState::Pending, None, Vec::new(), None), None);
    }
    let (now, missing) = catalog::render(&p.catalog_keys, live);
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
    (
        item(p, state, Some(now.hash), missing, diff),
        Some(now.text),
    )
}

/// One procedure's drift with both definitions: what the database rendered right after
/// the deploy and what it renders now (both `None` until deployed).
#[derive(Debug, Clone)]
pub struct Detail {
    pub procedure: Procedure,
    pub item: DriftItem,
    pub deployed: Option<String>,
    pub live: Option<String>,
}

/// [`drift`] of one procedure (by id or name), with its deployed and live definitions.
pub async fn detail(db: &Db, id: &str) -> ApiResult<Detail> {
    let p = super::get(db, id).await?;
    let live = if p.is_executed {
        let mut conn = db.pool().acquire().await?;
        catalog::live(db, &mut conn).await?
    } else {
        catalog::Live::new()
    };
    let (item, now) = assess(&p, &live);
    Ok(Detail {
        deployed: p
            .is_executed
            .then(|| p.catalog_def.clone().unwrap_or_default()),
        live: now,
        item,
        procedure: p,
    })
}

fn item(
    p: &Procedure,
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
