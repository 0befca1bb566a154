//! The integration test binary: one binary for every domain (link time), a file per domain.

mod helpers;

mod binary;
mod console;
mod http;
mod kv;
mod kv_instances;
mod limits;
mod migrations;
mod migrations_cli;
mod migrations_rollback;
mod migrations_scripts;
mod procedures;
mod procedures_cli;
mod procedures_drift;
mod schema;
mod tokens;
mod webhook_log;
mod webhooks;
mod webhooks_e2e;
