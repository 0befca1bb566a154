//! The console component: browser sessions of the web console. A row is keyed by the
//! SHA-256 of the cookie value (a database read never yields a usable cookie) and names
//! the API token it was opened with, so revoking that token ends the session.

use super::{Component, Step};

pub const COMPONENT: Component = Component {
    name: "console",
    steps: &[Step::new(
        1,
        &[
            "CREATE TABLE opshub_console_sessions (
                id_hash {key} PRIMARY KEY,
                token_id {id} NOT NULL,
                csrf {key} NOT NULL,
                created_at {ts} NOT NULL,
                expires_at {ts} NOT NULL
            )",
            "CREATE INDEX idx_opshub_console_sessions_token ON opshub_console_sessions (token_id)",
        ],
    )],
};
