//! `opshub migrate new|import|list|status|up|down|validate|baseline|resolve|resume|history`,
//! working on the database directly through the same operations as the API. Exit codes:
//! 1 a migration failed, 2 bad input, 3 pending (`status --check`), 4 validation failed or
//! out of order, 6 dirty, 7 lock timeout. `--json` prints the same documents as the API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::import::ImportReport;
use super::model::{NewMigration, RollbackOptions, RunOptions};
use super::output;
use super::run::Runner;
use crate::cli::{Coded, Ctx};
use crate::db::Db;
use crate::error::{ApiError, exit};

#[derive(Debug, Subcommand)]
pub enum MigrateCmd {
    /// Create a migration record (active unless --inactive); scripts inline or from files
    New(NewArgs),
    /// Import a Flyway, golang-migrate / sqlx or dbmate folder (idempotent)
    Import { dir: PathBuf },
    /// List migrations in natural order
    List,
    /// Show every migration's state; --check exits 3 when anything is pending
    Status {
        #[arg(long)]
        check: bool,
    },
    /// Apply pending migrations
    Up(UpArgs),
    /// Roll back executed migrations, newest first (default 1)
    Down(DownArgs),
    /// Report changed scripts of executed migrations, out-of-order and dirty ones (exit 4)
    Validate,
    /// Mark every migration up to VERSION executed without running it
    Baseline {
        #[arg(long)]
        version: String,
    },
    /// Declare a dirty migration applied or rolled back (after fixing it by hand)
    Resolve {
        id: String,
        #[arg(
            long,
            conflicts_with = "rolled_back",
            required_unless_present = "rolled_back"
        )]
        applied: bool,
        #[arg(long)]
        rolled_back: bool,
    },
    /// Continue a dirty migration at the statement that failed
    Resume {
        id: String,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Every up/down attempt, newest first
    History {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct NewArgs {
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
    #[arg(long, default_value = "")]
    description: String,
    /// The up script; `@FILE` reads it from a file
    #[arg(long)]
    up: String,
    /// The down script; `@FILE` reads it from a file
    #[arg(long)]
    down: Option<String>,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    execution_order: i64,
    /// Run statement by statement, without a transaction
    #[arg(long)]
    no_transaction: bool,
    #[arg(long)]
    inactive: bool,
}

impl NewArgs {
    fn into_new(self) -> anyhow::Result<NewMigration> {
        Ok(NewMigration {
            name: self.name,
            version: self.version,
            execution_order: self.execution_order,
            description: self.description,
            up_script: read_arg(&self.up)?,
            down_script: self.down.as_deref().map(read_arg).transpose()?,
            transactional: !self.no_transaction,
            is_active: !self.inactive,
        })
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    lock: LockArgs,
    /// Import this folder first
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Last version to apply (inclusive)
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    steps: Option<u32>,
    /// Print the plan with its SQL; execute nothing
    #[arg(long)]
    dry_run: bool,
    /// Apply pending migrations ordered before an executed one
    #[arg(long)]
    out_of_order: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    lock: LockArgs,
    /// Roll back everything above this version (exclusive)
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    steps: Option<u32>,
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Seconds to wait for the migration lock [env: OPSHUB_MIGRATION_LOCK_TIMEOUT_SECS]
    #[arg(long, value_name = "SECS")]
    lock_timeout: Option<u64>,
}

pub async fn run(ctx: &Ctx, cmd: MigrateCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    let runner = Runner {
        actor: format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        ),
        lock_timeout: Duration::from_secs(ctx.config.migration_lock_timeout_secs),
    };
    let result = dispatch(ctx, &db, &runner, cmd).await;
    db.close().await;
    result.map_err(coded)
}

async fn dispatch(ctx: &Ctx, db: &Db, runner: &Runner, cmd: MigrateCmd) -> anyhow::Result<()> {
    match cmd {
        MigrateCmd::New(args) => output::created(ctx, &super::create(db, args.into_new()?).await?),
        MigrateCmd::Import { dir } => output::import(ctx, &import(db, runner, &dir).await?),
        MigrateCmd::List => output::list(ctx, db).await,
        MigrateCmd::Status { check } => output::status(ctx, db, check).await,
        MigrateCmd::Up(args) => up(ctx, db, runner, args).await,
        MigrateCmd::Down(a) => {
            let opts = RollbackOptions {
                to: a.to,
                steps: a.steps,
                dry_run: a.dry_run,
                lock_timeout: a.lock.lock_timeout,
            };
            output::finish(ctx, runner.down(db, &opts).await?)
        }
        MigrateCmd::Validate => output::validate(ctx, db).await,
        MigrateCmd::Baseline { version } => {
            output::baselined(ctx, &version, &runner.baseline(db, &version).await?)
        }
        MigrateCmd::Resolve { id, applied, .. } => {
            output::resolved(ctx, &runner.resolve(db, &id, applied).await?)
        }
        MigrateCmd::Resume { id, lock } => {
            output::finish(ctx, runner.resume(db, &id, lock.lock_timeout).await?)
        }
        MigrateCmd::History { limit } => output::history(ctx, db, limit).await,
    }
}

async fn import(db: &Db, runner: &Runner, dir: &Path) -> anyhow::Result<ImportReport> {
    Ok(runner.import(db, super::import::read_dir(db, dir)?).await?)
}

/// `up --dir` imports first (its report printed unless `--json`, which prints the run).
async fn up(ctx: &Ctx, db: &Db, runner: &Runner, a: UpArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.dir {
        let report = import(db, runner, dir).await?;
        if !ctx.json {
            output::import(ctx, &report)?;
        }
    }
    let opts = RunOptions {
        to: a.to,
        steps: a.steps,
        dry_run: a.dry_run,
        out_of_order: a.out_of_order,
        lock_timeout: a.lock.lock_timeout,
    };
    let report = runner.up(db, &opts).await?;
    let ran = !a.dry_run && report.failed.is_none();
    output::finish(ctx, report)?;
    if ran && a.dir.is_some() {
        // As in Flyway: repeatable scripts deploy after the versioned migrations, when
        // new or changed (deploy-all deploys every pending or changed procedure).
        let opts = crate::procedures::model::DeployOptions {
            dry_run: false,
            lock_timeout: a.lock.lock_timeout,
        };
        let deployed = crate::procedures::deploy::deploy_all(db, runner, &opts).await?;
        if !ctx.json {
            for d in &deployed.deployed {
                println!("deployed procedure {}", d.procedure.name);
            }
        }
        if let Some(f) = deployed.failed {
            return Err(Coded {
                exit: exit::FAILED,
                message: format!(
                    "repeatable script {:?} failed to deploy: {}",
                    f.procedure.name, f.error
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// `@FILE` reads a file; anything else is the script itself.
fn read_arg(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| crate::cli::usage(format!("cannot read {path}: {e}"))),
        None => Ok(arg.to_string()),
    }
}

/// Maps API error codes onto SPEC's exit codes.
fn coded(e: anyhow::Error) -> anyhow::Error {
    let Some(api) = e.downcast_ref::<ApiError>() else {
        return e;
    };
    let code = match api.code() {
        "locked" => exit::LOCK_TIMEOUT,
        "dirty" => exit::DIRTY,
        "out_of_order" | "checksum_mismatch" => exit::VALIDATION,
        _ if api.status().is_client_error() => exit::USAGE,
        _ => exit::FAILED,
    };
    Coded {
        exit: code,
        message: api.to_string(),
    }
    .into()
}
