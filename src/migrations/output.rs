//! Human and `--json` output of `opshub migrate`, and the exit codes of outcomes that are
//! not errors of the operation itself (pending, dirty, invalid, a failed migration).

use super::import::ImportReport;
use super::model::{Direction, Migration, MigrationRef, RunReport};
use crate::cli::{Coded, Ctx, Table};
use crate::db::Db;
use crate::error::exit;
use crate::page::PageRequest;

pub(super) fn created(ctx: &Ctx, m: &Migration) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(m);
    }
    let inactive = if m.is_active { "" } else { ", inactive" };
    println!("created {} ({} {}){inactive}", m.id, m.version, m.name);
    Ok(())
}

pub(super) fn baselined(ctx: &Ctx, version: &str, marked: &[MigrationRef]) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(&marked);
    }
    println!(
        "baselined {} migration(s) up to version {version}",
        marked.len()
    );
    Ok(())
}

pub(super) fn resolved(ctx: &Ctx, m: &Migration) -> anyhow::Result<()> {
    if ctx.json {
        return ctx.print_json(m);
    }
    let state = if m.is_executed {
        "applied"
    } else {
        "rolled back (pending)"
    };
    println!("{} is now {state}", m.name);
    Ok(())
}

pub(super) async fn history(ctx: &Ctx, db: &Db, limit: u32) -> anyhow::Result<()> {
    let page = PageRequest {
        limit: limit.clamp(1, 1000),
        after: None,
    };
    let page = super::history(db, page, None).await?;
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
    Ok(())
}

/// Prints a run report; a failed migration makes the command fail (exit 1).
pub(super) fn finish(ctx: &Ctx, report: RunReport) -> anyhow::Result<()> {
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
        let verb = if report.direction == Direction::Up {
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

pub(super) async fn list(ctx: &Ctx, db: &Db) -> anyhow::Result<()> {
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

pub(super) async fn status(ctx: &Ctx, db: &Db, check: bool) -> anyhow::Result<()> {
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

pub(super) async fn validate(ctx: &Ctx, db: &Db) -> anyhow::Result<()> {
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

pub(super) fn import(ctx: &Ctx, r: &ImportReport) -> anyhow::Result<()> {
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
    let p = &r.repeatables;
    if !(p.created.is_empty() && p.updated.is_empty() && p.unchanged == 0) {
        println!(
            "repeatable scripts as procedures: {} created, {} updated, {} unchanged",
            p.created.len(),
            p.updated.len(),
            p.unchanged
        );
    }
    Ok(())
}
