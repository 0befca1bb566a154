//! Tracks compound bodies inside one statement so that a `;` within them does not end
//! it: PostgreSQL `BEGIN ATOMIC … END`, SQLite `CREATE TRIGGER … BEGIN … END`, and MySQL
//! stored programs (nested BEGIN/IF/CASE/LOOP/WHILE/REPEAT … END). Outside those heads a
//! CASE or BEGIN opens nothing, so `SELECT CASE … END` and `BEGIN;` stay plain.

use super::create::create_kind_word;
use super::lexer::{Lexer, Token, TokenKind};
use super::split::Dialect;

/// Where the block tracker is told to look for compound bodies in the current statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Plain,
    /// PostgreSQL: `BEGIN ATOMIC … END` (SQL-standard function bodies).
    Atomic,
    /// SQLite `CREATE TRIGGER … BEGIN … END`.
    Trigger,
    /// MySQL/MariaDB stored programs and `BEGIN NOT ATOMIC` anonymous blocks.
    Compound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockKind {
    /// Closed by `END` (possibly followed by IF/LOOP/… in MySQL).
    Body,
    /// A CASE expression: inside it, `IF(` is the function and never a statement.
    CaseExpr,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    kind: BlockKind,
    token: Token,
}

/// Open compound blocks of the statement being split. Fed each significant token
/// together with the tokens before it (`sig`) while `;` is the delimiter.
pub(super) struct BlockTracker {
    dialect: Dialect,
    blocks: Vec<Block>,
    context: Option<Context>,
}

impl BlockTracker {
    pub(super) fn new(dialect: Dialect) -> Self {
        BlockTracker {
            dialect,
            blocks: Vec::new(),
            context: None,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// The keyword that opened the outermost block still open.
    pub(super) fn outermost(&self) -> Option<Token> {
        self.blocks.first().map(|b| b.token)
    }

    fn push(&mut self, kind: BlockKind, token: Token) {
        self.blocks.push(Block { kind, token });
    }

    pub(super) fn observe(&mut self, tok: Token, sig: &[Token], src: &str, lexer: &Lexer<'_>) {
        if tok.kind != TokenKind::Word {
            return;
        }
        let word = tok.text(src).to_ascii_uppercase();
        // `t.end` / `new.begin` are column references, never block keywords.
        if sig.last().is_some_and(|p| p.is_punct(src, '.')) {
            return;
        }
        const BLOCK_WORDS: [&str; 8] = [
            "BEGIN", "END", "CASE", "IF", "LOOP", "WHILE", "REPEAT", "ATOMIC",
        ];
        if !BLOCK_WORDS.contains(&word.as_str()) {
            return;
        }
        match self.context(sig, src, lexer) {
            Context::Plain => {}
            Context::Atomic => self.observe_atomic(&word, tok, sig, src),
            Context::Trigger => self.observe_trigger(&word, tok),
            Context::Compound => self.observe_compound(&word, tok, sig, src, lexer),
        }
    }

    /// Decided at the first keyword that could open a block, and cached once settled: a
    /// CREATE head is settled when its object-kind word has been seen.
    fn context(&mut self, sig: &[Token], src: &str, lexer: &Lexer<'_>) -> Context {
        if let Some(context) = self.context {
            return context;
        }
        let (context, settled) = self.classify(sig, src, lexer);
        if settled {
            self.context = Some(context);
        }
        context
    }

    fn classify(&self, sig: &[Token], src: &str, lexer: &Lexer<'_>) -> (Context, bool) {
        if self.dialect == Dialect::Postgres {
            return (Context::Atomic, true);
        }
        let Some(first) = sig.first() else {
            let anonymous = self.dialect == Dialect::MySql && begins_not_atomic(src, lexer);
            return (
                if anonymous {
                    Context::Compound
                } else {
                    Context::Plain
                },
                true,
            );
        };
        if !first.is_word(src, "CREATE") {
            return (Context::Plain, true);
        }
        let Some(kind) = create_kind_word(sig, src) else {
            return (Context::Plain, false);
        };
        let kind = kind.text(src).to_ascii_uppercase();
        let context = match (self.dialect, kind.as_str()) {
            (Dialect::Sqlite, "TRIGGER") => Context::Trigger,
            (Dialect::MySql, "PROCEDURE" | "FUNCTION" | "TRIGGER" | "EVENT") => Context::Compound,
            _ => Context::Plain,
        };
        (context, true)
    }

    fn observe_atomic(&mut self, word: &str, tok: Token, sig: &[Token], src: &str) {
        let after_begin = sig.last().is_some_and(|p| p.is_word(src, "BEGIN"));
        match word {
            "ATOMIC" if after_begin => self.push(BlockKind::Body, tok),
            "CASE" if !self.blocks.is_empty() => self.push(BlockKind::CaseExpr, tok),
            "END" => {
                self.blocks.pop();
            }
            _ => {}
        }
    }

    fn observe_trigger(&mut self, word: &str, tok: Token) {
        match word {
            "BEGIN" if self.blocks.is_empty() => self.push(BlockKind::Body, tok),
            "CASE" if !self.blocks.is_empty() => self.push(BlockKind::CaseExpr, tok),
            "END" => {
                self.blocks.pop();
            }
            _ => {}
        }
    }

    fn observe_compound(
        &mut self,
        word: &str,
        tok: Token,
        sig: &[Token],
        src: &str,
        lexer: &Lexer<'_>,
    ) {
        // `END IF`, `END LOOP`, …: the word after END qualifies it and opens nothing.
        let after_end = sig.last().is_some_and(|p| p.is_word(src, "END"));
        let statement_start = self.at_statement_start(sig, src);
        match word {
            "END" => {
                self.blocks.pop();
            }
            _ if after_end => {}
            "BEGIN" | "LOOP" | "WHILE" => self.push(BlockKind::Body, tok),
            // REPEAT('a', 3) is the string function.
            "REPEAT" if !next_is_paren(src, lexer) => self.push(BlockKind::Body, tok),
            // IF(a, b, c) is a function wherever a statement cannot start.
            "IF" if statement_start => self.push(BlockKind::Body, tok),
            "CASE" if statement_start => self.push(BlockKind::Body, tok),
            "CASE" => self.push(BlockKind::CaseExpr, tok),
            _ => {}
        }
    }

    /// True where a MySQL compound statement may begin: after a `;` inside a body, after
    /// a keyword that introduces statements, after a label, or after the routine head.
    fn at_statement_start(&self, sig: &[Token], src: &str) -> bool {
        if self
            .blocks
            .last()
            .is_some_and(|b| b.kind == BlockKind::CaseExpr)
        {
            return false;
        }
        let Some(prev) = sig.last() else {
            return true;
        };
        match prev.kind {
            TokenKind::Delimiter => true,
            TokenKind::Punct => prev.is_punct(src, ')') || prev.is_punct(src, ':'),
            TokenKind::Word => ["BEGIN", "THEN", "ELSE", "DO", "LOOP", "REPEAT", "ROW"]
                .iter()
                .any(|k| prev.is_word(src, k)),
            _ => false,
        }
    }
}

fn begins_not_atomic(src: &str, lexer: &Lexer<'_>) -> bool {
    let next = lexer.peek_significant(2);
    next.len() == 2 && next[0].is_word(src, "NOT") && next[1].is_word(src, "ATOMIC")
}

fn next_is_paren(src: &str, lexer: &Lexer<'_>) -> bool {
    lexer
        .peek_significant(1)
        .first()
        .is_some_and(|t| t.is_punct(src, '('))
}

#[cfg(test)]
mod tests {
    use super::super::split::{
        Dialect, first_create, is_transaction_control, non_transactional_reason,
        normalize_for_compare, split,
    };

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
    fn keeps_begin_atomic_bodies_whole() {
        let script = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  \
                      SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT a;\nEND;\nSELECT 2;";
        let got = split(script, Dialect::Postgres).expect("splits");
        assert_eq!(got.len(), 2);
        assert!(got[0].text.ends_with("SELECT a;\nEND"));
        assert_eq!(got[1].line, 6);
    }

    #[test]
    fn treats_plain_begin_as_a_transaction_statement() {
        for dialect in ALL {
            let got = texts("BEGIN; CREATE TABLE t (id int); COMMIT;", dialect);
            assert_eq!(
                got,
                ["BEGIN", "CREATE TABLE t (id int)", "COMMIT"],
                "{dialect:?}"
            );
        }
        assert_eq!(
            count("START TRANSACTION; SELECT 1; COMMIT;", Dialect::MySql),
            3
        );
        assert_eq!(count("BEGIN; SELECT 1; END;", Dialect::Sqlite), 3);
    }

    #[test]
    fn keeps_sqlite_trigger_bodies_whole() {
        let script = "CREATE TRIGGER t AFTER UPDATE OF \"end\" ON x WHEN NEW.a > 0 BEGIN\n  \
                      UPDATE y SET n = CASE WHEN NEW.end > 0 THEN 1 END WHERE id = NEW.id;\n  \
                      INSERT INTO log VALUES (NEW.id);\nEND;\nSELECT 1;";
        let got = texts(script, Dialect::Sqlite);
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("END"));
    }

    #[test]
    fn keeps_mysql_procedures_with_nested_blocks_whole() {
        let script = "CREATE PROCEDURE p(IN n INT)\nBEGIN\n  DECLARE i INT DEFAULT 0;\n  \
            lbl: LOOP\n    SET i = i + 1;\n    IF i > n THEN\n      LEAVE lbl;\n    \
            ELSEIF i = 2 THEN\n      BEGIN\n        SELECT IF(i > 1, 'a', 'b');\n      END;\n    \
            END IF;\n  END LOOP lbl;\n  WHILE i > 0 DO SET i = i - 1; END WHILE;\n  \
            REPEAT SET i = i + 1; UNTIL i > 3 END REPEAT;\n  \
            CASE i WHEN 1 THEN IF (i > 0) THEN SELECT 1; END IF; ELSE SELECT REPEAT('x', 2); END CASE;\n  \
            SET @x = CASE WHEN i > 0 THEN IF(i > 1, 1, 2) ELSE 0 END;\nEND;\nSELECT 1;";
        let got = split(script, Dialect::MySql).expect("splits");
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].text.ends_with("ELSE 0 END;\nEND"));
        assert_eq!((got[1].text.as_str(), got[1].line), ("SELECT 1", 19));
    }

    #[test]
    fn keeps_mysql_trigger_and_event_bodies_whole() {
        let trigger = "CREATE DEFINER=`root`@`%` TRIGGER trg BEFORE INSERT ON t FOR EACH ROW \
                       BEGIN SET NEW.end = NEW.begin + 1; SET NEW.a = 2; END; SELECT 1;";
        assert_eq!(count(trigger, Dialect::MySql), 2);
        let bare_if = "CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW \
                       IF NEW.a IS NULL THEN SET NEW.a = 1; END IF; SELECT 1;";
        assert_eq!(count(bare_if, Dialect::MySql), 2);
        let event = "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO BEGIN DELETE FROM t; \
                     DELETE FROM u; END; SELECT 1;";
        assert_eq!(count(event, Dialect::MySql), 2);
    }

    #[test]
    fn keeps_mariadb_anonymous_blocks_whole() {
        let script = "BEGIN NOT ATOMIC SELECT 1; SELECT 2; END; SELECT 3;";
        assert_eq!(count(script, Dialect::MySql), 2);
    }

    #[test]
    fn does_not_treat_case_expressions_as_blocks() {
        for dialect in ALL {
            let script = "SELECT CASE WHEN a THEN 1 END AS x FROM t; SELECT 2;";
            assert_eq!(count(script, dialect), 2, "{dialect:?}");
        }
    }

    #[test]
    fn accepts_end_and_begin_as_column_names() {
        for dialect in [Dialect::MySql, Dialect::Sqlite] {
            let script = "CREATE TABLE t (begin INT, end INT); SELECT end, begin FROM t; SELECT 3;";
            assert_eq!(count(script, dialect), 3, "{dialect:?}");
        }
        let quoted = "SELECT \"end\" FROM t; SELECT 2;";
        assert_eq!(count(quoted, Dialect::Postgres), 2);
    }

    #[test]
    fn does_not_open_blocks_for_if_and_repeat_functions_in_routine_heads() {
        for script in [
            "CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN IF(x > 0, 1, 0); SELECT 1;",
            "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.v = REPEAT('a', 2); SELECT 1;",
            "CREATE PROCEDURE IF NOT EXISTS p() BEGIN DROP TABLE IF EXISTS t; END; SELECT 1;",
        ] {
            assert_eq!(count(script, Dialect::MySql), 2, "{script}");
        }
    }

    #[test]
    fn keeps_mysqldump_style_trigger_bodies_under_a_custom_delimiter() {
        let script = "DELIMITER ;;\n/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ \
                      /*!50003 TRIGGER trg BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; \
                      SET NEW.b = 2; END */;;\nDELIMITER ;\nSELECT 1;";
        let got = texts(script, Dialect::MySql);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].ends_with("END */"));
    }

    /// Deterministic random scripts built from the lexer's trickiest pieces: nothing may
    /// panic, and every statement must be a slice of its script.
    #[test]
    fn never_panics_and_returns_source_slices_on_arbitrary_input() {
        const PIECES: [&str; 36] = [
            "'",
            "\"",
            "`",
            "[",
            "]",
            "$",
            "$$",
            "$a$",
            "--",
            "-- ",
            "#",
            "/*",
            "*/",
            "/*!",
            ";",
            "\\",
            "E'",
            "é",
            "\n",
            "\r",
            " ",
            "BEGIN",
            "END",
            "CASE",
            "IF",
            "LOOP",
            "ATOMIC",
            "NOT",
            "CREATE",
            "PROCEDURE",
            "TRIGGER",
            "DELIMITER ",
            "//",
            "(",
            ".",
            "x1",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = next() % 24;
            let script: String = (0..len).map(|_| PIECES[(next() % 36) as usize]).collect();
            for dialect in ALL {
                if let Ok(statements) = split(&script, dialect) {
                    assert!(
                        statements.iter().all(|s| script.contains(&s.text)),
                        "{script:?}"
                    );
                }
                let _ = normalize_for_compare(&script, dialect);
                let _ = first_create(&script, dialect);
                let _ = non_transactional_reason(&script, dialect);
                let _ = is_transaction_control(&script);
            }
        }
    }
}
