//! The one database handle: a sqlx `Any` pool plus the dialect it talks to.
//!
//! opshub's own SQL is written once, with `?` placeholders and `opshub_`-prefixed table
//! names; [`Db::sql`] rewrites it per dialect (`$N` placeholders and the `opshub` schema on
//! PostgreSQL) and caches the result. Own columns use only TEXT, BIGINT, SMALLINT flags,
//! DOUBLE and BLOB, because those are the types the `Any` driver decodes on all three
//! backends (it rejects MySQL TINYINT, PostgreSQL uuid/timestamptz/json).

mod sql;
pub mod time;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Executor};

pub use sqlx::any::{AnyArguments, AnyRow};
pub use sqlx::{Any, Row, Transaction};

/// Which SQL dialect a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    /// The dialect a database URL names, or `None` for an unsupported scheme.
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            _ => None,
        }
    }
}

/// Options for opening the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    /// PostgreSQL schema holding opshub's own tables.
    pub pg_schema: String,
    pub max_connections: u32,
}

/// A cloneable handle to the managed database.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    pg_schema: Arc<str>,
    cache: Arc<RwLock<HashMap<usize, Arc<str>>>>,
    /// SQLite: this process's write transactions queue here, woken in turn, instead of
    /// meeting SQLite's lock and its busy handler, which polls with sleeps growing to
    /// 100 ms (the source of SQLite's tail latency under concurrent writers).
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dialect", &self.dialect)
            .finish()
    }
}

/// SQLite needs these on every connection: WAL lets readers run beside the writer, the
/// busy timeout makes concurrent writers wait instead of failing, and foreign keys are off
/// by default in SQLite.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

impl Db {
    /// Opens a pool for `opts.url`; SQLite files are created when missing.
    pub async fn connect(opts: &DbOptions) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(&opts.url).ok_or_else(|| DbError::UnsupportedUrl {
            url: redact_url(&opts.url),
        })?;
        let url = match dialect {
            Dialect::Sqlite => sqlite_url_with_create(&opts.url),
            // sqlx knows MariaDB only by the mysql scheme.
            Dialect::Mysql => loopback_without_tls(
                &opts.url.replacen("mariadb://", "mysql://", 1),
                "ssl-mode=disabled",
            ),
            Dialect::Postgres => loopback_without_tls(&opts.url, "sslmode=disable"),
        };
        let connect_opts = AnyConnectOptions::from_str(&url).map_err(|e| DbError::Connect {
            url: redact_url(&opts.url),
            source: e,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            // The default pings every connection before each use: a second round trip per
            // query. A dead connection instead fails one query and is then replaced, and
            // connections are recycled every 30 minutes.
            .test_before_acquire(false)
            .max_lifetime(Duration::from_secs(30 * 60))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    if dialect == Dialect::Mysql {
                        // READ COMMITTED, as PostgreSQL: no gap locks from empty range scans
                        // in queue claims, and each statement sees the latest commits.
                        conn.execute("SET SESSION time_zone = '+00:00'").await?;
                        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_opts)
            .await
            .map_err(|e| DbError::Connect {
                url: redact_url(&opts.url),
                source: e,
            })?;
        Ok(Db {
            pool,
            dialect,
            pg_schema: Arc::from(opts.pg_schema.as_str()),
            cache: Arc::default(),
            writer: Arc::default(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The PostgreSQL schema of opshub's tables (unused on other backends).
    pub fn pg_schema(&self) -> &str {
        &self.pg_schema
    }

    /// `sql` rewritten for this dialect. Keyed by the static string's address, so each call
    /// site pays for the rewrite once.
    pub fn sql(&self, sql: &'static str) -> AssertSqlSafe<Arc<str>> {
        let key = sql.as_ptr() as usize;
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(&key).cloned()) {
            return AssertSqlSafe(hit);
        }
        let rewritten: Arc<str> = Arc::from(sql::rewrite(sql, self.dialect, &self.pg_schema));
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(key, rewritten.clone());
        }
        AssertSqlSafe(rewritten)
    }

    /// `sql` rewritten for this dialect without caching, for SQL assembled at run time.
    pub fn sql_dynamic(&self, sql: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(sql::rewrite(sql, self.dialect, &self.pg_schema))
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`, so two writers queue on
    /// the busy timeout instead of one failing when its read lock cannot be upgraded.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let turn = self.write_turn().await;
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            _ => self.pool.begin().await?,
        };
        Ok(WriteTx { tx: Some(tx), turn })
    }

    /// SQLite: waits for this process's turn to write (held by every [`WriteTx`]); a
    /// long-lived writer holds it around its own writes. `None` elsewhere (row locks).
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.dialect {
            Dialect::Sqlite => Some(self.writer.clone().lock_owned().await),
            _ => None,
        }
    }

    /// [`Db::begin_write`] on a connection the caller holds (a long-lived writer's), which
    /// also holds its [`Db::write_turn`].
    pub async fn begin_write_on<'c>(
        &self,
        conn: &'c mut sqlx::AnyConnection,
    ) -> Result<Transaction<'c, Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await,
            _ => sqlx::Connection::begin(conn).await,
        }
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A write transaction that is rolled back at once when dropped uncommitted (an early
/// return or an error). A plain sqlx transaction only queues its rollback until its
/// connection is next used, and keeps its locks meanwhile: SQLite's write lock, MySQL's
/// next-key locks (which made `SKIP LOCKED` claims skip due rows).
pub struct WriteTx {
    tx: Option<Transaction<'static, Any>>,
    /// SQLite: this process's writer turn, held until the commit or rollback is done.
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.tx.take() {
            Some(tx) => tx.commit().await,
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        self.tx
            .as_ref()
            .expect("a WriteTx holds its transaction until commit consumes it")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        self.tx
            .as_mut()
            .expect("a WriteTx holds its transaction until commit consumes it")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let turn = self.turn.take();
            rt.spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "rollback of an abandoned transaction failed");
                }
                drop(turn);
            });
        }
    }
}

/// Turns a stored 0/1 flag into a bool and back; see the module docs for why flags are
/// integers.
pub fn flag(b: bool) -> i16 {
    i16::from(b)
}

/// Whether a sqlx error is a unique-constraint violation (each caller turns it into a 409).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                // MySQL duplicate-key (1062) reaches Any without a kind on some paths.
                || db.code().as_deref() == Some("23000")
        }
        _ => false,
    }
}

fn sqlite_url_with_create(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

/// The URL with any password replaced, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_string(),
    }
}

/// **Choice:** a PostgreSQL or MySQL URL that names a loopback host (`localhost`,
/// `127.0.0.1`, `::1`) and says nothing about TLS connects without it. The drivers'
/// default ("prefer") negotiates TLS even there, which protects nothing (the bytes never
/// leave the machine) and costs a handshake per connection, about 5 ms of every CLI run.
/// Any other host, or a URL with its own `sslmode` / `ssl-mode`, is left as written.
fn loopback_without_tls(url: &str, disable: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let lower = url.to_ascii_lowercase();
    if !loopback || lower.contains("sslmode=") || lower.contains("ssl-mode=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{disable}")
}

/// The SQLite file a `sqlite://` URL points at, if it is a file.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {url}: use sqlite://PATH, postgres://… or mysql://…")]
    UnsupportedUrl { url: String },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_skip_tls_unless_they_ask_for_it() {
        let pg = |u: &str| loopback_without_tls(u, "sslmode=disable");
        assert_eq!(
            pg("postgres://u@127.0.0.1:5432/db"),
            "postgres://u@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(
            pg("postgres://u:p@localhost/db?application_name=x"),
            "postgres://u:p@localhost/db?application_name=x&sslmode=disable"
        );
        assert_eq!(
            pg("postgres://[::1]:5432/db"),
            "postgres://[::1]:5432/db?sslmode=disable"
        );
        for kept in [
            "postgres://u@127.0.0.1/db?sslmode=require",
            "postgres://u@db.internal:5432/db",
            "postgres://u@10.0.0.5/db",
            "postgres://localhost.evil.example/db",
        ] {
            assert_eq!(pg(kept), kept);
        }
        assert_eq!(
            loopback_without_tls("mysql://root@127.0.0.1:3306/t", "ssl-mode=disabled"),
            "mysql://root@127.0.0.1:3306/t?ssl-mode=disabled"
        );
    }

    #[test]
    fn redacts_password_but_keeps_user_and_host() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/test"),
            "mysql://root@localhost/test"
        );
        assert_eq!(redact_url("sqlite://opshub.db"), "sqlite://opshub.db");
    }

    #[test]
    fn finds_sqlite_file_path() {
        assert_eq!(sqlite_path("sqlite://opshub.db"), Some("opshub.db".into()));
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?mode=rwc"),
            Some("/tmp/a.db".into())
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }

    #[test]
    fn picks_dialect_from_scheme() {
        assert_eq!(
            Dialect::from_url("postgresql://x/y"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::from_url("mariadb://x/y"), Some(Dialect::Mysql));
        assert_eq!(Dialect::from_url("redis://x"), None);
    }
}

/// Splits `items` into runs of power-of-two lengths, each at most `max` (itself a power of
/// two), largest first. Multi-row statements built per run then come in a handful of
/// shapes, which each connection's statement cache keeps prepared; a shape per batch size
/// would make PostgreSQL parse and plan a new statement on nearly every batch.
pub fn pow2_chunks<T>(mut items: &[T], max: usize) -> Vec<&[T]> {
    let mut runs = Vec::new();
    while !items.is_empty() {
        let take = max.min(1 << items.len().ilog2());
        let (head, rest) = items.split_at(take);
        runs.push(head);
        items = rest;
    }
    runs
}

#[cfg(test)]
mod turn_tests;

#[cfg(test)]
mod chunk_tests {
    #[test]
    fn runs_are_powers_of_two_up_to_the_maximum() {
        let lens = |n: usize, max| {
            super::pow2_chunks(&vec![0u8; n], max)
                .iter()
                .map(|r| r.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(lens(7, 128), vec![4, 2, 1]);
        assert_eq!(lens(300, 128), vec![128, 128, 32, 8, 4]);
        assert_eq!(lens(1, 128), vec![1]);
        assert!(lens(0, 128).is_empty());
    }
}

/// A statement's failure as a user should read it: the server's message and, on
/// PostgreSQL, the script line it points at, when `first_line` (the script line of the
/// first line of `sql`; 0 when opshub put one line in front, negative for more) is given. sqlx's own text
/// appends the line of PostgreSQL's C source instead ("at line 1392"), which reads like a
/// line of the user's script.
pub fn error_text(e: &sqlx::Error, sql: &str, first_line: Option<isize>) -> String {
    let sqlx::Error::Database(d) = e else {
        return e.to_string();
    };
    let mut text = d.message().to_string();
    let position = d
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| match pg.position() {
            Some(sqlx::postgres::PgErrorPosition::Original(p)) => Some(p),
            _ => None,
        });
    if let (Some(p), Some(first)) = (position, first_line) {
        let newlines = sql
            .chars()
            .take(p.saturating_sub(1))
            .filter(|c| *c == '\n')
            .count();
        let line = first.saturating_add_unsigned(newlines);
        if line >= 1 {
            text.push_str(&format!(" (line {line} of the script)"));
        }
    }
    text
}
