//! `opshub source …` (ingest sources) and `opshub log list|show|verify|prune|replay`,
//! working on the database directly. `log verify` exits 4 when the chain does not verify.

use std::io::{Read, Write};

use clap::{Args, Subcommand};

use super::model::{LogQuery, LogView, NewSource, Source, SourcePatch};
use super::verify::Verifier;
use crate::cli::{Ctx, Table, usage};
use crate::page::PageRequest;

#[derive(Debug, Subcommand)]
pub enum SourceCmd {
    /// Declare an ingest source; requests to /ingest/NAME are then logged.
    Create {
        name: String,
        #[command(flatten)]
        settings: SourceArgs,
    },
    /// List sources (never their secrets).
    List,
    /// Show one source by id or name.
    Show { id_or_name: String },
    /// Change a source's settings.
    Update {
        id_or_name: String,
        /// New name.
        #[arg(long)]
        rename: Option<String>,
        #[command(flatten)]
        settings: SourceArgs,
        /// Remove the secret.
        #[arg(long, conflicts_with_all = ["secret", "secret_stdin"])]
        clear_secret: bool,
    },
    /// Delete a source (its logged requests stay).
    Delete { id_or_name: String },
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// none, standard-webhooks, github, stripe, slack, shopify or hmac-sha256
    #[arg(long)]
    verifier: Option<String>,
    /// The signing secret (visible to other local users; prefer --secret-stdin).
    #[arg(long)]
    secret: Option<String>,
    /// Read the signing secret from standard input.
    #[arg(long)]
    secret_stdin: bool,
    /// Header to store as [redacted] (repeatable); authorization and cookie always are.
    #[arg(long = "redact", value_name = "HEADER")]
    redact: Vec<String>,
    /// Largest accepted body in bytes (default 1048576).
    #[arg(long)]
    max_body_bytes: Option<i64>,
    /// Answer 401 to requests whose signature does not verify (they are still logged).
    #[arg(long)]
    reject_invalid: Option<bool>,
}

impl SourceArgs {
    fn verifier(&self) -> anyhow::Result<Option<Verifier>> {
        self.verifier
            .as_deref()
            .map(|v| {
                v.parse()
                    .map_err(|e: super::verify::UnknownVerifier| usage(e.to_string()))
            })
            .transpose()
    }

    fn secret(&self) -> anyhow::Result<Option<String>> {
        if !self.secret_stdin {
            return Ok(self.secret.clone());
        }
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    }
}

pub async fn run_source(ctx: &Ctx, cmd: SourceCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    let keys = crate::app::load_keyring(&ctx.config)?;
    let shown = match cmd {
        SourceCmd::Create { name, settings } => {
            let new = NewSource {
                name,
                verifier: settings.verifier()?.unwrap_or(Verifier::None),
                secret: settings.secret()?,
                redact_headers: settings.redact.clone(),
                max_body_bytes: settings.max_body_bytes,
                reject_invalid: settings.reject_invalid.unwrap_or(false),
            };
            vec![super::create_source(&db, &keys, new).await?]
        }
        SourceCmd::List => {
            let page = PageRequest {
                limit: 1000,
                after: None,
            };
            super::list_sources(&db, page).await?.items
        }
        SourceCmd::Show { id_or_name } => vec![super::get_source(&db, &id_or_name).await?],
        SourceCmd::Update {
            id_or_name,
            rename,
            settings,
            clear_secret,
        } => {
            let secret = settings.secret()?;
            let patch = SourcePatch {
                name: rename,
                verifier: settings.verifier()?,
                secret: if clear_secret {
                    Some(None)
                } else {
                    secret.map(Some)
                },
                redact_headers: (!settings.redact.is_empty()).then(|| settings.redact.clone()),
                max_body_bytes: settings.max_body_bytes,
                reject_invalid: settings.reject_invalid,
            };
            vec![super::update_source(&db, &keys, &id_or_name, patch).await?]
        }
        SourceCmd::Delete { id_or_name } => vec![super::delete_source(&db, &id_or_name).await?],
    };
    if ctx.json {
        return ctx.print_json(&shown);
    }
    print_sources(&shown);
    Ok(())
}

fn print_sources(sources: &[Source]) {
    let mut table = Table::new(&[
        "ID", "NAME", "VERIFIER", "SECRET", "REDACT", "MAX BODY", "REJECT",
    ]);
    for s in sources {
        table.row(vec![
            s.id.clone(),
            s.name.clone(),
            s.verifier.to_string(),
            if s.has_secret { "set" } else { "-" }.into(),
            s.redact_headers.join(","),
            s.max_body_bytes.to_string(),
            s.reject_invalid.to_string(),
        ]);
    }
    table.print();
}

#[derive(Debug, Subcommand)]
pub enum LogCmd {
    /// List logged requests, newest first.
    List {
        #[command(flatten)]
        filters: ListFilters,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one logged request; --raw writes its exact body bytes to stdout.
    Show {
        id: String,
        #[arg(long)]
        raw: bool,
    },
    /// Walk the hash chain; exit 4 and name the first bad seq if it does not verify.
    Verify,
    /// Delete requests received before a time, keeping a checkpoint for verify.
    Prune {
        /// RFC 3339 instant, e.g. 2026-01-01T00:00:00Z
        #[arg(long)]
        before: String,
    },
    /// Send a logged request again to a URL (recorded apart; the row never changes).
    Replay {
        id: String,
        #[arg(long)]
        url: String,
    },
}

#[derive(Debug, Args)]
pub struct ListFilters {
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    method: Option<String>,
    /// Received at or after (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// unchecked, valid or invalid
    #[arg(long)]
    status: Option<String>,
    /// Only bodies containing this text.
    #[arg(long)]
    contains: Option<String>,
}

async fn list(ctx: &Ctx, db: &crate::db::Db, f: ListFilters, limit: u32) -> anyhow::Result<()> {
    let q = LogQuery {
        source: f.source,
        method: f.method,
        from: f.from,
        to: f.to,
        signature_status: f.status,
        q: f.contains,
        limit: Some(limit),
        cursor: None,
    };
    let filter = q.filter().map_err(usage)?;
    let page = PageRequest { limit, after: None };
    let found = super::list_entries(db, &filter, page).await?;
    let views: Vec<LogView> = found
        .items
        .iter()
        .map(|e| LogView::from_entry(e, false))
        .collect();
    print_logs(ctx, &views)
}

pub async fn run_log(ctx: &Ctx, cmd: LogCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    match cmd {
        LogCmd::List { filters, limit } => list(ctx, &db, filters, limit).await,
        LogCmd::Show { id, raw } => {
            let entry = super::get_entry(&db, &id).await?;
            if raw {
                let mut out = std::io::stdout().lock();
                out.write_all(&entry.capture.body)?;
                return Ok(out.flush()?);
            }
            ctx.print_json(&LogView::from_entry(&entry, true))
        }
        LogCmd::Verify => verify(ctx, &db).await,
        LogCmd::Prune { before } => {
            let at = crate::db::time::parse(&before)
                .map_err(|_| usage("--before must be an RFC 3339 instant"))?;
            let report = super::prune(&db, &crate::db::time::format(at)).await?;
            if ctx.json {
                return ctx.print_json(&report);
            }
            println!(
                "pruned {} rows; checkpoint at seq {}",
                report.pruned_rows,
                report.checkpoint_seq.unwrap_or(0)
            );
            Ok(())
        }
        LogCmd::Replay { id, url } => {
            let allow = ctx.config.webhook_allow_private;
            let done = super::replay(&db, allow, &id, &url).await?;
            if ctx.json {
                return ctx.print_json(&done);
            }
            match (done.status, &done.error) {
                (Some(s), _) => println!("replayed to {url}: HTTP {s} in {} ms", done.duration_ms),
                (None, e) => println!("replay to {url} failed: {}", e.as_deref().unwrap_or("")),
            }
            Ok(())
        }
    }
}

fn print_logs(ctx: &Ctx, views: &[LogView]) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(&views);
    }
    let mut table = Table::new(&[
        "SEQ",
        "ID",
        "RECEIVED",
        "SOURCE",
        "METHOD",
        "PATH",
        "SIZE",
        "SIGNATURE",
    ]);
    for v in views {
        table.row(vec![
            v.seq.to_string(),
            v.id.clone(),
            v.received_at.clone(),
            v.source.clone(),
            v.method.clone(),
            v.path.clone(),
            v.body_size.to_string(),
            v.signature_status.clone(),
        ]);
    }
    table.print();
    Ok(())
}

async fn verify(ctx: &Ctx, db: &crate::db::Db) -> anyhow::Result<()> {
    let report = super::verify_chain(db).await?;
    if ctx.json {
        ctx.print_json(&report)?;
    } else if report.ok {
        println!(
            "chain intact: {} rows checked from checkpoint {} to head {} ({})",
            report.checked_rows, report.checkpoint_seq, report.head_seq, report.head_hash
        );
    }
    match (report.ok, report.first_bad_seq) {
        (true, _) => Ok(()),
        (false, seq) => Err(crate::cli::Coded {
            exit: crate::error::exit::VALIDATION,
            message: format!(
                "the chain does not verify at seq {}: {}",
                seq.unwrap_or(0),
                report.problem.unwrap_or_default()
            ),
        }
        .into()),
    }
}
