//! The migrations component: user migration records with their execution state, the
//! append-only history of every up/down attempt, and the lock row (the SQLite lease, and
//! the holder's identity on every backend so a waiting runner can name it).

use super::{Component, Step};

pub const COMPONENT: Component = Component {
    name: "migrations",
    steps: &[Step::new(
        1,
        &[
            // applied_up/applied_down: the scripts as they were when applied, so rollback
            // runs what was applied and validate can tell a cosmetic edit from a real one.
            // dirty_info: JSON describing a partially applied migration (see runner).
            "CREATE TABLE opshub_migrations (
                id {id} PRIMARY KEY,
                name {key} NOT NULL UNIQUE,
                version {key} NOT NULL,
                execution_order {int} NOT NULL,
                description {text} NOT NULL,
                up_script {text} NOT NULL,
                down_script {text},
                transactional {flag} NOT NULL,
                is_active {flag} NOT NULL,
                is_executed {flag} NOT NULL,
                executed_at {ts},
                checksum {key},
                execution_ms {int},
                last_error {text},
                applied_up {text},
                applied_down {text},
                dirty {flag} NOT NULL,
                dirty_info {text},
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )",
            "CREATE TABLE opshub_migration_history (
                id {id} PRIMARY KEY,
                migration_id {id} NOT NULL,
                migration_name {key} NOT NULL,
                version {key} NOT NULL,
                direction {key} NOT NULL,
                success {flag} NOT NULL,
                error {text},
                duration_ms {int} NOT NULL,
                started_at {ts} NOT NULL,
                actor {key} NOT NULL
            )",
            "CREATE INDEX idx_opshub_migration_history_migration
                ON opshub_migration_history (migration_id)",
            "CREATE TABLE opshub_migration_lock (
                name {key} PRIMARY KEY,
                owner {id} NOT NULL,
                holder {text} NOT NULL,
                acquired_at {ts} NOT NULL,
                expires_at {ts} NOT NULL
            )",
        ],
    )],
};
