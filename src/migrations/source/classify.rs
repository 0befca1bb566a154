//! Classifies single statements for the runner: transaction control, and statements that
//! cannot run inside a transaction. Pure text analysis on the lexer's tokens, re-exported
//! by `split.rs`. PG `ALTER TYPE … ADD VALUE` counts as transactional: PostgreSQL < 12
//! forbids it in a transaction, and 12+ allows it but the new value is unusable until commit.

use super::lexer::{TokenKind, significant_tokens};
use super::split::Dialect;

/// True for statements that manage transactions themselves (BEGIN, START TRANSACTION,
/// COMMIT, ROLLBACK, END, SAVEPOINT, RELEASE, ABORT, PREPARE TRANSACTION, XA, SET
/// autocommit). `BEGIN ATOMIC` and MariaDB `BEGIN NOT ATOMIC` open code blocks instead.
/// Expects a statement from `split` (a leading `#` comment is not recognised here).
pub fn is_transaction_control(stmt: &str) -> bool {
    let w = first_words(stmt, Dialect::Postgres, 6);
    let word = |i: usize| w.get(i).map_or("", String::as_str);
    match word(0) {
        "BEGIN" => !(word(1) == "ATOMIC" || (word(1) == "NOT" && word(2) == "ATOMIC")),
        "START" | "PREPARE" => word(1) == "TRANSACTION",
        "COMMIT" | "ROLLBACK" | "END" | "SAVEPOINT" | "RELEASE" | "ABORT" | "XA" => true,
        "SET" => w.iter().any(|x| x == "AUTOCOMMIT"),
        _ => false,
    }
}

/// Why `stmt` cannot run inside a transaction, if it cannot (case-insensitive, leading
/// comments skipped). MySQL has no such statements: its DDL commits implicitly instead.
pub fn non_transactional_reason(stmt: &str, dialect: Dialect) -> Option<&'static str> {
    let words = first_words(stmt, dialect, 256);
    match dialect {
        Dialect::Postgres => postgres_reason(&words),
        Dialect::Sqlite => sqlite_reason(&words),
        Dialect::MySql => None,
    }
}

fn postgres_reason(w: &[String]) -> Option<&'static str> {
    let word = |i: usize| w.get(i).map_or("", String::as_str);
    let has = |x: &str| w.iter().any(|y| y == x);
    match (word(0), word(1)) {
        ("VACUUM", _) => Some("VACUUM cannot run inside a transaction block"),
        ("CREATE", "INDEX") | ("CREATE", "UNIQUE") if concurrent_index(w) => {
            Some("CREATE INDEX CONCURRENTLY cannot run inside a transaction block")
        }
        ("DROP", "INDEX") if word(2) == "CONCURRENTLY" => {
            Some("DROP INDEX CONCURRENTLY cannot run inside a transaction block")
        }
        ("REINDEX", _) => reindex_reason(w),
        ("CREATE" | "DROP", "DATABASE") => {
            Some("CREATE/DROP DATABASE cannot run inside a transaction block")
        }
        ("CREATE" | "DROP", "TABLESPACE") => {
            Some("CREATE/DROP TABLESPACE cannot run inside a transaction block")
        }
        ("CREATE", "SUBSCRIPTION") if !slot_disabled(w) => Some(
            "CREATE SUBSCRIPTION that creates a replication slot cannot run inside a transaction block",
        ),
        ("DROP", "SUBSCRIPTION") => Some(
            "DROP SUBSCRIPTION cannot run inside a transaction block while it has a replication slot",
        ),
        ("ALTER", "SYSTEM") => Some("ALTER SYSTEM cannot run inside a transaction block"),
        ("ALTER", "DATABASE") if sequence(w, &["SET", "TABLESPACE"]) => {
            Some("ALTER DATABASE … SET TABLESPACE cannot run inside a transaction block")
        }
        ("ALTER", "TABLE") if has("DETACH") && has("CONCURRENTLY") => {
            Some("DETACH PARTITION … CONCURRENTLY cannot run inside a transaction block")
        }
        ("CLUSTER", _) if cluster_without_table(w) => {
            Some("CLUSTER without a table name cannot run inside a transaction block")
        }
        ("DISCARD", "ALL") => Some("DISCARD ALL cannot run inside a transaction block"),
        _ => None,
    }
}

fn concurrent_index(w: &[String]) -> bool {
    let skip = usize::from(w.get(1).is_some_and(|x| x == "UNIQUE"));
    w.get(1 + skip).is_some_and(|x| x == "INDEX")
        && w.get(2 + skip).is_some_and(|x| x == "CONCURRENTLY")
}

fn reindex_reason(w: &[String]) -> Option<&'static str> {
    if w.iter().take(8).any(|x| x == "CONCURRENTLY") {
        return Some("REINDEX CONCURRENTLY cannot run inside a transaction block");
    }
    let target = w
        .iter()
        .find(|x| ["INDEX", "TABLE", "SCHEMA", "DATABASE", "SYSTEM"].contains(&x.as_str()))?;
    matches!(target.as_str(), "SCHEMA" | "DATABASE" | "SYSTEM")
        .then_some("REINDEX SCHEMA/DATABASE/SYSTEM cannot run inside a transaction block")
}

/// `create_slot` defaults to true, and `connect = false` implies no slot.
fn slot_disabled(w: &[String]) -> bool {
    let falsy = |x: &str| {
        let x = x.trim_matches('\'').to_ascii_uppercase();
        matches!(x.as_str(), "FALSE" | "OFF" | "0")
    };
    w.iter().enumerate().any(|(i, x)| {
        let option = x == "CREATE_SLOT" || x == "CONNECT";
        let value = match w.get(i + 1).map(String::as_str) {
            Some("=") => w.get(i + 2),
            _ => w.get(i + 1),
        };
        option && value.is_some_and(|v| falsy(v))
    })
}

fn sequence(w: &[String], needle: &[&str]) -> bool {
    w.windows(needle.len())
        .any(|win| win.iter().zip(needle).all(|(a, b)| a == b))
}

/// `CLUSTER`, `CLUSTER VERBOSE` and `CLUSTER (options)` recluster the whole database.
fn cluster_without_table(w: &[String]) -> bool {
    let mut i = 1;
    if w.get(i).is_some_and(|x| x == "VERBOSE") {
        i += 1;
    }
    if w.get(i).is_some_and(|x| x == "(") {
        match w.iter().skip(i).position(|x| x == ")") {
            Some(close) => i += close + 1,
            None => return false,
        }
    }
    i >= w.len()
}

fn sqlite_reason(w: &[String]) -> Option<&'static str> {
    if w.first().is_some_and(|x| x == "VACUUM") {
        return Some("VACUUM cannot run inside a transaction");
    }
    if w.first().is_none_or(|x| x != "PRAGMA") {
        return None;
    }
    // PRAGMA [schema.]name = value | PRAGMA [schema.]name(value): only setting matters.
    let name_at = if w.get(2).is_some_and(|x| x == ".") {
        3
    } else {
        1
    };
    let sets = w.get(name_at + 1).is_some_and(|x| x == "=" || x == "(");
    match w.get(name_at).map(String::as_str) {
        Some("JOURNAL_MODE") if sets => {
            Some("PRAGMA journal_mode cannot be changed inside a transaction")
        }
        Some("FOREIGN_KEYS") if sets => {
            Some("PRAGMA foreign_keys is silently ignored inside a transaction")
        }
        _ => None,
    }
}

/// The first `limit` significant tokens, words upper-cased and other tokens verbatim.
fn first_words(stmt: &str, dialect: Dialect, limit: usize) -> Vec<String> {
    significant_tokens(stmt, dialect, limit)
        .iter()
        .map(|t| match t.kind {
            TokenKind::Word => t.text(stmt).to_ascii_uppercase(),
            _ => t.text(stmt).to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(stmt: &str) -> Option<&'static str> {
        non_transactional_reason(stmt, Dialect::Postgres)
    }

    #[test]
    fn recognises_transaction_control_statements() {
        for stmt in [
            "BEGIN",
            "begin work",
            "START TRANSACTION READ ONLY",
            "COMMIT",
            "ROLLBACK TO SAVEPOINT a",
            "END",
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "ABORT",
            "PREPARE TRANSACTION 'x'",
            "XA START 'x'",
            "SET autocommit = 0",
            "-- note\n/* c */ Commit",
        ] {
            assert!(is_transaction_control(stmt), "{stmt}");
        }
    }

    #[test]
    fn does_not_mistake_code_blocks_or_lookalikes_for_transaction_control() {
        for stmt in [
            "BEGIN ATOMIC SELECT 1; END",
            "BEGIN NOT ATOMIC SELECT 1; END",
            "START REPLICA",
            "PREPARE q AS SELECT 1",
            "SET search_path = x",
            "SELECT 'BEGIN'",
            "CREATE TABLE commit_log (id int)",
        ] {
            assert!(!is_transaction_control(stmt), "{stmt}");
        }
    }

    #[test]
    fn finds_postgres_statements_that_cannot_run_in_a_transaction() {
        for stmt in [
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "/* why */ create unique index concurrently if not exists i on t (a)",
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "REINDEX INDEX CONCURRENTLY i",
            "REINDEX (VERBOSE) TABLE CONCURRENTLY t",
            "REINDEX DATABASE app",
            "VACUUM",
            "vacuum (analyze) t",
            "CREATE DATABASE app",
            "DROP DATABASE app",
            "ALTER DATABASE app SET TABLESPACE fast",
            "ALTER SYSTEM SET work_mem = '64MB'",
            "CREATE TABLESPACE fast LOCATION '/ssd'",
            "DROP TABLESPACE fast",
            "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p",
            "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (create_slot = true)",
            "DROP SUBSCRIPTION s",
            "CLUSTER",
            "CLUSTER VERBOSE",
            "ALTER TABLE m DETACH PARTITION p CONCURRENTLY",
            "DISCARD ALL",
        ] {
            assert!(pg(stmt).is_some(), "{stmt}");
        }
    }

    #[test]
    fn lets_transaction_safe_postgres_statements_through() {
        for stmt in [
            "CREATE INDEX i ON t (a)",
            "CREATE INDEX concurrently_idx ON t (a)",
            "REINDEX TABLE t",
            "CLUSTER t USING i",
            "ALTER TYPE mood ADD VALUE 'meh'",
            "ALTER DATABASE app SET work_mem = '1MB'",
            "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (create_slot = false)",
            "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p WITH (connect = false)",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v",
            "ANALYZE t",
            "SELECT 'VACUUM'",
        ] {
            assert_eq!(pg(stmt), None, "{stmt}");
        }
    }

    #[test]
    fn explains_why_a_statement_needs_to_run_outside_a_transaction() {
        let reason = pg("CREATE INDEX CONCURRENTLY i ON t (a)").unwrap_or_default();
        assert_eq!(
            reason,
            "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
        );
    }

    #[test]
    fn finds_sqlite_statements_that_cannot_run_in_a_transaction() {
        let sqlite = |s| non_transactional_reason(s, Dialect::Sqlite);
        assert!(sqlite("VACUUM").is_some());
        assert!(sqlite("VACUUM INTO 'backup.db'").is_some());
        assert!(sqlite("PRAGMA journal_mode = WAL").is_some());
        assert!(sqlite("PRAGMA main.journal_mode=WAL").is_some());
        assert!(sqlite("PRAGMA foreign_keys = OFF").is_some());
        assert_eq!(sqlite("PRAGMA journal_mode"), None);
        assert_eq!(sqlite("PRAGMA user_version = 3"), None);
        assert_eq!(sqlite("CREATE INDEX CONCURRENTLY i ON t (a)"), None);
    }

    #[test]
    fn finds_nothing_non_transactional_in_mysql() {
        assert_eq!(non_transactional_reason("VACUUM", Dialect::MySql), None);
        assert_eq!(
            non_transactional_reason("CREATE DATABASE x", Dialect::MySql),
            None
        );
    }
}
