//! `opshub kv get|set|list|rm|history|rollback|export|import`, on the database directly,
//! through the same operations as the API. Values are parsed by type from text
//! (`opshub kv set retries 5 --type integer`).

use std::path::PathBuf;

use clap::Subcommand;

use super::model::{ExportDoc, Precondition, PutRequest};
use super::value::{self, ValueType};
use crate::app::AppState;
use crate::cli::{Ctx, Table, usage};
use crate::page::PageRequest;

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Print a key's typed value (secrets need --reveal)
    Get {
        key: String,
        #[arg(long)]
        reveal: bool,
    },
    /// Write a value, parsed as its type
    Set {
        key: String,
        value: String,
        /// string, integer, number, boolean, date, datetime, object, array or secret
        #[arg(long = "type", short = 't', default_value = "string")]
        value_type: String,
        #[arg(long)]
        description: Option<String>,
        /// Store the key inactive (it is then not served)
        #[arg(long)]
        inactive: bool,
        /// Serve it from the in-process cache
        #[arg(long)]
        cached: bool,
        /// Only write if the key is at this version (compare-and-set)
        #[arg(long, value_name = "VERSION")]
        if_version: Option<i64>,
    },
    /// List keys (optionally under a prefix)
    List {
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete a key (history is kept)
    Rm { key: String },
    /// Show every version of a key
    History { key: String },
    /// Make an earlier version current again
    Rollback {
        key: String,
        #[arg(long)]
        version: i64,
    },
    /// Print an export document (secrets as ciphertext, or omitted)
    Export {
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long)]
        omit_secrets: bool,
    },
    /// Import an export document from a file (all or nothing)
    Import {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: KvCmd) -> anyhow::Result<()> {
    let app = ctx.state().await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    match cmd {
        KvCmd::Get { key, reveal } => {
            let served = super::get(&app, &key, reveal).await?;
            let view: serde_json::Value = serde_json::from_slice(&served.body)?;
            if ctx.json {
                return ctx.print_json(&view);
            }
            match &view["value"] {
                serde_json::Value::String(s) => println!("{s}"),
                serde_json::Value::Null if view["masked"] == true => {
                    println!("******** (use --reveal)")
                }
                v => println!("{v}"),
            }
        }
        KvCmd::Set {
            key,
            value,
            value_type,
            description,
            inactive,
            cached,
            if_version,
        } => {
            let ty: ValueType = value_type.parse().map_err(|e| usage(format!("{e}")))?;
            let typed = value::parse_text(ty, &value).map_err(|e| usage(e.to_string()))?;
            let req = PutRequest {
                value_type: ty,
                value: typed.to_json(),
                is_active: Some(!inactive),
                is_cached: Some(cached),
                description,
            };
            let pre = if_version.map_or(Precondition::None, Precondition::Version);
            let view = super::put(&app, &key, req, pre, &actor).await?;
            print_or(ctx, &view, || {
                println!("{} is now version {}", view.key, view.version)
            })?;
        }
        KvCmd::List { prefix } => list(ctx, &app, &prefix).await?,
        KvCmd::Rm { key } => {
            let view = super::delete(&app, &key, Precondition::None, &actor).await?;
            print_or(ctx, &view, || {
                println!("deleted {} (version {})", view.key, view.version)
            })?;
        }
        KvCmd::History { key } => history(ctx, &app, &key).await?,
        KvCmd::Rollback { key, version } => {
            let view = super::rollback(&app, &key, version, Precondition::None, &actor).await?;
            print_or(ctx, &view, || {
                println!(
                    "{} is now version {} (a copy of version {version})",
                    view.key, view.version
                )
            })?;
        }
        KvCmd::Export {
            prefix,
            omit_secrets,
        } => {
            let doc = super::export(&app, &prefix, omit_secrets).await?;
            ctx.print_json(&doc)?;
        }
        KvCmd::Import { file, dry_run } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let doc: ExportDoc = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{} is not an export document: {e}", file.display())))?;
            let report = super::import(&app, doc, dry_run, &actor).await?;
            ctx.print_json(&report)?;
            if !report.errors.is_empty() {
                return Err(usage(format!(
                    "{} entries are invalid; nothing was written",
                    report.errors.len()
                )));
            }
        }
    }
    Ok(())
}

fn print_or<T: serde::Serialize>(ctx: &Ctx, v: &T, human: impl FnOnce()) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(v);
    }
    human();
    Ok(())
}

fn shown(v: &serde_json::Value, masked: bool) -> String {
    match v {
        _ if masked => "********".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn list(ctx: &Ctx, app: &AppState, prefix: &str) -> anyhow::Result<()> {
    let mut items = Vec::new();
    let mut page = PageRequest {
        limit: 1000,
        after: None,
    };
    loop {
        let p = super::list(app, prefix, page.clone()).await?;
        items.extend(p.items);
        match p.next_cursor {
            Some(_) => page.after = items.last().map(|v| v.key.clone()),
            None => break,
        }
    }
    if ctx.json {
        return ctx.print_json(&items);
    }
    let mut t = Table::new(&["KEY", "TYPE", "VALUE", "ACTIVE", "CACHED", "VERSION"]);
    for v in &items {
        let value: String = shown(&v.value, v.masked).chars().take(60).collect();
        t.row(vec![
            v.key.clone(),
            v.value_type.to_string(),
            value,
            v.is_active.to_string(),
            v.is_cached.to_string(),
            v.version.to_string(),
        ]);
    }
    t.print();
    Ok(())
}

async fn history(ctx: &Ctx, app: &AppState, key: &str) -> anyhow::Result<()> {
    let page = super::history(
        app,
        key,
        PageRequest {
            limit: 1000,
            after: None,
        },
    )
    .await?;
    if ctx.json {
        return ctx.print_json(&page.items);
    }
    let mut t = Table::new(&["VERSION", "OP", "TYPE", "VALUE", "ACTIVE", "AT", "BY"]);
    for h in &page.items {
        let e = &h.entry;
        let value: String = shown(&e.value, e.masked).chars().take(50).collect();
        t.row(vec![
            e.version.to_string(),
            h.op.clone(),
            e.value_type.to_string(),
            value,
            e.is_active.to_string(),
            e.updated_at.clone(),
            e.updated_by.clone(),
        ]);
    }
    t.print();
    Ok(())
}
