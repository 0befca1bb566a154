//! The SQL statement splitter and what is built on it: splitting, the first CREATE,
//! normalisation for checksums, classification. Any input, every dialect: no panic, and
//! the statements found are pieces of the script.
#![no_main]
use libfuzzer_sys::fuzz_target;
use opshub::migrations::source::{create, split};

fuzz_target!(|script: &str| {
    for dialect in [
        split::Dialect::Postgres,
        split::Dialect::MySql,
        split::Dialect::Sqlite,
    ] {
        if let Ok(statements) = split::split(script, dialect) {
            assert!(statements.len() <= script.len() + 1);
        }
        let _ = split::normalize_for_compare(script, dialect);
        let _ = create::first_create(script, dialect);
    }
    let _ = split::checksum(script);
});
