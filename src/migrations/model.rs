//! Migration types: the record, create/update requests and their validation, run and
//! rollback options, and the reports the runner returns. No I/O here; the natural order
//! of records (version, then executionOrder, then name) is defined once, in [`order`].

use std::cmp::Ordering;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::source::split::{self, Dialect};
use super::source::version::{compare_versions, parse_version};

/// A stored migration.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    pub id: String,
    pub name: String,
    pub version: String,
    pub execution_order: i64,
    pub description: String,
    pub up_script: String,
    pub down_script: Option<String>,
    /// Run in one transaction (default). False, or a statement that cannot run in a
    /// transaction, makes the runner execute it statement by statement.
    pub transactional: bool,
    pub is_active: bool,
    pub is_executed: bool,
    pub executed_at: Option<String>,
    /// SHA-256 (hex) of the up script as applied, line endings normalised; null while pending.
    pub checksum: Option<String>,
    pub execution_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Partially applied: runs refuse until it is resolved or resumed.
    pub dirty: bool,
    pub dirty_info: Option<DirtyInfo>,
    pub created_at: String,
    pub updated_at: String,
    /// The scripts as applied (rollback runs `applied_down`); not part of the API.
    #[serde(skip)]
    pub applied_up: Option<String>,
    #[serde(skip)]
    pub applied_down: Option<String>,
}

/// The migration a partial failure left behind, as far as opshub knows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirtyInfo {
    pub direction: Direction,
    /// Statements that completed (and committed) before the failure.
    pub completed: usize,
    pub total: usize,
    pub failed_statement: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
    /// Checksum of the completed statements' text, so `resume` can refuse when they changed.
    pub completed_checksum: String,
    /// PostgreSQL indexes left INVALID after the failure (a failed `CREATE INDEX
    /// CONCURRENTLY` leaves one behind): drop them before resuming.
    #[serde(default)]
    pub invalid_indexes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Natural order: version (1 < 1.1 < 2 < 10), then executionOrder, then name.
pub fn order(a: &Migration, b: &Migration) -> Ordering {
    compare_versions(&a.version, &b.version)
        .then(a.execution_order.cmp(&b.execution_order))
        .then_with(|| a.name.cmp(&b.name))
}

/// A create request. `isActive` defaults to false (activate with an update), as in the seed.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMigration {
    /// 1 to 200 characters without surrounding spaces or control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]([^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?$"
    )]
    pub name: String,
    #[schema(pattern = "^[A-Za-z0-9]+([._][A-Za-z0-9]+)*$", max_length = 64)]
    pub version: String,
    #[serde(default)]
    pub execution_order: i64,
    #[serde(default)]
    pub description: String,
    pub up_script: String,
    #[serde(default)]
    pub down_script: Option<String>,
    #[serde(default = "yes")]
    pub transactional: bool,
    #[serde(default)]
    pub is_active: bool,
}

fn yes() -> bool {
    true
}

impl Migration {
    /// A migration as first stored: not executed, no apply state, new id and timestamps.
    pub fn pending(new: NewMigration) -> Migration {
        let now = crate::db::time::now();
        Migration {
            id: uuid::Uuid::now_v7().to_string(),
            name: new.name,
            version: new.version,
            execution_order: new.execution_order,
            description: new.description,
            up_script: new.up_script,
            down_script: normalize_down(new.down_script),
            transactional: new.transactional,
            is_active: new.is_active,
            is_executed: false,
            executed_at: None,
            checksum: None,
            execution_ms: None,
            last_error: None,
            dirty: false,
            dirty_info: None,
            created_at: now.clone(),
            updated_at: now,
            applied_up: None,
            applied_down: None,
        }
    }
}

/// An update: every field optional; `downScript: null` removes the down script.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MigrationPatch {
    pub name: Option<String>,
    pub version: Option<String>,
    pub execution_order: Option<i64>,
    pub description: Option<String>,
    pub up_script: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub down_script: Option<Option<String>>,
    pub transactional: Option<bool>,
    pub is_active: Option<bool>,
}

/// Tells "absent" (None) from "null" (Some(None)).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl MigrationPatch {
    /// Whether the patch would change a script (refused once executed).
    pub fn touches_scripts(&self, m: &Migration) -> bool {
        self.up_script.as_ref().is_some_and(|s| *s != m.up_script)
            || self
                .down_script
                .as_ref()
                .is_some_and(|d| normalize_down(d.clone()) != m.down_script)
            || self.transactional.is_some_and(|t| t != m.transactional)
            || self
                .version
                .as_ref()
                .is_some_and(|v| compare_versions(v, &m.version) != Ordering::Equal)
    }

    /// `m` with the patch applied (not yet validated).
    pub fn apply(self, mut m: Migration) -> Migration {
        m.name = self.name.unwrap_or(m.name);
        m.version = self.version.unwrap_or(m.version);
        m.execution_order = self.execution_order.unwrap_or(m.execution_order);
        m.description = self.description.unwrap_or(m.description);
        m.up_script = self.up_script.unwrap_or(m.up_script);
        if let Some(d) = self.down_script {
            m.down_script = normalize_down(d);
        }
        m.transactional = self.transactional.unwrap_or(m.transactional);
        m.is_active = self.is_active.unwrap_or(m.is_active);
        m
    }
}

/// A blank down script is no down script.
pub fn normalize_down(d: Option<String>) -> Option<String> {
    d.filter(|s| !s.trim().is_empty())
}

/// Checks the user-editable fields of a record; the message names the field.
pub fn validate(m: &Migration, dialect: Dialect) -> Result<(), String> {
    let name = m.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name != m.name {
        return Err("name must be 1 to 200 characters without surrounding spaces".into());
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters".into());
    }
    parse_version(&m.version).map_err(|e| format!("version: {e}"))?;
    if m.description.len() > 10_000 {
        return Err("description must be at most 10000 bytes".into());
    }
    check_script("upScript", &m.up_script, dialect)?;
    if let Some(down) = &m.down_script {
        check_script("downScript", down, dialect)?;
    }
    Ok(())
}

/// A script must hold at least one statement, split cleanly, and leave transaction control
/// to opshub (a user COMMIT would escape the migration's transaction).
pub fn check_script(field: &str, script: &str, dialect: Dialect) -> Result<(), String> {
    let statements = split::split(script, dialect).map_err(|e| format!("{field}: {e}"))?;
    if statements.is_empty() {
        return Err(format!("{field} holds no SQL statement"));
    }
    if let Some(s) = statements
        .iter()
        .find(|s| split::is_transaction_control(&s.text))
    {
        return Err(format!(
            "{field} line {}: transaction control ({}) is not allowed; opshub runs each \
             migration in its own transaction (set transactional=false to run without one)",
            s.line,
            first_line(&s.text)
        ));
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Options of a run up (`POST /migrations/run`, `opshub migrate up`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunOptions {
    /// Last version to apply (inclusive).
    #[schema(pattern = "^[A-Za-z0-9]+([._][A-Za-z0-9]+)*$", max_length = 64)]
    pub to: Option<String>,
    /// At most this many migrations.
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub steps: Option<u32>,
    /// Return the plan with its SQL; execute nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply pending migrations ordered before an executed one instead of refusing.
    #[serde(default)]
    pub out_of_order: bool,
    /// Seconds to wait for the migration lock (default: the configured lock timeout).
    #[schema(maximum = 86400)]
    pub lock_timeout: Option<u64>,
}

/// Options of a rollback (`POST /migrations/rollback`, `opshub migrate down`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackOptions {
    /// Roll back every executed migration above this version (exclusive).
    #[schema(pattern = "^[A-Za-z0-9]+([._][A-Za-z0-9]+)*$", max_length = 64)]
    pub to: Option<String>,
    /// How many to roll back, newest first (default 1; ignored with `to`).
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub steps: Option<u32>,
    #[serde(default)]
    pub dry_run: bool,
    #[schema(maximum = 86400)]
    pub lock_timeout: Option<u64>,
}

/// A migration named in a report.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRef {
    pub id: String,
    pub name: String,
    pub version: String,
}

impl From<&Migration> for MigrationRef {
    fn from(m: &Migration) -> MigrationRef {
        MigrationRef {
            id: m.id.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
        }
    }
}

/// One step of a plan: the migration, how it runs, and the statements it will send.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MigrationPlanItem)]
pub struct PlanItem {
    #[serde(flatten)]
    pub migration: MigrationRef,
    /// `transaction` (one transaction with its record update) or `statements` (one by
    /// one, progress recorded; a failure leaves the migration dirty).
    pub mode: &'static str,
    /// Why it runs statement by statement, when it does.
    pub reason: Option<String>,
    pub statements: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    #[serde(flatten)]
    pub migration: MigrationRef,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    #[serde(flatten)]
    pub migration: MigrationRef,
    pub error: String,
    /// True when the failure left the database partially changed (see `dirtyInfo`).
    pub dirty: bool,
}

/// What a run or rollback did: `applied` (in order), the one that `failed`, and those
/// `notAttempted` after it. A dry run fills `plan` and nothing else.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub direction: Direction,
    pub dry_run: bool,
    pub applied: Vec<Applied>,
    pub failed: Option<Failed>,
    pub not_attempted: Vec<MigrationRef>,
    pub plan: Vec<PlanItem>,
}

/// One entry of the append-only history.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub id: String,
    pub migration_id: String,
    pub migration_name: String,
    pub version: String,
    /// `up`, `down`, `baseline`, `resolve_applied`, `resolve_rolled_back` or `resume`.
    pub direction: String,
    pub success: bool,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub started_at: String,
    pub actor: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str, order_: i64) -> Migration {
        Migration {
            id: name.into(),
            name: name.into(),
            version: version.into(),
            execution_order: order_,
            description: String::new(),
            up_script: "SELECT 1".into(),
            down_script: None,
            transactional: true,
            is_active: true,
            is_executed: false,
            executed_at: None,
            checksum: None,
            execution_ms: None,
            last_error: None,
            dirty: false,
            dirty_info: None,
            created_at: String::new(),
            updated_at: String::new(),
            applied_up: None,
            applied_down: None,
        }
    }

    #[test]
    fn orders_by_natural_version_then_execution_order_then_name() {
        let mut all = [
            m("e", "10", 0),
            m("d", "2", 0),
            m("c", "1.1", 0),
            m("b2", "1", 1),
            m("b1", "1", 1),
            m("a", "1", 0),
            m("t2", "20260102030405", 0),
            m("t1", "20251231235959", 0),
        ];
        all.sort_by(order);
        let names: Vec<&str> = all.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["a", "b1", "b2", "c", "d", "e", "t1", "t2"]);
    }

    #[test]
    fn rejects_empty_scripts_bad_versions_and_transaction_control() {
        let ok = m("a", "1", 0);
        assert!(validate(&ok, Dialect::Postgres).is_ok());
        let empty = Migration {
            up_script: "  -- nothing\n".into(),
            ..ok.clone()
        };
        assert!(validate(&empty, Dialect::Postgres).is_err());
        let bad_version = Migration {
            version: "1..2".into(),
            ..ok.clone()
        };
        assert!(validate(&bad_version, Dialect::Postgres).is_err());
        let commit = Migration {
            up_script: "CREATE TABLE t (a int); COMMIT;".into(),
            ..ok
        };
        let err = validate(&commit, Dialect::Sqlite).expect_err("commit refused");
        assert!(err.contains("transaction control"), "{err}");
    }

    #[test]
    fn patch_tells_absent_from_null_down_script() {
        let p: MigrationPatch = serde_json::from_str(r#"{"downScript": null}"#).expect("json");
        assert_eq!(p.down_script, Some(None));
        let p: MigrationPatch = serde_json::from_str(r#"{"isActive": true}"#).expect("json");
        assert_eq!(p.down_script, None);
        let base = Migration {
            down_script: Some("DROP TABLE t".into()),
            ..m("a", "1", 0)
        };
        assert!(!p.touches_scripts(&base));
        let p: MigrationPatch = serde_json::from_str(r#"{"downScript": null}"#).expect("json");
        assert!(p.touches_scripts(&base));
    }
}
