//! `opshub migrate new|import|list|status|up|down|validate|baseline|resolve|resume|history`,
//! working on the database directly through the same operations as the API. Exit codes:
//! 1 a migration failed, 2 bad input, 3 pending (`status --check`), 4 validation failed or
//! out of order, 6 dirty, 7 lock timeout. `--json` prints the same documents as the API.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use super::model::{NewMigration, RollbackOptions, RunOptions, RunReport};
use super::run::Runner;
use crate::cli::{Coded, Ctx, Table};
use crate::db::Db;
use crate::error::{ApiError, exit};
use crate::page::PageRequest;

#[derive(Debug, Subcommand)]
pub enum MigrateCmd {
    /// Create a migration record (active unless --inactive); scripts inline or from files
    New {
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
    },
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
    Up {
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
    },
    /// Roll back executed migrations, newest first (default 1)
    Down {
        #[command(flatten)]
        lock: LockArgs,
        /// Roll back everything above this version (exclusive)
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        steps: Option<u32>,
        #[arg(long)]
        dry_run: bool,
    },
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

#[derive(Debug, clap::Args)]
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
        MigrateCmd::New {
            name,
            version,
            description,
            up,
            down,
            execution_order,
            no_transaction,
            inactive,
        } => {
            let new = NewMigration {
                name,
                version,
                execution_order,
                description,
                up_script: read_arg(&up)?,
                down_script: down.as_deref().map(read_arg).transpose()?,
                transactional: !no_transaction,
                is_active: !inactive,
            };
            let m = super::create(db, new).await?;
            if ctx.json {
                return ctx.print_json(&m);
            }
            println!(
                "created {} ({} {}){}",
                m.id,
                m.version,
                m.name,
                if m.is_active { "" } else { ", inactive" }
            );
        }
        MigrateCmd::Import { dir } => {
            let report = runner
                .import(db, super::import::read_dir(db, &dir)?)
                .await?;
            print_import(ctx, &report)?;
        }
        MigrateCmd::List => list(ctx, db).await?,
        MigrateCmd::Status { check } => status(ctx, db, check).await?,
        MigrateCmd::Up {
            lock,
            dir,
            to,
            steps,
            dry_run,
            out_of_order,
        } => {
            if let Some(dir) = dir {
                let report = runner
                    .import(db, super::import::read_dir(db, &dir)?)
                    .await?;
                if !ctx.json {
                    print_import(ctx, &report)?;
                }
            }
            let opts = RunOptions {
                to,
                steps,
                dry_run,
                out_of_order,
                lock_timeout: lock.lock_timeout,
            };
            finish(ctx, runner.up(db, &opts).await?)?;
        }
        MigrateCmd::Down {
            lock,
            to,
            steps,
            dry_run,
        } => {
            let opts = RollbackOptions {
                to,
                steps,
                dry_run,
                lock_timeout: lock.lock_timeout,
            };
            finish(ctx, runner.down(db, &opts).await?)?;
        }
        MigrateCmd::Validate => validate(ctx, db).await?,
        MigrateCmd::Baseline { version } => {
            let marked = runner.baseline(db, &version).await?;
            if ctx.json {
                return ctx.print_json(&marked);
            }
            println!(
                "baselined {} migration(s) up to version {version}",
                marked.len()
            );
        }
        MigrateCmd::Resolve { id, applied, .. } => {
            let m = runner.resolve(db, &id, applied).await?;
            if ctx.json {
                return ctx.print_json(&m);
            }
            println!(
                "{} is now {}",
                m.name,
                if m.is_executed {
                    "applied"
                } else {
                    "rolled back (pending)"
                }
            );
        }
        MigrateCmd::Resume { id, lock } => {
            finish(ctx, runner.resume(db, &id, lock.lock_timeout).await?)?
        }
        MigrateCmd::History { limit } => {
            let page = super::history(
                db,
                PageRequest {
                    limit: limit.clamp(1, 1000),
                    after: None,
                },
                None,
            )
            .await?;
            if ctx.json {
                return ctx.print_json(&page.items);
            }
            let mut t = Table::new(&[
                "STARTED",
                "DIRECTION",
                "VERSION",
                "NAME",
                "OK",
                "MS",
                "ACTOR",
                "ERROR",
            ]);
            for h in page.items {
                let ok = if h.success { "yes" } else { "no" };
                t.row(vec![
                    h.started_at,
                    h.direction,
                    h.version,
                    h.migration_name,
                    ok.into(),
                    h.duration_ms.to_string(),
                    h.actor,
                    h.error.unwrap_or_default(),
                ]);
            }
            t.print();
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

/// Prints a run report; a failed migration makes the command fail (exit 1).
fn finish(ctx: &Ctx, report: RunReport) -> anyhow::Result<()> {
    if ctx.json {
        ctx.print_json(&report)?;
    } else if report.dry_run {
        for item in &report.plan {
            println!(
                "-- {} {} ({}{})",
                item.migration.version,
                item.migration.name,
                item.mode,
                item.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            for s in &item.statements {
                println!("{s};");
            }
        }
        if report.plan.is_empty() {
            println!("nothing to do");
        }
    } else {
        let verb = if report.direction == super::model::Direction::Up {
            "applied"
        } else {
            "rolled back"
        };
        for a in &report.applied {
            println!(
                "{verb} {} {} ({} ms)",
                a.migration.version, a.migration.name, a.duration_ms
            );
        }
        if report.applied.is_empty() && report.failed.is_none() {
            println!("nothing to do");
        }
        for n in &report.not_attempted {
            println!("not attempted {} {}", n.version, n.name);
        }
    }
    match &report.failed {
        None => Ok(()),
        Some(f) => Err(Coded {
            exit: if f.dirty { exit::DIRTY } else { exit::FAILED },
            message: format!(
                "migration {} {} failed{}: {}",
                f.migration.version,
                f.migration.name,
                if f.dirty {
                    " and is now dirty (resolve or resume it)"
                } else {
                    "; it was rolled back and stays pending"
                },
                f.error
            ),
        }
        .into()),
    }
}

async fn list(ctx: &Ctx, db: &Db) -> anyhow::Result<()> {
    let page = super::list(
        db,
        PageRequest {
            limit: 1000,
            after: None,
        },
    )
    .await?;
    if ctx.json {
        return ctx.print_json(&page.items);
    }
    let mut t = Table::new(&[
        "ID",
        "VERSION",
        "ORDER",
        "NAME",
        "ACTIVE",
        "EXECUTED",
        "EXECUTED AT",
    ]);
    for m in page.items {
        let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
        t.row(vec![
            m.id,
            m.version,
            m.execution_order.to_string(),
            m.name,
            yn(m.is_active),
            yn(m.is_executed),
            m.executed_at.unwrap_or_default(),
        ]);
    }
    t.print();
    Ok(())
}

async fn status(ctx: &Ctx, db: &Db, check: bool) -> anyhow::Result<()> {
    let s = super::validate::status(db).await?;
    if ctx.json {
        ctx.print_json(&s)?;
    } else {
        let mut t = Table::new(&["VERSION", "NAME", "STATE", "EXECUTED AT"]);
        for i in &s.migrations {
            t.row(vec![
                i.migration.version.clone(),
                i.migration.name.clone(),
                i.state.into(),
                i.executed_at.clone().unwrap_or_default(),
            ]);
        }
        t.print();
        println!(
            "{} executed, {} pending ({} out of order), {} dirty, {} inactive",
            s.executed, s.pending, s.out_of_order, s.dirty, s.inactive
        );
    }
    if s.dirty > 0 {
        return Err(Coded {
            exit: exit::DIRTY,
            message: format!("{} dirty migration(s)", s.dirty),
        }
        .into());
    }
    if check && s.pending > 0 {
        return Err(Coded {
            exit: exit::PENDING,
            message: format!("{} pending migration(s)", s.pending),
        }
        .into());
    }
    Ok(())
}

async fn validate(ctx: &Ctx, db: &Db) -> anyhow::Result<()> {
    let r = super::validate::validate(db).await?;
    if ctx.json {
        ctx.print_json(&r)?;
    } else {
        for f in &r.warnings {
            println!(
                "warning {} {}: {}: {}",
                f.migration.version, f.migration.name, f.code, f.message
            );
        }
        for f in &r.errors {
            println!(
                "error {} {}: {}: {}",
                f.migration.version, f.migration.name, f.code, f.message
            );
        }
        if r.valid {
            println!("valid");
        }
    }
    if r.valid {
        Ok(())
    } else {
        Err(Coded {
            exit: exit::VALIDATION,
            message: format!("validation failed: {} error(s)", r.errors.len()),
        }
        .into())
    }
}

fn print_import(ctx: &Ctx, r: &super::import::ImportReport) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(r);
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "imported: {} created, {} updated, {} unchanged",
        r.created.len(),
        r.updated.len(),
        r.unchanged
    );
    if !r.skipped_repeatables.is_empty() {
        println!(
            "skipped {} repeatable script(s) (procedures are not supported yet): {}",
            r.skipped_repeatables.len(),
            r.skipped_repeatables.join(", ")
        );
    }
    Ok(())
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
