//! SQL statement splitting per dialect, plus the script checksum and the cosmetic-change
//! normalisation built on it. A statement ends at the delimiter only outside literals,
//! comments and compound bodies (PG `BEGIN ATOMIC`, SQLite trigger bodies, MySQL
//! routine/trigger/event bodies); MySQL `DELIMITER` lines are honoured client-side.
//! Re-exports statement classification from `classify.rs` and `create.rs`.

use std::fmt;

use sha2::{Digest, Sha256};

use super::blocks::BlockTracker;
pub use super::classify::{is_transaction_control, non_transactional_reason};
pub use super::create::{CreateInfo, ObjectKind, creates, first_create};
use super::lexer::{Lexer, Token, TokenKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Exact source text from the first to the last significant token: no surrounding
    /// whitespace or comments, no terminating delimiter.
    pub text: String,
    /// 1-based line of the statement's first significant token.
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitError {
    UnterminatedString { line: usize, quote: char },
    UnterminatedIdentifier { line: usize, quote: char },
    UnterminatedComment { line: usize },
    UnterminatedDollarQuote { line: usize, tag: String },
    UnterminatedBlock { line: usize, keyword: String },
    MissingDelimiter { line: usize },
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnterminatedString { line, quote } => {
                write!(
                    f,
                    "line {line}: string literal opened with {quote} is never closed"
                )
            }
            Self::UnterminatedIdentifier { line, quote } => {
                write!(
                    f,
                    "line {line}: quoted identifier opened with {quote} is never closed"
                )
            }
            Self::UnterminatedComment { line } => {
                write!(f, "line {line}: block comment /* is never closed with */")
            }
            Self::UnterminatedDollarQuote { line, tag } => {
                write!(
                    f,
                    "line {line}: dollar-quoted body {tag} has no closing {tag}"
                )
            }
            Self::UnterminatedBlock { line, keyword } => write!(
                f,
                "line {line}: {keyword} block has no matching END (if this is a routine body, \
                 wrap it in DELIMITER lines)"
            ),
            Self::MissingDelimiter { line } => {
                write!(
                    f,
                    "line {line}: DELIMITER must be followed by the new delimiter"
                )
            }
        }
    }
}

impl std::error::Error for SplitError {}

/// Splits `script` into statements; statements made only of whitespace and comments are
/// dropped. With a custom MySQL delimiter in force, only that delimiter ends a statement.
pub fn split(script: &str, dialect: Dialect) -> Result<Vec<Statement>, SplitError> {
    let mut lexer = Lexer::new(script, dialect);
    let mut out = Vec::new();
    let mut current = Pending::new(dialect);
    while let Some(tok) = lexer.next_token()? {
        if tok.is_trivia() {
            continue;
        }
        if tok.kind == TokenKind::Delimiter && !current.blocks.is_open() {
            current.finish(script, &mut out);
            continue;
        }
        if current.sig.is_empty() && dialect == Dialect::MySql && tok.is_word(script, "DELIMITER") {
            let delimiter = read_delimiter_line(script, &mut lexer, tok.line)?;
            lexer.set_delimiter(delimiter);
            continue;
        }
        if lexer.delimiter() == ";" {
            current.blocks.observe(tok, &current.sig, script, &lexer);
        }
        current.sig.push(tok);
    }
    if let Some(open) = current.blocks.outermost() {
        let keyword = open.text(script).to_ascii_uppercase();
        return Err(SplitError::UnterminatedBlock {
            line: open.line,
            keyword,
        });
    }
    current.finish(script, &mut out);
    Ok(out)
}

/// Consumes the rest of a `DELIMITER xx` line and returns `xx` (surrounding quotes removed).
fn read_delimiter_line<'a>(
    script: &'a str,
    lexer: &mut Lexer<'a>,
    line: usize,
) -> Result<&'a str, SplitError> {
    let start = lexer.pos();
    let rest = script.get(start..).unwrap_or("");
    let line_len = rest.find(['\n', '\r']).unwrap_or(rest.len());
    lexer.skip_to(start + line_len);
    let word = rest[..line_len].split_whitespace().next().unwrap_or("");
    let unquoted = ['\'', '"', '`']
        .iter()
        .find_map(|q| word.strip_prefix(*q).and_then(|w| w.strip_suffix(*q)))
        .filter(|w| !w.is_empty())
        .unwrap_or(word);
    if unquoted.is_empty() {
        return Err(SplitError::MissingDelimiter { line });
    }
    Ok(unquoted)
}

/// The statement being collected: its significant tokens and open compound blocks.
struct Pending {
    dialect: Dialect,
    sig: Vec<Token>,
    blocks: BlockTracker,
}

impl Pending {
    fn new(dialect: Dialect) -> Self {
        Pending {
            dialect,
            sig: Vec::new(),
            blocks: BlockTracker::new(dialect),
        }
    }

    fn finish(&mut self, script: &str, out: &mut Vec<Statement>) {
        if let (Some(first), Some(last)) = (self.sig.first(), self.sig.last()) {
            let text = script.get(first.start..last.end).unwrap_or("").to_string();
            out.push(Statement {
                text,
                line: first.line,
            });
        }
        *self = Pending::new(self.dialect);
    }
}

/// The script with comments dropped and tokens joined by single spaces, statement by
/// statement, so that whitespace-, comment- and delimiter-style-only edits compare equal.
/// A script that does not split (say, an unterminated string) normalises to its own text.
pub fn normalize_for_compare(script: &str, dialect: Dialect) -> String {
    let script = normalize_line_endings(script);
    match split(&script, dialect) {
        Ok(statements) => statements
            .iter()
            .map(|s| normalize_statement(&s.text, dialect))
            .collect::<Vec<_>>()
            .join(";\n"),
        Err(_) => script,
    }
}

fn normalize_statement(text: &str, dialect: Dialect) -> String {
    let mut lexer = Lexer::new(text, dialect);
    let mut parts: Vec<&str> = Vec::new();
    while let Ok(Some(tok)) = lexer.next_token() {
        if !tok.is_trivia() {
            parts.push(tok.text(text));
        }
    }
    parts.join(" ")
}

/// THE script checksum (SPEC §3): SHA-256 hex of the script after dropping a leading
/// UTF-8 byte-order mark and turning CRLF and lone CR into LF, so that editors and git
/// line-ending settings never make an unchanged script look changed.
pub fn checksum(script: &str) -> String {
    let digest = Sha256::digest(normalize_line_endings(script).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn normalize_line_endings(script: &str) -> String {
    let script = script.strip_prefix('\u{feff}').unwrap_or(script);
    script.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(script: &str, dialect: Dialect) -> Vec<String> {
        split(script, dialect)
            .expect("splits")
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    fn count(script: &str, dialect: Dialect) -> usize {
        texts(script, dialect).len()
    }

    const ALL: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite];

    #[test]
    fn splits_on_semicolons_and_reports_start_lines() {
        let got = split("SELECT 1;\n\n  SELECT\n 2 ;SELECT 3", Dialect::Sqlite).expect("splits");
        let expected = [("SELECT 1", 1), ("SELECT\n 2", 3), ("SELECT 3", 4)];
        let got: Vec<(&str, usize)> = got.iter().map(|s| (s.text.as_str(), s.line)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn drops_statements_made_only_of_comments_and_whitespace() {
        for dialect in ALL {
            assert_eq!(
                texts(";; -- note\n /* x */ ;\n", dialect),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn keeps_inner_comments_but_trims_surrounding_ones() {
        let got = texts("-- lead\nSELECT /* in */ 1 -- tail\n;", Dialect::Postgres);
        assert_eq!(got, ["SELECT /* in */ 1"]);
    }

    #[test]
    fn keeps_semicolons_inside_quoted_strings_with_doubled_quotes() {
        for dialect in ALL {
            assert_eq!(
                count("SELECT 'it''s; fine', '--;', '/*;'; SELECT 2;", dialect),
                2
            );
        }
    }

    #[test]
    fn keeps_semicolons_inside_quoted_identifiers() {
        assert_eq!(
            count(r#"SELECT 1 AS "a;""b"; SELECT 2"#, Dialect::Postgres),
            2
        );
        assert_eq!(count("SELECT `a;``b` FROM t; SELECT 2", Dialect::MySql), 2);
        assert_eq!(count("SELECT [a;b] FROM t; SELECT 2", Dialect::Sqlite), 2);
    }

    #[test]
    fn keeps_semicolons_inside_dollar_quotes() {
        let script = "CREATE FUNCTION f() RETURNS text AS $$\n  SELECT 'it''s; done';\n$$ \
                      LANGUAGE sql;\nSELECT 2;";
        let got = texts(script, Dialect::Postgres);
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("LANGUAGE sql"));
    }

    #[test]
    fn matches_dollar_quote_tags_exactly() {
        let script = "DO $body$ BEGIN PERFORM $$x;$$; RAISE NOTICE '$$'; END $body$; SELECT 1;";
        assert_eq!(count(script, Dialect::Postgres), 2);
    }

    #[test]
    fn ignores_dollar_quotes_inside_comments() {
        let script = "-- $$ not a quote\nSELECT 1; /* $tag$ */ SELECT 2;";
        assert_eq!(count(script, Dialect::Postgres), 2);
    }

    #[test]
    fn does_not_mistake_positional_parameters_for_dollar_quotes() {
        let script = "PREPARE q AS SELECT $1 + $2; EXECUTE q(1, 2);";
        assert_eq!(count(script, Dialect::Postgres), 2);
    }

    #[test]
    fn honours_backslash_escapes_only_in_postgres_escape_strings() {
        assert_eq!(
            count(r"SELECT E'\''; SELECT E'a\\'; SELECT 3;", Dialect::Postgres),
            3
        );
        // Standard strings: the backslash is literal, so the quote closes the string.
        assert_eq!(count(r"SELECT 'a\'; SELECT 2;", Dialect::Postgres), 2);
    }

    #[test]
    fn honours_backslash_escapes_in_both_mysql_quote_kinds() {
        let script = r#"SELECT 'it\'s;', "say \"hi\";"; SELECT 2;"#;
        assert_eq!(count(script, Dialect::MySql), 2);
        let err = split(r"SELECT 'a\'; SELECT 2;", Dialect::MySql).expect_err("unterminated");
        assert_eq!(
            err,
            SplitError::UnterminatedString {
                line: 1,
                quote: '\''
            }
        );
    }

    #[test]
    fn reads_mysql_hash_and_spaced_double_dash_comments() {
        let got = texts(
            "SELECT 1--1; # hash ; comment\n-- dash ; comment\nSELECT 2;",
            Dialect::MySql,
        );
        assert_eq!(got, ["SELECT 1--1", "SELECT 2"]);
    }

    #[test]
    fn nests_block_comments_in_postgres_but_not_mysql() {
        let script = "/* a /* b; */ c; */ SELECT 1;";
        assert_eq!(texts(script, Dialect::Postgres), ["SELECT 1"]);
        assert_eq!(texts(script, Dialect::MySql), ["c", "*/ SELECT 1"]);
    }

    #[test]
    fn honours_mysql_delimiter_directives() {
        let script = "DROP PROCEDURE IF EXISTS p;\nDELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  \
                      SELECT 1; SELECT '//';\nEND //\nDELIMITER $$\nCREATE FUNCTION f() RETURNS INT \
                      DETERMINISTIC\nBEGIN\n  RETURN 1;\nEND$$\ndelimiter ;\nSELECT 3;";
        let got = split(script, Dialect::MySql).expect("splits");
        let summary: Vec<(usize, &str)> = got
            .iter()
            .map(|s| (s.line, s.text.lines().last().unwrap_or("")))
            .collect();
        assert_eq!(
            summary,
            [
                (1, "DROP PROCEDURE IF EXISTS p"),
                (3, "END"),
                (8, "END"),
                (13, "SELECT 3")
            ]
        );
    }

    #[test]
    fn rejects_a_delimiter_directive_without_a_delimiter() {
        let err = split("SELECT 1;\nDELIMITER\nSELECT 2;", Dialect::MySql).expect_err("bad");
        assert_eq!(err, SplitError::MissingDelimiter { line: 2 });
    }

    #[test]
    fn leaves_delimiter_alone_outside_mysql() {
        assert_eq!(count("DELIMITER //\nSELECT 1;", Dialect::Postgres), 1);
    }

    #[test]
    fn keeps_mysql_executable_comments_as_statements() {
        let got = texts("/*!40101 SET NAMES utf8 */;\n/* plain */;", Dialect::MySql);
        assert_eq!(got, ["/*!40101 SET NAMES utf8 */"]);
    }

    #[test]
    fn reports_unterminated_literals_with_their_line() {
        let cases = [
            (
                "SELECT 1;\nSELECT 'x",
                Dialect::Postgres,
                SplitError::UnterminatedString {
                    line: 2,
                    quote: '\'',
                },
            ),
            (
                "\n/* never",
                Dialect::MySql,
                SplitError::UnterminatedComment { line: 2 },
            ),
            (
                "SELECT \"x",
                Dialect::Sqlite,
                SplitError::UnterminatedIdentifier {
                    line: 1,
                    quote: '"',
                },
            ),
            (
                "\n\nDO $fn$ BEGIN END $$;",
                Dialect::Postgres,
                SplitError::UnterminatedDollarQuote {
                    line: 3,
                    tag: "$fn$".into(),
                },
            ),
            (
                "CREATE PROCEDURE p()\nBEGIN SELECT 1;",
                Dialect::MySql,
                SplitError::UnterminatedBlock {
                    line: 2,
                    keyword: "BEGIN".into(),
                },
            ),
        ];
        for (script, dialect, expected) in cases {
            assert_eq!(split(script, dialect), Err(expected), "{script}");
        }
    }

    #[test]
    fn explains_split_errors_with_line_numbers() {
        let err = split("\n\nSELECT $a$ x", Dialect::Postgres).expect_err("unterminated");
        assert_eq!(
            err.to_string(),
            "line 3: dollar-quoted body $a$ has no closing $a$"
        );
    }

    #[test]
    fn normalizes_away_comments_whitespace_and_line_endings() {
        let a = "CREATE TABLE t (\r\n  id int, -- key\r\n  n text\r\n);\r\n";
        let b = "/* header */ CREATE TABLE t(id int,n text)";
        assert_eq!(
            normalize_for_compare(a, Dialect::Postgres),
            normalize_for_compare(b, Dialect::Postgres)
        );
    }

    #[test]
    fn keeps_literal_contents_when_normalizing() {
        let n = |s| normalize_for_compare(s, Dialect::Postgres);
        assert_ne!(n("SELECT 'a  b'"), n("SELECT 'a b'"));
        assert_ne!(n("SELECT $$a  b$$"), n("SELECT $$a b$$"));
        assert_ne!(n("SELECT \"a  b\""), n("SELECT \"a b\""));
        assert_ne!(n("SELECT 1"), n("SELECT 2"));
    }

    #[test]
    fn normalizes_delimiter_style_away_in_mysql() {
        let a = "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END //\nDELIMITER ;";
        let b = "CREATE PROCEDURE p() BEGIN SELECT 1; END;";
        assert_eq!(
            normalize_for_compare(a, Dialect::MySql),
            normalize_for_compare(b, Dialect::MySql)
        );
    }

    #[test]
    fn checksums_normalize_line_endings_and_bom() {
        let expected = "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd";
        assert_eq!(checksum("SELECT 1;\n"), expected);
        assert_eq!(checksum("SELECT 1;\r\n"), expected);
        assert_eq!(checksum("SELECT 1;\r"), expected);
        assert_eq!(checksum("\u{feff}SELECT 1;\n"), expected);
        assert_ne!(checksum("SELECT 1; \n"), expected);
    }
}
