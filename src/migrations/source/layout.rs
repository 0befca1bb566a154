//! Which files make up a migration: the layout read from each file name (Flyway
//! `V`/`U`/`R__`, golang-migrate/sqlx `.up`/`.down`, single `<digits>_<desc>.sql`) and the
//! pairing of up and down halves per version into one `ImportedMigration`, checking
//! duplicates, orphans, empty scripts and non-transactional statements on the way.

use super::files::{ImportError, ImportedMigration, Repeatable};
use super::markers::{read_plain_file, read_single_file};
use super::split::{Dialect, non_transactional_reason, split};
use super::version::{Version, parse_version};

pub(super) fn has_sql_extension(file: &str) -> bool {
    file.len() > 4
        && file
            .get(file.len() - 4..)
            .is_some_and(|e| e.eq_ignore_ascii_case(".sql"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Flyway `V…`, golang-migrate/sqlx `.up.sql`: the whole file is the up script.
    Up,
    /// sqlx, dbmate or goose `<digits>_<desc>.sql`: markers inside decide.
    Single,
    /// Flyway `U…`, golang-migrate/sqlx `.down.sql`.
    Down,
}

pub(super) enum FileName {
    Repeatable {
        name: String,
    },
    Versioned {
        version: Version,
        desc: String,
        role: Role,
    },
}

/// Reads a `*.sql` file name. Versions must start with a digit (so `Vacuum__x.sql` is not
/// version "acuum"); Flyway's `_` separators become `.` as Flyway itself reads them.
pub(super) fn parse_name(file: &str) -> Result<FileName, ImportError> {
    let stem = file.get(..file.len().saturating_sub(4)).unwrap_or("");
    let unrecognized = || ImportError::UnrecognizedFileName {
        file: file.to_string(),
    };
    if let Some(name) = stem.strip_prefix("R__") {
        return match name.is_empty() {
            true => Err(unrecognized()),
            false => Ok(FileName::Repeatable {
                name: name.to_string(),
            }),
        };
    }
    let (raw_version, desc, role) = if let Some(rest) = stem.strip_prefix(['V', 'U']) {
        let (version, desc) = rest.split_once("__").ok_or_else(unrecognized)?;
        let role = if stem.starts_with('V') {
            Role::Up
        } else {
            Role::Down
        };
        (version.replace('_', "."), desc, role)
    } else {
        let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
        let rest = stem
            .get(digits..)
            .and_then(|r| r.strip_prefix('_'))
            .ok_or_else(unrecognized)?;
        let (desc, role) = split_direction(rest);
        (stem[..digits].to_string(), desc, role)
    };
    if !raw_version.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(unrecognized());
    }
    let version = parse_version(&raw_version).map_err(|source| ImportError::InvalidVersion {
        file: file.to_string(),
        source,
    })?;
    Ok(FileName::Versioned {
        version,
        desc: desc.to_string(),
        role,
    })
}

fn split_direction(rest: &str) -> (&str, Role) {
    let lower = rest.to_ascii_lowercase();
    if lower.ends_with(".up") {
        (&rest[..rest.len() - 3], Role::Up)
    } else if lower.ends_with(".down") {
        (&rest[..rest.len() - 5], Role::Down)
    } else {
        (rest, Role::Single)
    }
}

pub(super) fn repeatable(
    file: String,
    name: String,
    script: String,
    dialect: Dialect,
) -> Result<Repeatable, ImportError> {
    if statement_count(&file, &script, dialect)? == 0 {
        return Err(ImportError::EmptyUpScript { file });
    }
    Ok(Repeatable {
        name,
        script,
        source_file: file,
    })
}

fn statement_count(file: &str, script: &str, dialect: Dialect) -> Result<usize, ImportError> {
    split(script, dialect)
        .map(|s| s.len())
        .map_err(|source| ImportError::Script {
            file: file.to_string(),
            source,
        })
}

/// The up and down halves found so far for one version.
#[derive(Default)]
pub(super) struct Pair {
    up: Option<UpFile>,
    down: Option<(String, String)>,
}

struct UpFile {
    file: String,
    desc: String,
    script: String,
    down: Option<String>,
    opts_out_of_transaction: bool,
}

impl Pair {
    pub(super) fn add(
        &mut self,
        file: String,
        desc: String,
        role: Role,
        contents: String,
        version: &Version,
        dialect: Dialect,
    ) -> Result<(), ImportError> {
        let duplicate = |first: &str, second: String| ImportError::DuplicateVersion {
            version: version.to_string(),
            first: first.to_string(),
            second,
        };
        if role == Role::Down {
            if let Some((first, _)) = &self.down {
                return Err(duplicate(first, file));
            }
            if let Some(up) = self.up.as_ref().filter(|u| u.down.is_some()) {
                return Err(duplicate(&up.file, file));
            }
            self.down = Some((file, contents));
            return Ok(());
        }
        if let Some(up) = &self.up {
            return Err(duplicate(&up.file, file));
        }
        let up = read_up_file(file, desc, role, contents, dialect)?;
        if let (Some(_), Some((separate, _))) = (&up.down, &self.down) {
            return Err(duplicate(&up.file, separate.clone()));
        }
        self.up = Some(up);
        Ok(())
    }

    pub(super) fn into_migration(
        self,
        version: Version,
        dialect: Dialect,
    ) -> Result<ImportedMigration, ImportError> {
        let Some(up) = self.up else {
            let file = self.down.map(|(file, _)| file).unwrap_or_default();
            return Err(ImportError::DownWithoutUp {
                file,
                version: version.to_string(),
            });
        };
        let statements = split(&up.script, dialect).map_err(|source| ImportError::Script {
            file: up.file.clone(),
            source,
        })?;
        if statements.is_empty() {
            return Err(ImportError::EmptyUpScript { file: up.file });
        }
        let non_transactional = statements
            .iter()
            .any(|s| non_transactional_reason(&s.text, dialect).is_some());
        let (down_source_file, down_script) = match (self.down, up.down) {
            (Some((file, script)), _) => (Some(file), Some(script)),
            (None, Some(script)) => (Some(up.file.clone()), Some(script)),
            (None, None) => (None, None),
        };
        let down_file = down_source_file.as_deref().unwrap_or_default();
        let down_script = match down_script {
            Some(s) if statement_count(down_file, &s, dialect)? > 0 => Some(s),
            _ => None,
        };
        let name = match up.desc.is_empty() {
            true => version.to_string(),
            false => format!("{version}_{}", up.desc),
        };
        Ok(ImportedMigration {
            description: up.desc.replace('_', " ").trim().to_string(),
            name,
            version,
            up_script: up.script,
            down_source_file: down_script.as_ref().and(down_source_file),
            down_script,
            transactional: !up.opts_out_of_transaction && !non_transactional,
            source_file: up.file,
        })
    }
}

/// Reads an up file; `<digits>_<desc>.sql` files may carry dbmate or goose sections.
fn read_up_file(
    file: String,
    desc: String,
    role: Role,
    contents: String,
    dialect: Dialect,
) -> Result<UpFile, ImportError> {
    let script = match role {
        Role::Single => read_single_file(&file, contents, dialect)?,
        _ => read_plain_file(contents),
    };
    Ok(UpFile {
        file,
        desc,
        script: script.up,
        down: script.down,
        opts_out_of_transaction: script.no_transaction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versioned(file: &str) -> (String, String, Role) {
        match parse_name(file) {
            Ok(FileName::Versioned {
                version,
                desc,
                role,
            }) => (version.to_string(), desc, role),
            Ok(FileName::Repeatable { name }) => panic!("{file} read as repeatable {name}"),
            Err(err) => panic!("{file}: {err}"),
        }
    }

    #[test]
    fn recognises_each_layout_from_the_file_name() {
        let v = |ver: &str, desc: &str, role| (ver.to_string(), desc.to_string(), role);
        assert_eq!(
            versioned("V1.2__add_users.sql"),
            v("1.2", "add_users", Role::Up)
        );
        assert_eq!(
            versioned("U1.2__add_users.sql"),
            v("1.2", "add_users", Role::Down)
        );
        assert_eq!(versioned("V1_2__x.sql"), v("1.2", "x", Role::Up));
        assert_eq!(versioned("V7__.sql"), v("7", "", Role::Up));
        assert_eq!(versioned("0001_init.up.sql"), v("0001", "init", Role::Up));
        assert_eq!(
            versioned("0001_init.DOWN.SQL"),
            v("0001", "init", Role::Down)
        );
        assert_eq!(
            versioned("20240101_x.sql"),
            v("20240101", "x", Role::Single)
        );
        let repeatable = parse_name("R__views_and_more.sql");
        assert!(
            matches!(repeatable, Ok(FileName::Repeatable { name }) if name == "views_and_more")
        );
    }

    #[test]
    fn rejects_unparsable_versions_and_file_names() {
        let err = parse_name("V1..2__x.sql").err().expect("bad version");
        assert!(matches!(err, ImportError::InvalidVersion { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("V1..2__x.sql: version \"1..2\""),
            "{err}"
        );
        for file in [
            "seed.sql",
            "V1_x.sql",
            "Vx__y.sql",
            "R__.sql",
            "1.up.sql",
            "abc_1.sql",
        ] {
            let err = parse_name(file).err().expect("unrecognised");
            assert!(
                matches!(err, ImportError::UnrecognizedFileName { .. }),
                "{file}"
            );
            assert!(err.to_string().starts_with(file), "{err}");
        }
    }
}
