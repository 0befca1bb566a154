//! opshub: the plumbing every application team writes by hand, in one binary.
//!
//! Architecture map (read this first):
//! - [`cli`]: the `opshub` command line; every verb but `serve` works on the database
//!   directly. [`config`] resolves flags > `OPSHUB_*` env > `opshub.toml` > defaults.
//! - [`app`]: assembles state (database, keyring, token authenticator, metrics, shutdown
//!   token) for `serve`, the CLI and the tests alike.
//! - [`http`]: the router and its layers; every error is SPEC's JSON shape ([`error`]).
//!   `/api/v1` needs a bearer token ([`tokens`], [`http::auth`]).
//! - [`db`]: one `Db` handle (sqlx `Any`) for SQLite, PostgreSQL and MySQL/MariaDB, SQL
//!   written once and rewritten per dialect; [`schema`] keeps opshub's own tables current,
//!   versioned per component and apart from user migrations.
//! - [`crypto`]: AES-256-GCM for secrets at rest, bound to their owning record.
//! - [`metrics`], [`telemetry`], [`shutdown`]: Prometheus text, logs, graceful stop.
//! - [`migrations`]: versioned user migrations run under a cluster-wide lock, one
//!   transaction per migration, statement by statement where a transaction is impossible.
//! - [`procedures`]: functions, procedures, triggers and views deployed under the same
//!   lock, with drift found by comparing the live catalog with what it rendered at deploy.
//! - [`webhooks`]: endpoints, outbox publish, leased delivery workers, Standard Webhooks
//!   signing, retries, the SSRF guard; digest/verify helpers.
//! - [`webhook_log`]: ingest sources, `/ingest/*` capture through one group-commit writer,
//!   the append-only hash-chained log, verify, prune behind a checkpoint, query, replay.
//! - [`console`]: the web console at `/`, server-rendered HTML over the same operations as
//!   the API; token sign-in to a database-backed session, CSRF-checked forms, scopes.
//! - [`kv`]: typed configuration with encrypted secrets, history, CAS, a change feed and
//!   a cache every instance invalidates; [`keys`] rotates the master key over all secrets.
//!
//! Module domains (`migrations`, `procedures`, `webhooks`, `webhook_log`, `kv`) each keep
//! `mod.rs` (operations), `model.rs` (types, no I/O), `store.rs` (SQL only), `api.rs` and
//! `cli.rs` (thin adapters over the same operations); `tokens` follows the same shape.

pub mod app;
pub mod batch;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod db;
pub mod error;
pub mod http;
pub mod keys;
pub mod kv;
pub mod metrics;
pub mod migrations;
pub mod page;
pub mod procedures;
pub mod schema;
pub mod shutdown;
pub mod telemetry;
pub mod tokens;
pub mod webhook_log;
pub mod webhooks;
