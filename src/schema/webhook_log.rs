//! The webhook-log component: ingest sources, the append-only log with its chain head,
//! prune checkpoints and replay records. The log and the checkpoints are guarded by
//! per-dialect triggers: UPDATE is always refused, and DELETE only of log rows whose `seq`
//! is covered by a checkpoint (so pruning works, and nothing else deletes). PostgreSQL also
//! refuses TRUNCATE. The guards are the only statements that differ between dialects.

use super::{Component, Step};
use crate::db::Dialect;

pub const COMPONENT: Component = Component {
    name: "webhook_log",
    steps: &[Step {
        version: 1,
        statements: &[
            "CREATE TABLE opshub_ingest_sources (
                id {id} PRIMARY KEY,
                name {key} NOT NULL UNIQUE,
                verifier {key} NOT NULL,
                secret {text},
                redact_headers {text} NOT NULL,
                max_body_bytes {int} NOT NULL,
                reject_invalid {flag} NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )",
            "CREATE TABLE opshub_webhook_log (
                seq {int} PRIMARY KEY,
                id {id} NOT NULL UNIQUE,
                source {key} NOT NULL,
                method {key} NOT NULL,
                path {text} NOT NULL,
                query {text},
                headers {text} NOT NULL,
                body {blob} NOT NULL,
                content_type {text},
                body_size {int} NOT NULL,
                remote_addr {key} NOT NULL,
                received_at {ts} NOT NULL,
                signature_status {key} NOT NULL,
                signature_reason {key},
                prev_hash {key} NOT NULL,
                hash {key} NOT NULL
            )",
            "CREATE INDEX idx_opshub_webhook_log_source ON opshub_webhook_log (source, seq)",
            "CREATE INDEX idx_opshub_webhook_log_received ON opshub_webhook_log (received_at)",
            // One row (id = 1): the last seq and hash. Writers lock it, so every instance on
            // one database extends one chain.
            "CREATE TABLE opshub_webhook_log_head (
                id {int} PRIMARY KEY,
                seq {int} NOT NULL,
                hash {key} NOT NULL
            )",
            "INSERT INTO opshub_webhook_log_head (id, seq, hash) VALUES (1, 0,
                '0000000000000000000000000000000000000000000000000000000000000000')",
            "CREATE TABLE opshub_webhook_log_checkpoints (
                seq {int} PRIMARY KEY,
                hash {key} NOT NULL,
                pruned_rows {int} NOT NULL,
                before_ts {ts} NOT NULL,
                created_at {ts} NOT NULL
            )",
            "CREATE TABLE opshub_webhook_log_replays (
                id {id} PRIMARY KEY,
                log_id {id} NOT NULL,
                url {text} NOT NULL,
                status {int},
                error {text},
                duration_ms {int} NOT NULL,
                created_at {ts} NOT NULL
            )",
            "CREATE INDEX idx_opshub_webhook_log_replays_log ON opshub_webhook_log_replays (log_id)",
        ],
        dialect_statements: guards,
    }],
};

/// The append-only triggers, per dialect.
fn guards(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Sqlite => SQLITE_GUARDS,
        Dialect::Postgres => POSTGRES_GUARDS,
        Dialect::Mysql => MYSQL_GUARDS,
    }
}

const SQLITE_GUARDS: &[&str] = &[
    "CREATE TRIGGER trg_opshub_webhook_log_no_update BEFORE UPDATE ON opshub_webhook_log
     BEGIN SELECT RAISE(ABORT, 'opshub_webhook_log is append-only: rows cannot be updated'); END",
    "CREATE TRIGGER trg_opshub_webhook_log_no_delete BEFORE DELETE ON opshub_webhook_log
     WHEN OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM opshub_webhook_log_checkpoints)
     BEGIN SELECT RAISE(ABORT, 'opshub_webhook_log is append-only: only rows covered by a prune checkpoint can be deleted'); END",
    "CREATE TRIGGER trg_opshub_webhook_log_checkpoints_no_update BEFORE UPDATE ON opshub_webhook_log_checkpoints
     BEGIN SELECT RAISE(ABORT, 'opshub_webhook_log_checkpoints is append-only'); END",
    "CREATE TRIGGER trg_opshub_webhook_log_checkpoints_no_delete BEFORE DELETE ON opshub_webhook_log_checkpoints
     BEGIN SELECT RAISE(ABORT, 'opshub_webhook_log_checkpoints is append-only'); END",
];

// Function names are written opshub_… so the rewrite puts them in opshub's schema; trigger
// names cannot be schema-qualified in PostgreSQL, so they carry no prefix.
const POSTGRES_GUARDS: &[&str] = &[
    "CREATE FUNCTION opshub_webhook_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP <> 'DELETE' THEN
         RAISE EXCEPTION 'opshub webhook_log is append-only: % refused', TG_OP;
       END IF;
       IF OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM opshub_webhook_log_checkpoints) THEN
         RAISE EXCEPTION 'opshub webhook_log is append-only: only rows covered by a prune checkpoint can be deleted';
       END IF;
       RETURN OLD;
     END $$",
    "CREATE FUNCTION opshub_webhook_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       RAISE EXCEPTION 'opshub % is append-only: % refused', TG_TABLE_NAME, TG_OP;
     END $$",
    "CREATE TRIGGER webhook_log_append_only BEFORE UPDATE OR DELETE ON opshub_webhook_log
     FOR EACH ROW EXECUTE FUNCTION opshub_webhook_log_guard()",
    "CREATE TRIGGER webhook_log_no_truncate BEFORE TRUNCATE ON opshub_webhook_log
     FOR EACH STATEMENT EXECUTE FUNCTION opshub_webhook_log_refuse()",
    "CREATE TRIGGER webhook_log_checkpoints_append_only BEFORE UPDATE OR DELETE ON opshub_webhook_log_checkpoints
     FOR EACH ROW EXECUTE FUNCTION opshub_webhook_log_refuse()",
    "CREATE TRIGGER webhook_log_checkpoints_no_truncate BEFORE TRUNCATE ON opshub_webhook_log_checkpoints
     FOR EACH STATEMENT EXECUTE FUNCTION opshub_webhook_log_refuse()",
];

const MYSQL_GUARDS: &[&str] = &[
    "CREATE TRIGGER trg_opshub_webhook_log_no_update BEFORE UPDATE ON opshub_webhook_log
     FOR EACH ROW SIGNAL SQLSTATE '45000'
     SET MESSAGE_TEXT = 'opshub_webhook_log is append-only: rows cannot be updated'",
    "CREATE TRIGGER trg_opshub_webhook_log_no_delete BEFORE DELETE ON opshub_webhook_log
     FOR EACH ROW BEGIN
       IF OLD.seq > (SELECT COALESCE(MAX(seq), 0) FROM opshub_webhook_log_checkpoints) THEN
         SIGNAL SQLSTATE '45000'
         SET MESSAGE_TEXT = 'opshub_webhook_log is append-only: only rows covered by a prune checkpoint can be deleted';
       END IF;
     END",
    "CREATE TRIGGER trg_opshub_webhook_log_checkpoints_no_update BEFORE UPDATE ON opshub_webhook_log_checkpoints
     FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'opshub_webhook_log_checkpoints is append-only'",
    "CREATE TRIGGER trg_opshub_webhook_log_checkpoints_no_delete BEFORE DELETE ON opshub_webhook_log_checkpoints
     FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'opshub_webhook_log_checkpoints is append-only'",
];
