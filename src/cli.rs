//! The `opshub` command line. `serve` runs the service; every other verb works on the
//! database directly. Output is a human table by default and stable JSON with `--json`.
//! Exit codes follow SPEC §1 (`error::exit`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, ConfigError, Flags};
use crate::db::Db;
use crate::error::{ApiError, exit};
use crate::migrations::cli::MigrateCmd;
use crate::tokens::cli::TokenCmd;
use crate::webhook_log::cli::{LogCmd, SourceCmd};

#[derive(Debug, Parser)]
#[command(
    name = "opshub",
    version,
    about = "Migrations, procedures with drift detection, signed webhooks, an incoming webhook log \
             and typed configuration, in one binary.",
    after_help = "Configuration: flags > OPSHUB_* environment > opshub.toml > defaults. \
                  Run `opshub config` to see the effective values and every variable."
)]
pub struct Cli {
    /// Database URL: sqlite://PATH, postgres://… or mysql://… [env: OPSHUB_DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Configuration file [env: OPSHUB_CONFIG] [default: opshub.toml, if present]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter, e.g. info or opshub=debug [env: OPSHUB_LOG]
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Log format: text or json [env: OPSHUB_LOG_FORMAT]
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (API, OpenAPI, docs, console, metrics)
    Serve {
        /// Listen address [env: OPSHUB_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Manage API tokens
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Typed key-value configuration
    Kv {
        #[command(subcommand)]
        cmd: crate::kv::cli::KvCmd,
    },
    /// Print the Standard Webhooks headers for a payload signed with a secret
    Digest(crate::webhooks::cli::DigestArgs),
    /// Check a received webhook's headers and body against a secret (exit 4 if invalid)
    Verify(crate::webhooks::cli::VerifyArgs),
    /// Master key rotation and status
    Keys {
        #[command(subcommand)]
        cmd: crate::keys::KeysCmd,
    },
    /// Manage and run schema migrations
    Migrate {
        #[command(subcommand)]
        cmd: MigrateCmd,
    },
    /// Procedures, functions, triggers and views: deploy, drift, rollback, import
    Proc {
        #[command(subcommand)]
        cmd: crate::procedures::cli::ProcCmd,
    },
    /// Manage ingest sources of the incoming webhook log
    Source {
        #[command(subcommand)]
        cmd: SourceCmd,
    },
    /// Query, verify, prune and replay the incoming webhook log
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Print the effective configuration (secrets masked) and where each value came from
    Config,
}

/// What a command needs: the configuration and the output mode.
pub struct Ctx {
    pub config: Config,
    pub json: bool,
}

impl Ctx {
    /// Opens the database (creating or upgrading opshub's tables).
    pub async fn db(&self) -> anyhow::Result<Db> {
        crate::app::open_db(&self.config).await
    }

    /// The application state over the database and keyring, without background work.
    pub async fn state(&self) -> anyhow::Result<crate::app::AppState> {
        let keys = crate::app::load_keyring(&self.config)?;
        let db = self.db().await?;
        Ok(crate::app::AppState::new(self.config.clone(), db, keys))
    }

    pub fn print_json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    }
}

/// An error that means the command was used wrongly (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

/// An error that carries its own exit code (SPEC §1: 3 pending, 4 validation, 6 dirty, …).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    pub exit: i32,
    pub message: String,
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let mut flags = Flags {
        config_file: cli.config.clone(),
        ..Flags::default()
    };
    let mut set = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            flags.values.insert(k, v.clone());
        }
    };
    set("database_url", &cli.database_url);
    set("log", &cli.log);
    set("log_format", &cli.log_format);
    if let Command::Serve { listen } = &cli.command {
        set("listen", listen);
    }
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("opshub: {e}");
            return exit::USAGE;
        }
    };
    crate::telemetry::init(&config.log, config.log_format);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("opshub: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let ctx = Ctx {
        config,
        json: cli.json,
    };
    match runtime.block_on(dispatch(ctx, cli.command)) {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

async fn dispatch(ctx: Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => serve(ctx).await,
        Command::Token { cmd } => crate::tokens::cli::run(&ctx, cmd).await,
        Command::Kv { cmd } => crate::kv::cli::run(&ctx, cmd).await,
        Command::Keys { cmd } => crate::keys::run(&ctx, cmd).await,
        Command::Digest(a) => crate::webhooks::cli::digest(&ctx, a),
        Command::Verify(a) => crate::webhooks::cli::verify(&ctx, a),
        Command::Migrate { cmd } => crate::migrations::cli::run(&ctx, cmd).await,
        Command::Proc { cmd } => crate::procedures::cli::run(&ctx, cmd).await,
        Command::Source { cmd } => crate::webhook_log::cli::run_source(&ctx, cmd).await,
        Command::Log { cmd } => crate::webhook_log::cli::run_log(&ctx, cmd).await,
        Command::Config => print_config(&ctx),
    }
}

/// Prints the error and picks the exit code: bad input or configuration is 2, anything
/// else that failed is 1.
fn report(e: &anyhow::Error) -> i32 {
    eprintln!("opshub: {e:#}");
    if let Some(c) = e.downcast_ref::<Coded>() {
        return c.exit;
    }
    if e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some() {
        return exit::USAGE;
    }
    match e.downcast_ref::<ApiError>() {
        // A lost compare-and-set is a failed operation, not a misuse of the command.
        Some(ApiError::PreconditionFailed { .. }) => exit::FAILED,
        Some(api) if api.status().is_client_error() => exit::USAGE,
        _ => exit::FAILED,
    }
}

async fn serve(ctx: Ctx) -> anyhow::Result<()> {
    let listen = ctx.config.listen.clone();
    let app = App::build(ctx.config).await?;
    if let Some(token) = &app.first_admin_token {
        // stdout, not the log: the token must never reach log files.
        println!(
            "\nopshub: created the first admin token. It is shown once; store it now:\n\n    {token}\n\n\
             Use it as `Authorization: Bearer <token>`; create more with `opshub token create`.\n"
        );
        std::io::stdout().flush()?;
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let state = app.state.clone();
    crate::shutdown::on_signal(state.shutdown.clone());
    tracing::info!(
        addr = %listener.local_addr()?,
        database = %crate::db::redact_url(&state.config.database_url),
        "opshub is serving; API docs at /docs"
    );
    crate::http::serve(listener, app.router, state.shutdown.clone())
        .await
        .context("the HTTP server failed")?;
    // Let in-flight deliveries finish and record their outcome before the pool closes.
    state.shutdown.cancel();
    state.tasks.close();
    let drain = Duration::from_secs(state.config.webhook_timeout_secs + 5);
    if tokio::time::timeout(drain, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work did not finish in time; leased deliveries will be retried");
    }
    state.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn print_config(ctx: &Ctx) -> anyhow::Result<()> {
    let rows = ctx.config.display_rows();
    if ctx.json {
        let map: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(k, v, src)| {
                (
                    k.to_string(),
                    serde_json::json!({ "value": v, "source": src }),
                )
            })
            .collect();
        return ctx.print_json(&map);
    }
    let mut table = Table::new(&["SETTING", "VALUE", "SOURCE", "ENV"]);
    for ((key, value, source), setting) in rows.into_iter().zip(crate::config::SETTINGS) {
        let src = serde_json::to_value(source)?
            .as_str()
            .unwrap_or("")
            .to_string();
        table.row(vec![key.to_string(), value, src, setting.env.to_string()]);
    }
    table.print();
    Ok(())
}

/// A plain aligned text table for human output.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }

    pub fn print(&self) {
        println!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
