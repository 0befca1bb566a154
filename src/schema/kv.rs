//! The key-value component: current entries, their full history (which doubles as the
//! change feed, ordered by the store-wide revision), and the revision counter row whose
//! lock serialises writers so that revisions commit in order.

use super::{Component, Step};

pub const COMPONENT: Component = Component {
    name: "kv",
    steps: &[Step::new(
        1,
        &[
            // value: canonical text (NULL for secrets); secret_ct: ciphertext (secrets only).
            // deleted: a tombstone, so a re-created key continues its version numbers.
            "CREATE TABLE opshub_kv (
                key_name {key} PRIMARY KEY,
                type {key} NOT NULL,
                value {text},
                secret_ct {text},
                is_active {flag} NOT NULL,
                is_cached {flag} NOT NULL,
                description {text} NOT NULL,
                version {int} NOT NULL,
                revision {int} NOT NULL,
                deleted {flag} NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL,
                updated_by {key} NOT NULL
            )",
            "CREATE TABLE opshub_kv_history (
                key_name {key} NOT NULL,
                version {int} NOT NULL,
                revision {int} NOT NULL UNIQUE,
                op {key} NOT NULL,
                type {key} NOT NULL,
                value {text},
                secret_ct {text},
                is_active {flag} NOT NULL,
                is_cached {flag} NOT NULL,
                description {text} NOT NULL,
                at {ts} NOT NULL,
                actor {key} NOT NULL,
                PRIMARY KEY (key_name, version)
            )",
            "CREATE TABLE opshub_kv_revision (
                id {int} PRIMARY KEY,
                revision {int} NOT NULL
            )",
            "INSERT INTO opshub_kv_revision (id, revision) VALUES (1, 0)",
        ],
    )],
};
