//! The outbound-webhooks component: endpoints, events, one delivery per (event, webhook)
//! with its lease, and every attempt. `opshub_webhooks_gen` is bumped on every endpoint
//! change so each instance knows when its in-memory pattern index is stale.

use super::{Component, Step};

pub const COMPONENT: Component = Component {
    name: "webhooks",
    steps: &[Step::new(
        1,
        &[
            "CREATE TABLE opshub_webhooks (
                id {id} PRIMARY KEY,
                name {key} NOT NULL UNIQUE,
                endpoint {text} NOT NULL,
                events {text} NOT NULL,
                secret_ct {text} NOT NULL,
                prev_secret_ct {text},
                prev_secret_until {ts},
                service {key},
                metadata {text} NOT NULL,
                headers {text} NOT NULL,
                is_active {flag} NOT NULL,
                description {text} NOT NULL,
                disabled_reason {text},
                retry_schedule {text},
                failing_since {ts},
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )",
            "CREATE TABLE opshub_webhooks_gen (
                id {int} PRIMARY KEY,
                generation {int} NOT NULL
            )",
            "INSERT INTO opshub_webhooks_gen (id, generation) VALUES (1, 0)",
            "CREATE TABLE opshub_events (
                id {key} PRIMARY KEY,
                type {key} NOT NULL,
                body {text} NOT NULL,
                created_at {ts} NOT NULL
            )",
            "CREATE TABLE opshub_deliveries (
                id {id} PRIMARY KEY,
                event_id {key} NOT NULL,
                webhook_id {id} NOT NULL,
                status {key} NOT NULL,
                attempts {int} NOT NULL,
                next_attempt_at {ts} NOT NULL,
                lease_until {ts},
                leased_by {key},
                last_status {int},
                last_error {text},
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL,
                delivered_at {ts}
            )",
            "CREATE INDEX idx_opshub_deliveries_due ON opshub_deliveries (status, next_attempt_at)",
            "CREATE INDEX idx_opshub_deliveries_webhook ON opshub_deliveries (webhook_id, created_at)",
            "CREATE INDEX idx_opshub_deliveries_event ON opshub_deliveries (event_id)",
            "CREATE TABLE opshub_delivery_attempts (
                id {id} PRIMARY KEY,
                delivery_id {id} NOT NULL,
                attempt {int} NOT NULL,
                started_at {ts} NOT NULL,
                duration_ms {int} NOT NULL,
                status_code {int},
                response_headers {text} NOT NULL,
                response_body {text} NOT NULL,
                error {text},
                worker {key} NOT NULL
            )",
            "CREATE INDEX idx_opshub_attempts_delivery ON opshub_delivery_attempts (delivery_id)",
        ],
    )],
};
