//! Procedure types: the record, create/update requests, what a script creates (its type
//! comes from its CREATE statements), deploy order (dependsOn first, then version, sort,
//! name) and the drift and deploy reports. No I/O here.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::migrations::source::split::{self, Dialect, ObjectKind};
use crate::migrations::source::version::{compare_versions, parse_version};

pub use super::report::{
    DeployFailed, DeployOptions, DeployReport, Deployed, DriftItem, DriftReport, DriftState,
    PlanItem, ProcRef,
};

/// What kind of database object a procedure record manages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProcType {
    Procedure,
    Function,
    Trigger,
    View,
}

impl ProcType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcType::Procedure => "procedure",
            ProcType::Function => "function",
            ProcType::Trigger => "trigger",
            ProcType::View => "view",
        }
    }

    pub fn parse(s: &str) -> Option<ProcType> {
        match s {
            "procedure" => Some(ProcType::Procedure),
            "function" => Some(ProcType::Function),
            "trigger" => Some(ProcType::Trigger),
            "view" => Some(ProcType::View),
            _ => None,
        }
    }

    fn from_kind(k: ObjectKind) -> Option<ProcType> {
        match k {
            ObjectKind::Procedure => Some(ProcType::Procedure),
            ObjectKind::Function => Some(ProcType::Function),
            ObjectKind::Trigger => Some(ProcType::Trigger),
            ObjectKind::View => Some(ProcType::View),
            _ => None,
        }
    }
}

/// A stored procedure record.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Procedure {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub proc_type: ProcType,
    pub version: String,
    pub sort: i64,
    pub up_script: String,
    pub down_script: Option<String>,
    /// SHA-256 hex of `upScript` (line endings normalised), computed by opshub.
    pub hash: String,
    /// Names of procedures deployed before this one.
    pub depends_on: Vec<String>,
    pub is_executed: bool,
    pub executed_at: Option<String>,
    /// `hash` as it was at the last deploy.
    pub deployed_hash: Option<String>,
    /// SHA-256 of the definitions the database rendered right after the last deploy.
    pub catalog_hash: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The rendered definitions behind `catalog_hash` (diffed against the live ones).
    #[serde(skip)]
    pub catalog_def: Option<String>,
    /// Catalog identities of the objects the deploy created (see `catalog.rs`).
    #[serde(skip)]
    pub catalog_keys: Vec<String>,
}

/// A create request. `type` may be omitted: it is read from the script's CREATE.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewProcedure {
    /// 1 to 200 characters without surrounding spaces or control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]([^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?$"
    )]
    pub name: String,
    #[serde(rename = "type", default)]
    pub proc_type: Option<ProcType>,
    #[serde(default = "first_version")]
    pub version: String,
    #[serde(default)]
    pub sort: i64,
    pub up_script: String,
    #[serde(default)]
    pub down_script: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

fn first_version() -> String {
    "1".into()
}

/// An update: every field optional; `downScript: null` removes the down script. A changed
/// `upScript` of a deployed procedure makes it `changed` until it is deployed again.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcedurePatch {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub proc_type: Option<ProcType>,
    pub version: Option<String>,
    pub sort: Option<i64>,
    pub up_script: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub down_script: Option<Option<String>>,
    pub depends_on: Option<Vec<String>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl Procedure {
    /// A record as first stored: never deployed. `proc_type` is the analysed one.
    pub fn pending(new: NewProcedure, proc_type: ProcType) -> Procedure {
        let now = crate::db::time::now();
        Procedure {
            id: uuid::Uuid::now_v7().to_string(),
            hash: split::checksum(&new.up_script),
            name: new.name,
            proc_type,
            version: new.version,
            sort: new.sort,
            up_script: new.up_script,
            down_script: normalize_down(new.down_script),
            depends_on: new.depends_on,
            is_executed: false,
            executed_at: None,
            deployed_hash: None,
            catalog_hash: None,
            last_error: None,
            created_at: now.clone(),
            updated_at: now,
            catalog_def: None,
            catalog_keys: Vec::new(),
        }
    }

    /// Code changed since the last deploy.
    pub fn changed(&self) -> bool {
        self.is_executed && self.deployed_hash.as_deref() != Some(self.hash.as_str())
    }
}

impl ProcedurePatch {
    /// `p` with the patch applied and its hash recomputed (not yet validated).
    pub fn apply(self, mut p: Procedure) -> Procedure {
        p.name = self.name.unwrap_or(p.name);
        p.proc_type = self.proc_type.unwrap_or(p.proc_type);
        p.version = self.version.unwrap_or(p.version);
        p.sort = self.sort.unwrap_or(p.sort);
        p.up_script = self.up_script.unwrap_or(p.up_script);
        if let Some(d) = self.down_script {
            p.down_script = normalize_down(d);
        }
        p.depends_on = self.depends_on.unwrap_or(p.depends_on);
        p.hash = split::checksum(&p.up_script);
        p
    }
}

pub fn normalize_down(d: Option<String>) -> Option<String> {
    d.filter(|s| !s.trim().is_empty())
}

/// One object a script creates, by the name written in its CREATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub kind: ProcType,
    pub name: String,
}

/// Why a record is refused; `code` is the API error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

/// The record's type and the routines, triggers and views its script creates. The type
/// is the declared one, which the script must create; else trigger when the script
/// creates one, else the first object's.
pub fn analyze(
    script: &str,
    declared: Option<ProcType>,
    dialect: Dialect,
) -> Result<(ProcType, Vec<Created>), Invalid> {
    let creates = split::creates(script, dialect)
        .map_err(|e| invalid("invalid_script", format!("upScript: {e}")))?;
    let objects: Vec<Created> = creates
        .into_iter()
        .filter_map(|(_, c)| ProcType::from_kind(c.kind).map(|kind| Created { kind, name: c.name }))
        .collect();
    let Some(first) = objects.first() else {
        return Err(invalid(
            "no_create",
            "upScript has no CREATE PROCEDURE, FUNCTION, TRIGGER or VIEW statement; the \
             object type comes from it",
        ));
    };
    let ty = match declared {
        Some(t) if objects.iter().any(|o| o.kind == t) => t,
        Some(t) => {
            return Err(invalid(
                "type_mismatch",
                format!(
                    "type is {} but upScript creates no {0} (it creates a {})",
                    t.as_str(),
                    first.kind.as_str()
                ),
            ));
        }
        // A PostgreSQL trigger script creates its trigger function first; the trigger is
        // what the script is for.
        None if objects.iter().any(|o| o.kind == ProcType::Trigger) => ProcType::Trigger,
        None => first.kind,
    };
    if dialect == Dialect::Sqlite
        && let Some(o) = objects
            .iter()
            .find(|o| matches!(o.kind, ProcType::Procedure | ProcType::Function))
    {
        return Err(invalid(
            "unsupported_type",
            format!(
                "SQLite has no stored {}s ({:?}); only triggers and views can be managed there",
                o.kind.as_str(),
                o.name
            ),
        ));
    }
    Ok((ty, objects))
}

/// Checks the user-editable fields, the script and the dependencies (`known`: every other
/// record's name). Returns the objects the script creates.
pub fn validate(
    p: &Procedure,
    dialect: Dialect,
    known: &BTreeSet<String>,
) -> Result<Vec<Created>, Invalid> {
    let name = p.name.trim();
    if name.is_empty()
        || name.chars().count() > 200
        || name != p.name
        || name.chars().any(char::is_control)
    {
        return Err(invalid(
            "invalid_procedure",
            "name must be 1 to 200 characters without surrounding spaces or control characters",
        ));
    }
    parse_version(&p.version).map_err(|e| invalid("invalid_procedure", format!("version: {e}")))?;
    let (_, objects) = analyze(&p.up_script, Some(p.proc_type), dialect)?;
    if let Some(down) = &p.down_script {
        split::split(down, dialect)
            .map_err(|e| invalid("invalid_script", format!("downScript: {e}")))?;
    }
    if let Some(d) = p.depends_on.iter().find(|d| **d == p.name) {
        return Err(invalid(
            "dependency_cycle",
            format!("{d:?} cannot depend on itself"),
        ));
    }
    let unknown: Vec<&String> = p
        .depends_on
        .iter()
        .filter(|d| !known.contains(*d))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(
            "unknown_dependency",
            format!("dependsOn names no procedure called {unknown:?}"),
        ));
    }
    Ok(objects)
}

/// Order among procedures free of dependencies on each other: version (natural), sort, name.
pub fn order(a: &Procedure, b: &Procedure) -> Ordering {
    compare_versions(&a.version, &b.version)
        .then(a.sort.cmp(&b.sort))
        .then_with(|| a.name.cmp(&b.name))
}

/// Every procedure in deploy order: each after the ones it depends on, otherwise by
/// [`order`]. A cycle is an error naming the procedures on or behind it.
pub fn deploy_order(mut all: Vec<Procedure>) -> Result<Vec<Procedure>, Vec<String>> {
    all.sort_by(order);
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut waiting_on = vec![0usize; all.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); all.len()];
    for (i, p) in all.iter().enumerate() {
        for d in &p.depends_on {
            if let Some(&j) = index.get(d.as_str()) {
                waiting_on[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    // Ready procedures by position in `order`, so ties keep the natural order.
    let mut ready: BTreeSet<usize> = (0..all.len()).filter(|&i| waiting_on[i] == 0).collect();
    let mut out = Vec::with_capacity(all.len());
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &k in &dependents[i] {
            waiting_on[k] -= 1;
            if waiting_on[k] == 0 {
                ready.insert(k);
            }
        }
    }
    if out.len() < all.len() {
        let stuck = (0..all.len())
            .filter(|i| waiting_on[*i] > 0)
            .map(|i| all[i].name.clone())
            .collect();
        return Err(stuck);
    }
    let mut slots: Vec<Option<Procedure>> = all.into_iter().map(Some).collect();
    Ok(out.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(name: &str, version: &str, sort: i64, deps: &[&str]) -> Procedure {
        let mut p = Procedure::pending(
            NewProcedure {
                name: name.into(),
                proc_type: None,
                version: version.into(),
                sort,
                up_script: "CREATE VIEW v AS SELECT 1".into(),
                down_script: None,
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
            },
            ProcType::View,
        );
        p.id = name.into();
        p
    }

    fn names(v: Vec<Procedure>) -> Vec<String> {
        v.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn orders_by_dependencies_then_version_sort_name() {
        let all = vec![
            proc("a", "2", 0, &[]),
            proc("b", "10", 0, &[]),
            proc("c", "1", 5, &["b"]),
            proc("d", "1", 1, &[]),
            proc("e", "1", 1, &[]),
        ];
        assert_eq!(
            names(deploy_order(all).expect("no cycle")),
            ["d", "e", "a", "b", "c"]
        );
    }

    #[test]
    fn a_cycle_names_its_members() {
        let all = vec![
            proc("a", "1", 0, &["b"]),
            proc("b", "1", 0, &["a"]),
            proc("c", "1", 0, &[]),
        ];
        assert_eq!(deploy_order(all).err(), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn type_comes_from_the_create_and_must_match() {
        let pg = Dialect::Postgres;
        let script = "CREATE OR REPLACE FUNCTION f() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ \
                      LANGUAGE plpgsql;\nCREATE OR REPLACE TRIGGER t BEFORE INSERT ON x \
                      FOR EACH ROW EXECUTE FUNCTION f();";
        assert_eq!(
            analyze(script, None, pg).map(|r| r.0),
            Ok(ProcType::Trigger)
        );
        assert_eq!(
            analyze(script, Some(ProcType::Trigger), pg).map(|r| r.1.len()),
            Ok(2)
        );
        assert_eq!(
            analyze(script, Some(ProcType::View), pg).map_err(|e| e.code),
            Err("type_mismatch")
        );
        assert_eq!(
            analyze("SELECT 1; CREATE TABLE t (a int)", None, pg).map_err(|e| e.code),
            Err("no_create")
        );
        assert_eq!(
            analyze(
                "CREATE FUNCTION f() RETURNS int AS 'x'",
                None,
                Dialect::Sqlite
            )
            .map_err(|e| e.code),
            Err("unsupported_type")
        );
    }

    #[test]
    fn drift_state_table() {
        assert_eq!(DriftState::of(false, true, true, true), DriftState::Pending);
        assert_eq!(
            DriftState::of(true, true, false, false),
            DriftState::Missing
        );
        assert_eq!(
            DriftState::of(true, false, true, true),
            DriftState::ChangedAndDrifted
        );
        assert_eq!(
            DriftState::of(true, false, false, false),
            DriftState::InSync
        );
    }
}
