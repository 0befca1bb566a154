//! Where migrations come from, as pure text handling: the dialect-aware SQL splitter
//! (`split`: dollar quotes, compound bodies, MySQL `DELIMITER`, statements that cannot run
//! in a transaction, the line-ending-normalised checksum), natural version order
//! (`version`) and migration folders in the common layouts (`files`). No I/O but reading
//! a folder in `files::parse_dir`.

mod blocks;
mod classify;
pub mod create;
pub mod files;
mod layout;
mod lexer;
mod markers;
pub mod split;
pub mod version;

/// The splitter's dialect for a database dialect.
pub fn dialect(d: crate::db::Dialect) -> split::Dialect {
    match d {
        crate::db::Dialect::Postgres => split::Dialect::Postgres,
        crate::db::Dialect::Mysql => split::Dialect::MySql,
        crate::db::Dialect::Sqlite => split::Dialect::Sqlite,
    }
}
