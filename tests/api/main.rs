//! The integration test binary: one binary for every domain (link time), a file per domain.

mod helpers;

mod binary;
mod http;
mod schema;
mod tokens;
mod webhook_log;
