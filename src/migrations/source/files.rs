//! Reads a migration folder in any common layout (Flyway, golang-migrate, sqlx, dbmate,
//! goose) into one `ImportSet`. `parse_files` is the pure core; `parse_dir` only lists
//! and reads the folder's `*.sql` files (no subdirectories, no hidden files).
//! Output is deterministic: migrations in natural version order, repeatables by name.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::layout::{FileName, Pair, has_sql_extension, parse_name, repeatable};
use super::split::{Dialect, SplitError};
use super::version::{Version, VersionError};

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ImportSet {
    pub migrations: Vec<ImportedMigration>,
    pub repeatables: Vec<Repeatable>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedMigration {
    /// Flyway's `_` separators become `.` (`V1_2__x` is version `1.2`), as Flyway reads them.
    pub version: Version,
    /// `<version>_<description as in the file name>`, e.g. `1.2_add_users`; just the
    /// version when the file name has no description. Unique because versions are.
    pub name: String,
    /// The file name's description with underscores as spaces: `add users`.
    pub description: String,
    pub up_script: String,
    /// None when there is no down/undo script or it holds no statement.
    pub down_script: Option<String>,
    /// False when the file opts out (dbmate `transaction:false`, sqlx `-- no-transaction`,
    /// goose `NO TRANSACTION`) or a statement cannot run in a transaction.
    pub transactional: bool,
    pub source_file: String,
    pub down_source_file: Option<String>,
}

/// A Flyway `R__<name>.sql` script; `name` is the part after `R__`, verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repeatable {
    pub name: String,
    pub script: String,
    pub source_file: String,
}

#[derive(Debug)]
pub enum ImportError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    NotUtf8 {
        file: String,
    },
    UnrecognizedFileName {
        file: String,
    },
    InvalidVersion {
        file: String,
        source: VersionError,
    },
    DuplicateVersion {
        version: String,
        first: String,
        second: String,
    },
    DownWithoutUp {
        file: String,
        version: String,
    },
    EmptyUpScript {
        file: String,
    },
    MissingUpMarker {
        file: String,
        marker: &'static str,
    },
    MisplacedMarker {
        file: String,
        line: usize,
        reason: &'static str,
    },
    Script {
        file: String,
        source: SplitError,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::NotUtf8 { file } => write!(f, "{file}: not valid UTF-8 text"),
            Self::UnrecognizedFileName { file } => write!(
                f,
                "{file}: unrecognised migration file name; expected V<version>__<desc>.sql, \
                 U<version>__<desc>.sql, R__<desc>.sql, <digits>_<desc>.up.sql / .down.sql \
                 or <digits>_<desc>.sql"
            ),
            Self::InvalidVersion { file, source } => write!(f, "{file}: {source}"),
            Self::DuplicateVersion {
                version,
                first,
                second,
            } => {
                write!(f, "{first} and {second} both define version {version}")
            }
            Self::DownWithoutUp { file, version } => {
                write!(
                    f,
                    "{file}: down/undo script for version {version}, which has no up script"
                )
            }
            Self::EmptyUpScript { file } => write!(f, "{file}: contains no SQL statement to run"),
            Self::MissingUpMarker { file, marker } => {
                write!(f, "{file}: has migration markers but no `{marker}` section")
            }
            Self::MisplacedMarker { file, line, reason } => {
                write!(f, "{file}, line {line}: {reason}")
            }
            Self::Script { file, source } => write!(f, "{file}: {source}"),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::InvalidVersion { source, .. } => Some(source),
            Self::Script { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads every `*.sql` file directly inside `path` (case-insensitive extension; hidden
/// files, subdirectories and other extensions are ignored) and parses them together.
pub fn parse_dir(path: &Path, dialect: Dialect) -> Result<ImportSet, ImportError> {
    let io_error = |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let entry_path = entry.map_err(io_error)?.path();
        let Some(name) = entry_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        if name.starts_with('.') || !has_sql_extension(&name) || !entry_path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&entry_path).map_err(|source| ImportError::Io {
            path: entry_path.clone(),
            source,
        })?;
        let contents =
            String::from_utf8(bytes).map_err(|_| ImportError::NotUtf8 { file: name.clone() })?;
        files.push((name, contents));
    }
    parse_files(files, dialect)
}

/// Parses `(file name, contents)` pairs; names not ending in `.sql` are ignored. The
/// dialect decides how scripts are split when looking for non-transactional statements.
pub fn parse_files(
    mut files: Vec<(String, String)>,
    dialect: Dialect,
) -> Result<ImportSet, ImportError> {
    // Sorting first makes "which file is first" in duplicate errors stable.
    files.sort();
    let mut by_version: BTreeMap<Version, Pair> = BTreeMap::new();
    let mut repeatables = Vec::new();
    for (file, contents) in files {
        if !has_sql_extension(&file) {
            continue;
        }
        let contents = contents
            .strip_prefix('\u{feff}')
            .unwrap_or(&contents)
            .to_string();
        match parse_name(&file)? {
            FileName::Repeatable { name } => {
                repeatables.push(repeatable(file, name, contents, dialect)?)
            }
            FileName::Versioned {
                version,
                desc,
                role,
            } => {
                let pair = by_version.entry(version.clone()).or_default();
                pair.add(file, desc, role, contents, &version, dialect)?;
            }
        }
    }
    let migrations = by_version
        .into_iter()
        .map(|(version, pair)| pair.into_migration(version, dialect))
        .collect::<Result<Vec<_>, _>>()?;
    repeatables.sort_by(|a: &Repeatable, b| a.name.cmp(&b.name));
    Ok(ImportSet {
        migrations,
        repeatables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(files: &[(&str, &str)]) -> Result<ImportSet, ImportError> {
        parse_with(files, Dialect::Postgres)
    }

    fn parse_with(files: &[(&str, &str)], dialect: Dialect) -> Result<ImportSet, ImportError> {
        let owned = files
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect();
        parse_files(owned, dialect)
    }

    fn one(files: &[(&str, &str)]) -> ImportedMigration {
        let set = parse(files).expect("parses");
        assert_eq!(set.migrations.len(), 1);
        set.migrations.into_iter().next().expect("one migration")
    }

    #[test]
    fn reads_flyway_versioned_undo_and_repeatable_files() {
        let set = parse(&[
            ("V1.1__add_email.sql", "ALTER TABLE users ADD email text;"),
            ("V1__create_users.sql", "CREATE TABLE users (id int);"),
            ("U1__create_users.sql", "DROP TABLE users;"),
            ("R__user_view.sql", "CREATE OR REPLACE VIEW v AS SELECT 1;"),
            (
                "R__a_func.sql",
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;",
            ),
        ])
        .expect("parses");
        let first = &set.migrations[0];
        assert_eq!(first.version.as_str(), "1");
        assert_eq!(first.name, "1_create_users");
        assert_eq!(first.description, "create users");
        assert_eq!(first.down_script.as_deref(), Some("DROP TABLE users;"));
        assert_eq!(
            first.down_source_file.as_deref(),
            Some("U1__create_users.sql")
        );
        assert_eq!(set.migrations[1].name, "1.1_add_email");
        assert_eq!(set.migrations[1].down_script, None);
        let names: Vec<&str> = set.repeatables.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a_func", "user_view"]);
        assert_eq!(set.repeatables[1].source_file, "R__user_view.sql");
    }

    #[test]
    fn pairs_golang_migrate_up_and_down_files() {
        let set = parse(&[
            ("2_more.up.sql", "SELECT 2;"),
            ("1_init.down.sql", "DROP TABLE t;"),
            ("1_init.up.sql", "CREATE TABLE t (id int);"),
        ])
        .expect("parses");
        let summary: Vec<(&str, Option<&str>)> = set
            .migrations
            .iter()
            .map(|m| (m.name.as_str(), m.down_script.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [("1_init", Some("DROP TABLE t;")), ("2_more", None)]
        );
        assert_eq!(set.migrations[0].source_file, "1_init.up.sql");
    }

    #[test]
    fn treats_an_empty_down_script_as_none() {
        let m = one(&[
            ("1_x.up.sql", "SELECT 1;"),
            ("1_x.down.sql", "-- irreversible\n"),
        ]);
        assert_eq!((m.down_script, m.down_source_file), (None, None));
    }

    #[test]
    fn reads_sqlx_single_files_and_their_no_transaction_line() {
        let m = one(&[("20240101120000_init.sql", "CREATE TABLE t (id int);")]);
        assert_eq!(
            (m.name.as_str(), m.transactional),
            ("20240101120000_init", true)
        );
        let m = one(&[("3_idx.sql", "-- no-transaction\nCREATE INDEX i ON t (a);")]);
        assert!(!m.transactional);
    }

    #[test]
    fn reads_dbmate_sections_and_the_transaction_option() {
        let script = "-- a comment first is fine\n-- migrate:up transaction:false\n\
                      CREATE TABLE t (id int);\n\n-- migrate:down\nDROP TABLE t;\n";
        let m = one(&[("20240101120000_create_t.sql", script)]);
        assert_eq!(m.up_script, "CREATE TABLE t (id int);");
        assert_eq!(m.down_script.as_deref(), Some("DROP TABLE t;"));
        assert_eq!(
            m.down_source_file.as_deref(),
            Some("20240101120000_create_t.sql")
        );
        assert!(!m.transactional);
        let m = one(&[("1_x.sql", "-- migrate:up\nSELECT 1;\n")]);
        assert!(m.transactional && m.down_script.is_none());
    }

    #[test]
    fn marks_migrations_with_non_transactional_statements() {
        let files = [(
            "V3__idx.sql",
            "SELECT 1;\nCREATE INDEX CONCURRENTLY i ON t (a);",
        )];
        assert!(!parse(&files).expect("parses").migrations[0].transactional);
        let sqlite = parse_with(&files, Dialect::Sqlite).expect("parses");
        assert!(sqlite.migrations[0].transactional);
    }

    #[test]
    fn orders_migrations_naturally_whatever_the_input_order() {
        let set = parse(&[
            ("V10__j.sql", "SELECT 1;"),
            ("V2__b.sql", "SELECT 1;"),
            ("V1.10__i.sql", "SELECT 1;"),
            ("V1.9__h.sql", "SELECT 1;"),
            ("V1__a.sql", "SELECT 1;"),
        ])
        .expect("parses");
        let versions: Vec<&str> = set.migrations.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["1", "1.9", "1.10", "2", "10"]);
    }

    #[test]
    fn ignores_files_that_are_not_sql() {
        let set = parse(&[("README.md", "# hi"), ("V1__a.SQL", "SELECT 1;")]).expect("parses");
        assert_eq!(set.migrations.len(), 1);
    }

    #[test]
    fn strips_a_byte_order_mark_from_scripts() {
        assert_eq!(
            one(&[("V1__a.sql", "\u{feff}SELECT 1;")]).up_script,
            "SELECT 1;"
        );
    }

    #[test]
    fn rejects_two_files_with_the_same_version() {
        for files in [
            [("V1__a.sql", "SELECT 1;"), ("1_b.up.sql", "SELECT 1;")],
            [("V01__a.sql", "SELECT 1;"), ("V1__b.sql", "SELECT 1;")],
            [("U1__a.sql", "SELECT 1;"), ("1_a.down.sql", "SELECT 1;")],
        ] {
            let err = parse(&files).expect_err("duplicate");
            assert!(matches!(err, ImportError::DuplicateVersion { .. }), "{err}");
        }
        let dbmate = [
            (
                "1_a.sql",
                "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;",
            ),
            ("1_a.down.sql", "SELECT 3;"),
        ];
        assert!(matches!(
            parse(&dbmate),
            Err(ImportError::DuplicateVersion { .. })
        ));
        let msg = parse(&[
            ("V1__a.sql", "SELECT 1;"),
            ("V1.0__b.sql", "SELECT 1;"),
            ("1_c.sql", "SELECT 1;"),
        ])
        .expect_err("duplicate")
        .to_string();
        assert_eq!(msg, "1_c.sql and V1__a.sql both define version 1");
    }

    #[test]
    fn rejects_a_down_script_without_its_up() {
        for file in ["U3__x.sql", "3_x.down.sql"] {
            let err =
                parse(&[(file, "SELECT 1;"), ("V1__a.sql", "SELECT 1;")]).expect_err("orphan");
            assert!(
                matches!(&err, ImportError::DownWithoutUp { file: f, .. } if f == file),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_empty_up_scripts() {
        for (file, script) in [
            ("V1__a.sql", "-- nothing yet\n"),
            ("1_a.sql", "-- migrate:up\n-- migrate:down\nDROP TABLE t;"),
            ("R__v.sql", "  "),
        ] {
            let err = parse(&[(file, script)]).expect_err("empty");
            assert!(
                matches!(&err, ImportError::EmptyUpScript { file: f } if f == file),
                "{err}"
            );
        }
    }

    #[test]
    fn names_the_file_when_a_script_does_not_split() {
        let err = parse(&[("V1__a.sql", "SELECT 1;\nSELECT 'oops;")]).expect_err("unterminated");
        assert_eq!(
            err.to_string(),
            "V1__a.sql: line 2: string literal opened with ' is never closed"
        );
    }

    #[test]
    fn reads_a_directory_skipping_other_entries() {
        let dir = std::env::temp_dir().join(format!("opshub-files-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("V9__nested.sql")).expect("mkdir");
        for (name, body) in [
            ("V1__a.sql", "SELECT 1;"),
            ("notes.txt", "x"),
            (".#V2__b.sql", "x"),
        ] {
            std::fs::write(dir.join(name), body).expect("write");
        }
        let set = parse_dir(&dir, Dialect::Sqlite);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        let names: Vec<String> = set
            .expect("parses")
            .migrations
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["1_a"]);
    }

    #[test]
    fn reports_an_unreadable_directory_by_path() {
        let err = parse_dir(Path::new("/nonexistent/opshub/migrations"), Dialect::Sqlite)
            .expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/opshub/migrations"),
            "{err}"
        );
    }
}
