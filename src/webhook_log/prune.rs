//! Chain verification and retention pruning. Verification walks the rows from the newest
//! checkpoint (or the genesis) to the chain head and names the first bad `seq`. Pruning
//! deletes a prefix of the chain: in one transaction it records a checkpoint (the last
//! pruned seq and its hash) and deletes up to it, which the triggers allow for exactly
//! those rows. It refuses to prune a chain that does not verify, so evidence is not erased.

use serde::Serialize;
use utoipa::ToSchema;

use super::chain::{self, Head};
use super::store;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// Rows read per verification query (bodies included, so kept modest).
const VERIFY_PAGE: u32 = 200;

/// The outcome of walking the chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// True when every row from the checkpoint to the head is intact.
    pub ok: bool,
    pub checked_rows: i64,
    /// The checkpoint verification started from (0 = the first row ever written).
    pub checkpoint_seq: i64,
    pub head_seq: i64,
    pub head_hash: String,
    /// The first row that does not verify.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

pub async fn verify_chain(db: &Db) -> ApiResult<VerifyReport> {
    let head = store::read_head(db).await?;
    let start = store::latest_checkpoint(db)
        .await?
        .unwrap_or_else(Head::genesis);
    let mut report = VerifyReport {
        ok: true,
        checked_rows: 0,
        checkpoint_seq: start.seq,
        head_seq: head.seq,
        head_hash: head.hash.clone(),
        first_bad_seq: None,
        problem: None,
    };
    let mut at = start;
    let broken = loop {
        let rows = store::entries_after(db, at.seq, VERIFY_PAGE).await?;
        let rows: Vec<_> = rows.into_iter().filter(|r| r.seq <= head.seq).collect();
        if rows.is_empty() {
            break tail_problem(&at, &head);
        }
        if let Some(b) = rows
            .iter()
            .find_map(|r| chain::check_next(&mut at, r).err())
        {
            break Some(b);
        }
        report.checked_rows = at.seq - report.checkpoint_seq;
    };
    report.checked_rows = at.seq - report.checkpoint_seq;
    if let Some(b) = broken {
        report.ok = false;
        report.first_bad_seq = Some(b.seq());
        report.problem = Some(b.describe());
    }
    Ok(report)
}

/// After the last row: the head must be exactly where the walk ended.
fn tail_problem(at: &Head, head: &Head) -> Option<chain::Break> {
    if at.seq < head.seq {
        return Some(chain::Break::Missing { seq: at.seq + 1 });
    }
    (at.hash != head.hash).then_some(chain::Break::Content { seq: head.seq })
}

/// What a prune did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub pruned_rows: u64,
    /// The checkpoint now in force (the last pruned seq), if any.
    pub checkpoint_seq: Option<i64>,
    pub checkpoint_hash: Option<String>,
}

/// Deletes the chain's prefix of rows received before `before` (stored time form); rows
/// after the first one received at or after `before` stay, even if older (the chain is cut
/// at one seq).
pub async fn prune(db: &Db, before: &str) -> ApiResult<PruneReport> {
    let report = verify_chain(db).await?;
    let checkpoint = store::latest_checkpoint(db).await?;
    let mut tx = db.begin_write().await?;
    let head = store::lock_head(&mut tx, db).await?;
    let upto = match store::first_seq_from(&mut tx, db, before).await? {
        Some(first) => first - 1,
        None => head.seq,
    }
    // Rows written after the verification above are not pruned: they were not checked.
    .min(report.head_seq);
    let nothing = PruneReport {
        pruned_rows: 0,
        checkpoint_seq: checkpoint.as_ref().map(|c| c.seq),
        checkpoint_hash: checkpoint.as_ref().map(|c| c.hash.clone()),
    };
    if upto <= checkpoint.as_ref().map_or(0, |c| c.seq) {
        return Ok(nothing);
    }
    if let Some(bad) = report.first_bad_seq.filter(|&s| s <= upto) {
        return Err(ApiError::Conflict {
            code: "chain_broken",
            message: format!(
                "the chain does not verify at row {bad}; pruning it would erase the evidence"
            ),
            details: serde_json::json!({ "firstBadSeq": bad }),
        });
    }
    let Some(hash) = store::hash_of(&mut tx, db, upto).await? else {
        return Ok(nothing);
    };
    let at = Head { seq: upto, hash };
    let count = store::count_upto(&mut tx, db, upto).await?;
    let pruned = store::checkpoint_and_delete(&mut tx, db, &at, before, count).await?;
    tx.commit().await?;
    Ok(PruneReport {
        pruned_rows: pruned,
        checkpoint_seq: Some(at.seq),
        checkpoint_hash: Some(at.hash),
    })
}
