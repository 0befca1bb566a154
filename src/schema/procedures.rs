//! The procedures component: one row per managed routine, trigger or view, with what was
//! deployed (`deployed_hash`) and what the database rendered right after the deploy
//! (`catalog_hash`, `catalog_def`, and the catalog identities in `catalog_keys`), so drift
//! is a comparison of catalog text with catalog text.

use super::{Component, Step};

pub const COMPONENT: Component = Component {
    name: "procedures",
    steps: &[Step::new(
        1,
        &[
            // depends_on and catalog_keys are JSON arrays of text.
            "CREATE TABLE opshub_procedures (
                id {id} PRIMARY KEY,
                name {key} NOT NULL UNIQUE,
                type {key} NOT NULL,
                version {key} NOT NULL,
                sort {int} NOT NULL,
                up_script {text} NOT NULL,
                down_script {text},
                hash {key} NOT NULL,
                depends_on {text} NOT NULL,
                is_executed {flag} NOT NULL,
                executed_at {ts},
                deployed_hash {key},
                catalog_hash {key},
                catalog_def {text},
                catalog_keys {text},
                last_error {text},
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )",
        ],
    )],
};
