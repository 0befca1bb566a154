//! Planning, pure: which migrations a run up or a rollback takes, in which order, and how
//! each one executes (one transaction, or statement by statement and why). Refusals
//! (dirty, out of order, no down script, nothing to roll back) are decided here, before
//! anything runs.

use std::cmp::Ordering;

use super::model::{self, Migration, MigrationRef, PlanItem, RollbackOptions, RunOptions};
use super::source::split::{self, Dialect, Statement};
use super::source::version::{compare_versions, parse_version};

/// Why a plan cannot be made.
#[derive(Debug)]
pub enum Refusal {
    BadInput(String),
    Dirty(Vec<Migration>),
    OutOfOrder(Vec<MigrationRef>),
    NoDownScript(Vec<MigrationRef>),
    NothingToRollBack,
    InvalidScript(MigrationRef, String),
}

/// How one migration executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whole script and the record update in one transaction (PostgreSQL, SQLite).
    Transaction,
    /// MySQL: statements one by one inside a transaction; DDL commits implicitly, so a
    /// failure after DDL leaves the migration dirty.
    MysqlTransaction,
    /// No transaction: statements one by one, progress recorded; failure = dirty.
    Statements,
}

/// A planned migration with its statements.
#[derive(Debug, Clone)]
pub struct Step {
    pub migration: Migration,
    pub script: String,
    pub statements: Vec<Statement>,
    pub mode: Mode,
    pub reason: Option<String>,
}

impl Step {
    pub fn item(&self) -> PlanItem {
        PlanItem {
            migration: MigrationRef::from(&self.migration),
            mode: match self.mode {
                Mode::Statements => "statements",
                Mode::Transaction | Mode::MysqlTransaction => "transaction",
            },
            reason: self.reason.clone(),
            statements: self.statements.iter().map(|s| s.text.clone()).collect(),
        }
    }
}

/// Refuses while any migration is dirty.
pub fn check_clean(all: &[Migration]) -> Result<(), Refusal> {
    let dirty: Vec<Migration> = all.iter().filter(|m| m.dirty).cloned().collect();
    if dirty.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Dirty(dirty))
    }
}

/// Pending migrations ordered before the newest executed one.
pub fn out_of_order(sorted: &[Migration]) -> Vec<&Migration> {
    let Some(last) = sorted.iter().rev().find(|m| m.is_executed) else {
        return Vec::new();
    };
    sorted
        .iter()
        .filter(|m| is_pending(m) && model::order(m, last) == Ordering::Less)
        .collect()
}

pub fn is_pending(m: &Migration) -> bool {
    m.is_active && !m.is_executed && !m.dirty
}

/// The run-up plan over `sorted` (natural order).
pub fn up(sorted: &[Migration], opts: &RunOptions, dialect: Dialect) -> Result<Vec<Step>, Refusal> {
    check_clean(sorted)?;
    let late = out_of_order(sorted);
    if !late.is_empty() && !opts.out_of_order {
        return Err(Refusal::OutOfOrder(
            late.into_iter().map(MigrationRef::from).collect(),
        ));
    }
    let steps = check_up(opts)?;
    sorted
        .iter()
        .filter(|m| is_pending(m))
        .filter(|m| {
            opts.to
                .as_ref()
                .is_none_or(|to| compare_versions(&m.version, to) != Ordering::Greater)
        })
        .take(steps)
        .map(|m| step(m, m.up_script.clone(), dialect))
        .collect()
}

/// Checks a run's options on their own (before any state is read); returns the step limit.
pub fn check_up(opts: &RunOptions) -> Result<usize, Refusal> {
    if let Some(to) = &opts.to {
        parse_version(to).map_err(|e| Refusal::BadInput(format!("to: {e}")))?;
    }
    limit(opts.steps)
}

fn limit(steps: Option<u32>) -> Result<usize, Refusal> {
    match steps {
        Some(0) => Err(Refusal::BadInput("steps must be at least 1".into())),
        Some(n) => Ok(n as usize),
        None => Ok(usize::MAX),
    }
}

/// The rollback plan: executed migrations newest first (by execution time, then natural
/// order), down to `to` (exclusive) or `steps` of them (default 1).
pub fn down(
    sorted: &[Migration],
    opts: &RollbackOptions,
    dialect: Dialect,
) -> Result<Vec<Step>, Refusal> {
    check_clean(sorted)?;
    let mut executed: Vec<&Migration> = sorted.iter().filter(|m| m.is_executed).collect();
    executed.sort_by(|a, b| {
        b.executed_at
            .cmp(&a.executed_at)
            .then_with(|| model::order(b, a))
    });
    let chosen: Vec<&Migration> = match &opts.to {
        Some(to) => {
            parse_version(to).map_err(|e| Refusal::BadInput(format!("to: {e}")))?;
            executed
                .into_iter()
                .filter(|m| compare_versions(&m.version, to) == Ordering::Greater)
                .collect()
        }
        None => {
            let n = if opts.steps.is_some() {
                limit(opts.steps)?
            } else {
                1
            };
            executed.into_iter().take(n).collect()
        }
    };
    if chosen.is_empty() {
        return Err(Refusal::NothingToRollBack);
    }
    let missing: Vec<MigrationRef> = chosen
        .iter()
        .filter(|m| m.applied_down.is_none())
        .map(|m| MigrationRef::from(*m))
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::NoDownScript(missing));
    }
    chosen
        .into_iter()
        .map(|m| step(m, m.applied_down.clone().unwrap_or_default(), dialect))
        .collect()
}

/// Splits a script and decides how it runs.
pub fn step(m: &Migration, script: String, dialect: Dialect) -> Result<Step, Refusal> {
    let invalid = |msg: String| Refusal::InvalidScript(MigrationRef::from(m), msg);
    let statements = split::split(&script, dialect).map_err(|e| invalid(e.to_string()))?;
    if let Some(s) = statements
        .iter()
        .find(|s| split::is_transaction_control(&s.text))
    {
        return Err(invalid(format!(
            "line {}: transaction control is not allowed in a migration script",
            s.line
        )));
    }
    let blocker = statements
        .iter()
        .find_map(|s| split::non_transactional_reason(&s.text, dialect));
    let (mode, reason) = match (blocker, m.transactional, dialect) {
        (Some(why), _, _) => (Mode::Statements, Some(why.to_string())),
        (None, false, _) => (Mode::Statements, Some("transactional is false".to_string())),
        (None, true, Dialect::MySql) => (Mode::MysqlTransaction, None),
        (None, true, _) => (Mode::Transaction, None),
    };
    Ok(Step {
        migration: m.clone(),
        script,
        statements,
        mode,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str, executed: bool) -> Migration {
        Migration {
            id: name.into(),
            name: name.into(),
            version: version.into(),
            execution_order: 0,
            description: String::new(),
            up_script: format!("CREATE TABLE {name} (a int)"),
            down_script: Some(format!("DROP TABLE {name}")),
            transactional: true,
            is_active: true,
            is_executed: executed,
            executed_at: executed.then(|| format!("2026-01-01T00:00:0{version}.000000Z")),
            checksum: None,
            execution_ms: None,
            last_error: None,
            dirty: false,
            dirty_info: None,
            created_at: String::new(),
            updated_at: String::new(),
            applied_up: None,
            applied_down: executed.then(|| format!("DROP TABLE {name}")),
        }
    }

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.migration.name.as_str()).collect()
    }

    #[test]
    fn plans_pending_in_order_with_to_and_steps() {
        let all = vec![
            m("a", "1", true),
            m("b", "2", false),
            m("c", "3", false),
            m("d", "4", false),
        ];
        let pg = Dialect::Postgres;
        assert_eq!(
            names(&up(&all, &RunOptions::default(), pg).expect("plan")),
            ["b", "c", "d"]
        );
        let to = RunOptions {
            to: Some("3".into()),
            ..RunOptions::default()
        };
        assert_eq!(names(&up(&all, &to, pg).expect("plan")), ["b", "c"]);
        let steps = RunOptions {
            steps: Some(1),
            ..RunOptions::default()
        };
        assert_eq!(names(&up(&all, &steps, pg).expect("plan")), ["b"]);
    }

    #[test]
    fn refuses_out_of_order_unless_allowed() {
        let all = vec![m("a", "1", false), m("b", "2", true)];
        let refused = up(&all, &RunOptions::default(), Dialect::Sqlite);
        assert!(matches!(refused, Err(Refusal::OutOfOrder(ref v)) if v[0].name == "a"));
        let ok = RunOptions {
            out_of_order: true,
            ..RunOptions::default()
        };
        assert_eq!(names(&up(&all, &ok, Dialect::Sqlite).expect("plan")), ["a"]);
    }

    #[test]
    fn rolls_back_newest_first_and_refuses_without_down_script() {
        let all = vec![m("a", "1", true), m("b", "2", true), m("c", "3", true)];
        let one = down(&all, &RollbackOptions::default(), Dialect::Postgres).expect("plan");
        assert_eq!(names(&one), ["c"]);
        let to = RollbackOptions {
            to: Some("1".into()),
            ..RollbackOptions::default()
        };
        assert_eq!(
            names(&down(&all, &to, Dialect::Postgres).expect("plan")),
            ["c", "b"]
        );
        let mut no_down = all.clone();
        no_down[2].applied_down = None;
        let refused = down(&no_down, &RollbackOptions::default(), Dialect::Postgres);
        assert!(matches!(refused, Err(Refusal::NoDownScript(_))));
        let none = vec![m("a", "1", false)];
        let refused = down(&none, &RollbackOptions::default(), Dialect::Postgres);
        assert!(matches!(refused, Err(Refusal::NothingToRollBack)));
    }

    #[test]
    fn concurrent_index_runs_statement_by_statement() {
        let mut x = m("a", "1", false);
        x.up_script = "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY i ON t (a);".into();
        let s = step(&x, x.up_script.clone(), Dialect::Postgres).expect("step");
        assert_eq!((s.mode, s.statements.len()), (Mode::Statements, 2));
        let s = step(&x, "CREATE TABLE t (a int)".into(), Dialect::MySql).expect("step");
        assert_eq!(s.mode, Mode::MysqlTransaction);
    }
}
