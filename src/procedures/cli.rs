//! `opshub proc list|show|create|update|delete|deploy|drift|rollback|import`, over the same
//! operations as the API. Exit codes: 1 a deploy or rollback failed, 2 bad input or a
//! refusal, 5 drift found (`drift`: anything but in_sync), 7 lock timeout.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::model::{
    DeployOptions, DeployReport, DriftReport, NewProcedure, ProcType, Procedure, ProcedurePatch,
};
use crate::cli::{Coded, Ctx, Table};
use crate::db::Db;
use crate::error::{ApiError, exit};
use crate::migrations::run::Runner;
use crate::page::PageRequest;

#[derive(Debug, Subcommand)]
pub enum ProcCmd {
    /// List procedures with their deploy state
    List,
    /// Show one procedure (by id or name)
    Show { id: String },
    /// Create a procedure record; scripts inline or `@FILE`
    Create(CreateArgs),
    /// Update a procedure's fields (by id or name)
    Update(UpdateArgs),
    /// Delete a procedure record that is not deployed
    Delete { id: String },
    /// Deploy one procedure, or every pending or changed one
    Deploy {
        /// Only this procedure (id or name), whatever its state
        id: Option<String>,
        /// Print the plan; execute nothing
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for the migration lock
        #[arg(long, value_name = "SECS")]
        lock_timeout: Option<u64>,
    },
    /// Compare deployed and live definitions; exit 5 unless everything is in_sync
    Drift,
    /// Run a procedure's downScript and mark it not deployed
    Rollback {
        id: String,
        #[arg(long, value_name = "SECS")]
        lock_timeout: Option<u64>,
    },
    /// Import a folder's Flyway repeatable scripts (R__<name>.sql); idempotent
    Import { dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// procedure, function, trigger or view (default: from the script's CREATE)
    #[arg(long = "type", value_parser = parse_type)]
    proc_type: Option<ProcType>,
    #[arg(long, default_value = "1")]
    version: String,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    sort: i64,
    /// The up script; `@FILE` reads it from a file
    #[arg(long)]
    up: String,
    /// The down script; `@FILE` reads it from a file
    #[arg(long)]
    down: Option<String>,
    /// Names of procedures deployed before this one (comma-separated)
    #[arg(long, value_delimiter = ',')]
    depends_on: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long = "type", value_parser = parse_type)]
    proc_type: Option<ProcType>,
    #[arg(long)]
    version: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    sort: Option<i64>,
    /// `@FILE` reads it from a file
    #[arg(long)]
    up: Option<String>,
    /// `@FILE` reads it from a file; an empty value removes it
    #[arg(long)]
    down: Option<String>,
    #[arg(long, value_delimiter = ',')]
    depends_on: Option<Vec<String>>,
}

fn parse_type(s: &str) -> Result<ProcType, String> {
    ProcType::parse(s).ok_or_else(|| "expected procedure, function, trigger or view".into())
}

pub async fn run(ctx: &Ctx, cmd: ProcCmd) -> anyhow::Result<()> {
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

async fn dispatch(ctx: &Ctx, db: &Db, runner: &Runner, cmd: ProcCmd) -> anyhow::Result<()> {
    match cmd {
        ProcCmd::List => list(ctx, db).await,
        ProcCmd::Show { id } => show(ctx, &super::get(db, &id).await?),
        ProcCmd::Create(a) => {
            let new = NewProcedure {
                name: a.name,
                proc_type: a.proc_type,
                version: a.version,
                sort: a.sort,
                up_script: read_arg(&a.up)?,
                down_script: a.down.as_deref().map(read_arg).transpose()?,
                depends_on: a.depends_on,
            };
            show(ctx, &super::create(db, new).await?)
        }
        ProcCmd::Update(a) => {
            let patch = ProcedurePatch {
                name: a.name,
                proc_type: a.proc_type,
                version: a.version,
                sort: a.sort,
                up_script: a.up.as_deref().map(read_arg).transpose()?,
                down_script: a.down.as_deref().map(read_arg).transpose()?.map(Some),
                depends_on: a.depends_on,
            };
            show(ctx, &super::update(db, &a.id, patch).await?)
        }
        ProcCmd::Delete { id } => show(ctx, &super::delete(db, &id).await?),
        ProcCmd::Deploy {
            id,
            dry_run,
            lock_timeout,
        } => {
            let opts = DeployOptions {
                dry_run,
                lock_timeout,
            };
            let report = match id {
                Some(id) => super::deploy::deploy_one(db, runner, &id, &opts).await?,
                None => super::deploy::deploy_all(db, runner, &opts).await?,
            };
            finish(ctx, &report)
        }
        ProcCmd::Drift => drift(ctx, &super::drift::drift(db).await?),
        ProcCmd::Rollback { id, lock_timeout } => show(
            ctx,
            &super::deploy::rollback(db, runner, &id, lock_timeout).await?,
        ),
        ProcCmd::Import { dir } => {
            let r = super::import::import_dir(db, runner, &dir).await?;
            if ctx.json {
                return ctx.print_json(&r);
            }
            println!(
                "imported: {} created, {} updated, {} unchanged",
                r.created.len(),
                r.updated.len(),
                r.unchanged
            );
            Ok(())
        }
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
        return ctx.print_json(&page);
    }
    let mut t = Table::new(&["NAME", "TYPE", "VERSION", "SORT", "DEPLOYED", "STATE", "ID"]);
    for p in &page.items {
        let state = if !p.is_executed {
            "pending"
        } else if p.changed() {
            "changed"
        } else {
            "deployed"
        };
        t.row(vec![
            p.name.clone(),
            p.proc_type.as_str().into(),
            p.version.clone(),
            p.sort.to_string(),
            p.executed_at.clone().unwrap_or_else(|| "-".into()),
            state.into(),
            p.id.clone(),
        ]);
    }
    t.print();
    Ok(())
}

fn show(ctx: &Ctx, p: &Procedure) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(p);
    }
    println!("{} ({}) id {}", p.name, p.proc_type.as_str(), p.id);
    println!("version {}  sort {}  hash {}", p.version, p.sort, p.hash);
    if !p.depends_on.is_empty() {
        println!("depends on: {}", p.depends_on.join(", "));
    }
    match &p.executed_at {
        Some(at) => println!(
            "deployed at {at}{}",
            if p.changed() { " (changed since)" } else { "" }
        ),
        None => println!("not deployed"),
    }
    if let Some(e) = &p.last_error {
        println!("last error: {e}");
    }
    println!("-- up\n{}", p.up_script.trim_end());
    if let Some(d) = &p.down_script {
        println!("-- down\n{}", d.trim_end());
    }
    Ok(())
}

fn finish(ctx: &Ctx, r: &DeployReport) -> anyhow::Result<()> {
    if ctx.json {
        ctx.print_json(r)?;
    } else if r.dry_run {
        for item in &r.plan {
            println!(
                "-- {} {} ({}, {})",
                item.procedure.name,
                item.procedure.proc_type.as_str(),
                item.version,
                item.reason
            );
            println!("{}", item.up_script.trim_end());
        }
        if r.plan.is_empty() {
            println!("nothing to deploy");
        }
    } else {
        for d in &r.deployed {
            println!("deployed {} ({} ms)", d.procedure.name, d.duration_ms);
        }
        if r.deployed.is_empty() && r.failed.is_none() {
            println!("nothing to deploy");
        }
        for n in &r.not_attempted {
            println!("not attempted {}", n.name);
        }
    }
    match &r.failed {
        Some(f) => Err(Coded {
            exit: exit::FAILED,
            message: format!(
                "procedure {:?} failed to deploy: {}",
                f.procedure.name, f.error
            ),
        }
        .into()),
        None => Ok(()),
    }
}

fn drift(ctx: &Ctx, r: &DriftReport) -> anyhow::Result<()> {
    if ctx.json {
        ctx.print_json(r)?;
    } else {
        let mut t = Table::new(&["NAME", "TYPE", "STATE"]);
        for i in &r.items {
            t.row(vec![
                i.procedure.name.clone(),
                i.procedure.proc_type.as_str().into(),
                i.state.as_str().into(),
            ]);
        }
        t.print();
        for i in &r.items {
            if let Some(d) = i.diff.as_deref().filter(|d| !d.is_empty()) {
                println!(
                    "\n{} ({}):\n{}",
                    i.procedure.name,
                    i.state.as_str(),
                    d.trim_end()
                );
            }
        }
    }
    if r.in_sync {
        return Ok(());
    }
    let out: Vec<String> = r
        .items
        .iter()
        .filter(|i| i.state != super::model::DriftState::InSync)
        .map(|i| format!("{} {}", i.procedure.name, i.state.as_str()))
        .collect();
    Err(Coded {
        exit: exit::DRIFT,
        message: format!("drift found: {}", out.join(", ")),
    }
    .into())
}

/// `@FILE` reads a file; anything else is the script itself.
fn read_arg(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| crate::cli::usage(format!("cannot read {path}: {e}"))),
        None => Ok(arg.to_string()),
    }
}

fn coded(e: anyhow::Error) -> anyhow::Error {
    let Some(api) = e.downcast_ref::<ApiError>() else {
        return e;
    };
    let code = match api.code() {
        "locked" => exit::LOCK_TIMEOUT,
        "rollback_failed" | "deploy_failed" => exit::FAILED,
        _ if api.status().is_client_error() => exit::USAGE,
        _ => exit::FAILED,
    };
    Coded {
        exit: code,
        message: api.to_string(),
    }
    .into()
}
