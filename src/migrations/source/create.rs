//! What a CREATE statement defines: its object kind and name, read from the head
//! (`CREATE [OR REPLACE] [DEFINER=…] [ALGORITHM=…] [TEMP|UNIQUE|MATERIALIZED|CONSTRAINT…]
//! <KIND> [CONCURRENTLY] [IF NOT EXISTS] name`). Used to type repeatable scripts and, by
//! the splitter, to tell routine and trigger heads (whose bodies hold `;`) from the rest.

use super::lexer::{Token, TokenKind, significant_tokens};
use super::split::{Dialect, SplitError, split};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Procedure,
    Function,
    Trigger,
    View,
    Table,
    Index,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateInfo {
    pub kind: ObjectKind,
    /// As written, quotes removed, schema-qualified when written so (`s.f`); empty for an
    /// unnamed PostgreSQL index; best effort for `Other` kinds.
    pub name: String,
}

/// The object kind and name of the first statement of `script` that is a CREATE.
pub fn first_create(script: &str, dialect: Dialect) -> Option<CreateInfo> {
    let statements = split(script, dialect).ok()?;
    statements
        .iter()
        .find_map(|s| create_info(&s.text, dialect))
}

/// Every CREATE statement of `script`, in order, with its line (procedures track each
/// routine, trigger and view a script creates, not only the first).
pub fn creates(script: &str, dialect: Dialect) -> Result<Vec<(usize, CreateInfo)>, SplitError> {
    Ok(split(script, dialect)?
        .iter()
        .filter_map(|s| create_info(&s.text, dialect).map(|c| (s.line, c)))
        .collect())
}

fn create_info(stmt: &str, dialect: Dialect) -> Option<CreateInfo> {
    let sig = significant_tokens(stmt, dialect, 64);
    let at = create_kind_index(&sig, stmt)?;
    let kind = match sig[at].text(stmt).to_ascii_uppercase().as_str() {
        "PROCEDURE" => ObjectKind::Procedure,
        "FUNCTION" => ObjectKind::Function,
        "TRIGGER" => ObjectKind::Trigger,
        "VIEW" => ObjectKind::View,
        "TABLE" => ObjectKind::Table,
        "INDEX" => ObjectKind::Index,
        _ => ObjectKind::Other,
    };
    let mut i = at + 1;
    if sig.get(i).is_some_and(|t| t.is_word(stmt, "CONCURRENTLY")) {
        i += 1;
    }
    let if_not_exists = ["IF", "NOT", "EXISTS"];
    if if_not_exists
        .iter()
        .enumerate()
        .all(|(k, w)| sig.get(i + k).is_some_and(|t| t.is_word(stmt, w)))
    {
        i += if_not_exists.len();
    }
    Some(CreateInfo {
        kind,
        name: qualified_name(sig.get(i..).unwrap_or(&[]), stmt),
    })
}

/// Dotted name at the start of `sig`, each part unquoted; stops at the first non-name.
fn qualified_name(sig: &[Token], src: &str) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while let Some(tok) = sig.get(i) {
        let is_name = matches!(tok.kind, TokenKind::Word | TokenKind::QuotedIdent);
        // PostgreSQL's unnamed `CREATE INDEX ON t (…)`: ON is the clause, not a name.
        if !is_name || (parts.is_empty() && tok.is_word(src, "ON")) {
            break;
        }
        parts.push(unquote(tok, src));
        let dotted = sig.get(i + 1).is_some_and(|t| t.is_punct(src, '.'));
        if !dotted {
            break;
        }
        i += 2;
    }
    parts.join(".")
}

fn unquote(tok: &Token, src: &str) -> String {
    let text = tok.text(src);
    if tok.kind != TokenKind::QuotedIdent || text.len() < 2 {
        return text.to_string();
    }
    let inner = text.get(1..text.len() - 1).unwrap_or("");
    match text.as_bytes()[0] {
        b'"' => inner.replace("\"\"", "\""),
        b'`' => inner.replace("``", "`"),
        _ => inner.to_string(),
    }
}

/// Words that may sit between CREATE and the object kind.
const MODIFIERS: [&str; 17] = [
    "TEMP",
    "TEMPORARY",
    "UNIQUE",
    "MATERIALIZED",
    "CONSTRAINT",
    "AGGREGATE",
    "RECURSIVE",
    "UNLOGGED",
    "GLOBAL",
    "LOCAL",
    "FOREIGN",
    "TRUSTED",
    "PROCEDURAL",
    "FULLTEXT",
    "SPATIAL",
    "ONLINE",
    "OFFLINE",
];

/// Index in `sig` of the object-kind word of a CREATE head (`PROCEDURE` in
/// `CREATE DEFINER=`root`@`%` PROCEDURE p()`), or None if this is not a CREATE or the
/// head is not complete yet.
pub(super) fn create_kind_index(sig: &[Token], src: &str) -> Option<usize> {
    if !sig.first()?.is_word(src, "CREATE") {
        return None;
    }
    let mut i = 1;
    loop {
        let tok = sig.get(i)?;
        if tok.kind != TokenKind::Word {
            return None;
        }
        let word = tok.text(src).to_ascii_uppercase();
        i = match word.as_str() {
            "OR" => i + 2,
            "DEFINER" => skip_definer(sig, src, i)?,
            "ALGORITHM" => i + 3,
            "SQL" => i + 3,
            w if MODIFIERS.contains(&w) => i + 1,
            _ => return Some(i),
        };
    }
}

pub(super) fn create_kind_word(sig: &[Token], src: &str) -> Option<Token> {
    create_kind_index(sig, src).map(|i| sig[i])
}

/// Past `DEFINER = user[@host]`, where user may be `CURRENT_USER` or `CURRENT_USER()`.
fn skip_definer(sig: &[Token], src: &str, at: usize) -> Option<usize> {
    let mut i = at + 1;
    if sig.get(i)?.is_punct(src, '=') {
        i += 1;
    }
    i += 1;
    if sig.get(i).is_some_and(|t| t.is_punct(src, '(')) {
        i += 2;
    }
    if sig.get(i).is_some_and(|t| t.is_punct(src, '@')) {
        i += 2;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(script: &str, dialect: Dialect) -> Option<(ObjectKind, String)> {
        first_create(script, dialect).map(|c| (c.kind, c.name))
    }

    #[test]
    fn infers_kind_and_name_from_the_first_create() {
        use ObjectKind::*;
        let cases = [
            (
                "CREATE OR REPLACE FUNCTION s.f(int) RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
                Dialect::Postgres,
                Function,
                "s.f",
            ),
            (
                "CREATE DEFINER=`root`@`%` PROCEDURE p() SELECT 1",
                Dialect::MySql,
                Procedure,
                "p",
            ),
            (
                "CREATE DEFINER = 'app'@'localhost' FUNCTION `my``fn`() RETURNS INT RETURN 1",
                Dialect::MySql,
                Function,
                "my`fn",
            ),
            (
                "CREATE DEFINER=CURRENT_USER() TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 1",
                Dialect::MySql,
                Trigger,
                "t",
            ),
            (
                "CREATE TRIGGER IF NOT EXISTS t AFTER INSERT ON x BEGIN SELECT 1; END",
                Dialect::Sqlite,
                Trigger,
                "t",
            ),
            (
                "CREATE TEMP TRIGGER [my trig] AFTER INSERT ON x BEGIN SELECT 1; END",
                Dialect::Sqlite,
                Trigger,
                "my trig",
            ),
            (
                "CREATE MATERIALIZED VIEW \"Sales\".\"By\"\"Day\" AS SELECT 1",
                Dialect::Postgres,
                View,
                "Sales.By\"Day",
            ),
            (
                "CREATE CONSTRAINT TRIGGER ct AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
                Dialect::Postgres,
                Trigger,
                "ct",
            ),
            (
                "CREATE OR REPLACE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW v AS SELECT 1",
                Dialect::MySql,
                View,
                "v",
            ),
            (
                "CREATE UNLOGGED TABLE IF NOT EXISTS public.t (id int)",
                Dialect::Postgres,
                Table,
                "public.t",
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
                Dialect::Postgres,
                Index,
                "i",
            ),
            ("CREATE INDEX ON t (a)", Dialect::Postgres, Index, ""),
            ("CREATE SEQUENCE s", Dialect::Postgres, Other, "s"),
            (
                "create or replace procedure P() language sql as $$ $$",
                Dialect::Postgres,
                Procedure,
                "P",
            ),
        ];
        for (script, dialect, kind, name) in cases {
            assert_eq!(
                create(script, dialect),
                Some((kind, name.to_string())),
                "{script}"
            );
        }
    }

    #[test]
    fn skips_statements_before_the_first_create() {
        let script = "-- drop first\nDROP PROCEDURE IF EXISTS p;\nDELIMITER //\n\
                      CREATE PROCEDURE p() BEGIN SELECT 1; END //\nDELIMITER ;";
        assert_eq!(
            create(script, Dialect::MySql),
            Some((ObjectKind::Procedure, "p".into()))
        );
    }

    #[test]
    fn finds_no_create_in_scripts_without_one() {
        assert_eq!(create("SELECT 1; DROP TABLE t;", Dialect::Postgres), None);
        assert_eq!(create("SELECT 'unterminated", Dialect::Postgres), None);
    }
}
