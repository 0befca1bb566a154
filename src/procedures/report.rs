//! What deploys and drift checks report: plans, outcomes, drift states with their diff.
//! Serialised as the API's and the CLI's `--json` documents. No I/O here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{ProcType, Procedure};

/// A procedure named in a report.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcRef {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub proc_type: ProcType,
}

impl From<&Procedure> for ProcRef {
    fn from(p: &Procedure) -> ProcRef {
        ProcRef {
            id: p.id.clone(),
            name: p.name.clone(),
            proc_type: p.proc_type,
        }
    }
}

/// Options of a deploy (`POST /procedures/deploy`, `/procedures/{id}/deploy`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployOptions {
    /// Return the plan with its SQL; execute nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Seconds to wait for the lock shared with migrations (default: the configured one).
    #[schema(maximum = 86400)]
    pub lock_timeout: Option<u64>,
}

/// One planned deploy.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ProcedurePlanItem)]
pub struct PlanItem {
    #[serde(flatten)]
    pub procedure: ProcRef,
    pub version: String,
    pub sort: i64,
    /// `pending`, `changed` or `requested` (deploy of one procedure).
    pub reason: String,
    pub up_script: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployed {
    #[serde(flatten)]
    pub procedure: ProcRef,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployFailed {
    #[serde(flatten)]
    pub procedure: ProcRef,
    pub error: String,
}

/// What a deploy did (or, with `dryRun`, would do): the first failure stops it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub dry_run: bool,
    pub plan: Vec<PlanItem>,
    pub deployed: Vec<Deployed>,
    pub failed: Option<DeployFailed>,
    pub not_attempted: Vec<ProcRef>,
}

/// A procedure's drift state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    Pending,
    InSync,
    Changed,
    Drifted,
    ChangedAndDrifted,
    Missing,
}

impl DriftState {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::Pending => "pending",
            DriftState::InSync => "in_sync",
            DriftState::Changed => "changed",
            DriftState::Drifted => "drifted",
            DriftState::ChangedAndDrifted => "changed_and_drifted",
            DriftState::Missing => "missing",
        }
    }

    /// The state from the three facts a check establishes.
    pub fn of(deployed: bool, missing: bool, changed: bool, drifted: bool) -> DriftState {
        match (deployed, missing, changed, drifted) {
            (false, ..) => DriftState::Pending,
            (true, true, ..) => DriftState::Missing,
            (true, false, true, true) => DriftState::ChangedAndDrifted,
            (true, false, true, false) => DriftState::Changed,
            (true, false, false, true) => DriftState::Drifted,
            (true, false, false, false) => DriftState::InSync,
        }
    }
}

/// One procedure's drift.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftItem {
    #[serde(flatten)]
    pub procedure: ProcRef,
    pub state: DriftState,
    pub hash: String,
    pub deployed_hash: Option<String>,
    pub catalog_hash: Option<String>,
    /// SHA-256 of the definitions the database renders now.
    pub live_hash: Option<String>,
    /// Catalog identities of deployed objects that no longer exist.
    pub missing_objects: Vec<String>,
    /// Unified diff from the deployed to the live definitions (drifted or missing only).
    pub diff: Option<String>,
}

/// The drift of every procedure; `inSync` is true when every one is in_sync.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub in_sync: bool,
    pub counts: BTreeMap<String, usize>,
    pub items: Vec<DriftItem>,
}
