//! The core component: metadata and API tokens.

use super::{Component, Step};

pub const COMPONENT: Component = Component {
    name: "core",
    steps: &[Step::new(
        1,
        &[
            "CREATE TABLE opshub_meta (
                name {key} PRIMARY KEY,
                value {text} NOT NULL
            )",
            "CREATE TABLE opshub_tokens (
                id {id} PRIMARY KEY,
                name {key} NOT NULL,
                scope {key} NOT NULL,
                token_hash {key} NOT NULL UNIQUE,
                prefix {key} NOT NULL,
                created_at {ts} NOT NULL,
                last_used_at {ts},
                revoked_at {ts}
            )",
            // Index names are written idx_opshub_… so the PostgreSQL rewrite, which
            // schema-qualifies opshub_… table names, leaves them alone.
            "CREATE INDEX idx_opshub_tokens_name ON opshub_tokens (name)",
        ],
    )],
};
