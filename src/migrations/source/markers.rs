//! What is inside a single migration file: dbmate sections (`-- migrate:up` /
//! `-- migrate:down`, option `transaction:false`), goose sections (`-- +goose Up` / `Down`
//! / `NO TRANSACTION`) and sqlx's first-line `-- no-transaction`. Markers are whole
//! comment lines; sections are trimmed, while a plain file's script is kept verbatim.

use super::files::ImportError;
use super::split::{Dialect, split};

/// What one migration file holds once its markers are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FileScript {
    pub(super) up: String,
    pub(super) down: Option<String>,
    pub(super) no_transaction: bool,
}

/// A whole-file up script (Flyway `V…`, `.up.sql`), opted out of a transaction by sqlx's
/// first line `-- no-transaction`.
pub(super) fn read_plain_file(contents: String) -> FileScript {
    let first_line = contents.lines().next().unwrap_or("");
    FileScript {
        no_transaction: first_line.trim() == "-- no-transaction",
        up: contents,
        down: None,
    }
}

/// A `<digits>_<desc>.sql` file: dbmate or goose sections when it has markers, else a
/// plain sqlx up script.
pub(super) fn read_single_file(
    file: &str,
    contents: String,
    dialect: Dialect,
) -> Result<FileScript, ImportError> {
    let Some(marks) = scan_markers(file, &contents)? else {
        return Ok(read_plain_file(contents));
    };
    let Some(up) = marks.up else {
        let marker = marks.style;
        let file = file.to_string();
        return Err(ImportError::MissingUpMarker { file, marker });
    };
    let section = |from: usize, to: usize| contents.get(from..to).unwrap_or("").trim().to_string();
    let preamble = split(contents.get(..up.start).unwrap_or(""), dialect).map_err(|source| {
        ImportError::Script {
            file: file.to_string(),
            source,
        }
    })?;
    if let Some(stray) = preamble.first() {
        let reason = "statements before the up marker would never run";
        return Err(misplaced(file, stray.line, reason));
    }
    let up_end = marks.down.map_or(contents.len(), |d| d.start);
    Ok(FileScript {
        up: section(up.body, up_end),
        down: marks.down.map(|d| section(d.body, contents.len())),
        no_transaction: marks.no_transaction,
    })
}

fn misplaced(file: &str, line: usize, reason: &'static str) -> ImportError {
    ImportError::MisplacedMarker {
        file: file.to_string(),
        line,
        reason,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Up { no_transaction: bool },
    Down,
    NoTransaction,
}

const DBMATE_UP: &str = "-- migrate:up";
const GOOSE_UP: &str = "-- +goose Up";

/// Recognises a marker line; also says which up marker its tool expects.
fn marker(line: &str) -> Option<(Marker, &'static str)> {
    let body = line.trim_end().strip_prefix("--")?.trim_start();
    let word_end = |rest: &str| rest.is_empty() || rest.starts_with(char::is_whitespace);
    if let Some(options) = body.strip_prefix("migrate:up").filter(|r| word_end(r)) {
        let no_transaction = options.split_whitespace().any(|o| o == "transaction:false");
        return Some((Marker::Up { no_transaction }, DBMATE_UP));
    }
    if body.strip_prefix("migrate:down").is_some_and(word_end) {
        return Some((Marker::Down, DBMATE_UP));
    }
    let command = body.strip_prefix("+goose")?.trim().to_ascii_lowercase();
    let marker = match command.as_str() {
        "up" => Marker::Up {
            no_transaction: false,
        },
        "down" => Marker::Down,
        "no transaction" => Marker::NoTransaction,
        _ => return None,
    };
    Some((marker, GOOSE_UP))
}

/// Byte offsets of a marker line (`start`) and of the section it opens (`body`).
#[derive(Clone, Copy, Debug)]
struct Mark {
    start: usize,
    body: usize,
    line: usize,
}

struct Marks {
    up: Option<Mark>,
    down: Option<Mark>,
    no_transaction: bool,
    style: &'static str,
}

/// The file's markers, or None when it has none; rejects repeated or reversed markers.
fn scan_markers(file: &str, contents: &str) -> Result<Option<Marks>, ImportError> {
    let mut marks: Option<Marks> = None;
    let mut offset = 0;
    for (index, line) in contents.split_inclusive('\n').enumerate() {
        let mark = Mark {
            start: offset,
            body: offset + line.len(),
            line: index + 1,
        };
        offset = mark.body;
        let Some((found, style)) = marker(line) else {
            continue;
        };
        let m = marks.get_or_insert(Marks {
            up: None,
            down: None,
            no_transaction: false,
            style,
        });
        match found {
            Marker::Up { .. } if m.up.is_some() => {
                return Err(misplaced(file, mark.line, "a second up marker"));
            }
            Marker::Up { .. } if m.down.is_some() => {
                let reason = "the up section must come before the down section";
                return Err(misplaced(file, mark.line, reason));
            }
            Marker::Up { no_transaction } => {
                m.no_transaction |= no_transaction;
                m.up = Some(mark);
            }
            Marker::Down if m.down.is_some() => {
                return Err(misplaced(file, mark.line, "a second down marker"));
            }
            Marker::Down => m.down = Some(mark),
            Marker::NoTransaction => m.no_transaction = true,
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(contents: &str) -> Result<FileScript, ImportError> {
        read_single_file("1_a.sql", contents.to_string(), Dialect::Postgres)
    }

    #[test]
    fn reads_goose_sections_and_keeps_statement_annotations() {
        let script = "-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\n\
                      CREATE TABLE t (id int);\n-- +goose StatementEnd\n\n-- +goose Down\nDROP TABLE t;\n";
        let got = read(script).expect("reads");
        let up = "-- +goose StatementBegin\nCREATE TABLE t (id int);\n-- +goose StatementEnd";
        assert_eq!(got.up, up);
        assert_eq!(got.down.as_deref(), Some("DROP TABLE t;"));
        assert!(got.no_transaction);
    }

    #[test]
    fn reads_dbmate_options_only_on_the_up_marker() {
        let got = read("--migrate:up\nSELECT 1;\n-- migrate:down transaction:false\nSELECT 2;")
            .expect("reads");
        assert_eq!((got.up.as_str(), got.no_transaction), ("SELECT 1;", false));
        let got = read("-- migrate:up   transaction:false\nSELECT 1;").expect("reads");
        assert!(got.no_transaction && got.down.is_none());
    }

    #[test]
    fn does_not_mistake_lookalike_comments_for_markers() {
        let script = "-- migrate:upgrade notes\n-- +goose up to you\nSELECT 1;";
        assert_eq!(
            read(script).expect("reads"),
            read_plain_file(script.to_string())
        );
    }

    #[test]
    fn keeps_a_plain_file_verbatim_and_reads_sqlx_no_transaction() {
        let plain = read_plain_file("-- no-transaction\r\nVACUUM;\n".to_string());
        assert_eq!(plain.up, "-- no-transaction\r\nVACUUM;\n");
        assert!(plain.no_transaction);
        assert!(!read_plain_file("SELECT 1;\n-- no-transaction".to_string()).no_transaction);
    }

    #[test]
    fn rejects_marker_files_without_an_up_marker() {
        let err = read("CREATE TABLE t (id int);\n-- migrate:down\nDROP TABLE t;")
            .expect_err("no up marker");
        let expected = "1_a.sql: has migration markers but no `-- migrate:up` section";
        assert_eq!(err.to_string(), expected);
        let goose = read("-- +goose Down\nDROP TABLE t;").expect_err("no up marker");
        assert!(goose.to_string().contains("`-- +goose Up`"), "{goose}");
    }

    #[test]
    fn rejects_misplaced_markers_and_stray_statements() {
        let cases = [
            ("-- migrate:down\nSELECT 1;\n-- migrate:up\nSELECT 2;", 3),
            ("-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;", 3),
            ("-- migrate:up\n-- migrate:down\n-- migrate:down", 3),
            ("\n\nSELECT 0;\n-- migrate:up\nSELECT 1;", 3),
        ];
        for (script, line) in cases {
            let err = read(script).expect_err("misplaced");
            let matched = matches!(err, ImportError::MisplacedMarker { line: l, .. } if l == line);
            assert!(matched, "{script:?}: {err}");
        }
    }
}
