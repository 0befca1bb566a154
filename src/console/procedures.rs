//! The procedures pages: every procedure with its drift state, one procedure's record,
//! scripts and a side-by-side diff of its deployed and live definitions, a create form,
//! deploy one, deploy all behind a confirmation page showing the dry-run plan, and
//! rollback behind a confirmation page showing the down script. Everything is an
//! operation of `crate::procedures` (the API's and the CLI's), never logic of its own.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{
    Empty, Nav, NoticeQuery, PageResult, badge, button, csrf, lf, notice, page, when,
};
use super::session::{Act, Viewer};
use crate::app::AppState;
use crate::db::Dialect;
use crate::error::ApiError;
use crate::migrations::run::{Runner, detached};
use crate::page::PageRequest;
use crate::procedures::diff::{self, RowKind};
use crate::procedures::model::{
    DeployOptions, DeployReport, DriftState, NewProcedure, ProcType, Procedure,
};
use crate::tokens::model::Scope;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/procedures", get(list))
        .route("/procedures/new", get(new_form).post(create))
        .route(
            "/procedures/deploy",
            get(confirm_deploy_all).post(deploy_all),
        )
        .route("/procedures/{id}", get(show))
        .route("/procedures/{id}/deploy", post(deploy_one))
        .route(
            "/procedures/{id}/rollback",
            get(confirm_rollback).post(rollback),
        )
}

fn runner(app: &AppState, viewer: &Viewer) -> Runner {
    Runner {
        actor: viewer.actor(),
        lock_timeout: Duration::from_secs(app.config.migration_lock_timeout_secs),
    }
}

fn all() -> PageRequest {
    PageRequest {
        limit: 10_000,
        after: None,
    }
}

/// What a drift state means, in one sentence.
fn meaning(state: DriftState) -> &'static str {
    match state {
        DriftState::Pending => "never deployed",
        DriftState::InSync => {
            "code unchanged since the deploy, and the database renders what it rendered then"
        }
        DriftState::Changed => "the record's up script was edited since the deploy",
        DriftState::Drifted => "the object was altered in the database since the deploy",
        DriftState::ChangedAndDrifted => "edited in the record and altered in the database",
        DriftState::Missing => "an object the deploy created no longer exists",
    }
}

const STATES: [DriftState; 6] = [
    DriftState::Pending,
    DriftState::InSync,
    DriftState::Changed,
    DriftState::Drifted,
    DriftState::ChangedAndDrifted,
    DriftState::Missing,
];

async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let report = crate::procedures::drift::drift(&app.db).await?;
    let records: HashMap<String, Procedure> = crate::procedures::list(&app.db, all())
        .await?
        .items
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let can_write = viewer.can(Scope::Write);
    let body = html! {
        (notice(q.notice.as_deref()))
        ul.stats {
            @for s in STATES {
                li { strong { (report.counts.get(s.as_str()).copied().unwrap_or(0)) } " " (s.as_str()) }
            }
        }
        @if can_write {
            div.actions {
                a.buttonlike.primary href="/procedures/new" { "New procedure" }
                form.inline method="get" action="/procedures/deploy" {
                    button type="submit" disabled[report.items.is_empty()] { "Deploy all…" }
                }
            }
        }
        div.scroll {
            table {
                caption { "Procedures by version, sort and name (deploy all puts dependencies first)" }
                thead { tr { th { "Name" } th { "Type" } th { "Version" } th { "State" } th { "Deployed" } th { span.sr { "Actions" } } } }
                tbody {
                    @for i in &report.items {
                        @let p = records.get(&i.procedure.id);
                        tr {
                            td { a href={ "/procedures/" (i.procedure.id) } { (i.procedure.name) } }
                            td { (i.procedure.proc_type.as_str()) }
                            td { code { (p.map(|p| p.version.as_str()).unwrap_or("")) } }
                            td { (badge(i.state.as_str())) }
                            td {
                                @if let Some(t) = p.and_then(|p| p.executed_at.as_deref()) { (when(t)) } @else { "—" }
                            }
                            td {
                                (button(&viewer, Scope::Write, &format!("/procedures/{}/deploy", i.procedure.id), "Deploy", "small"))
                            }
                        }
                    }
                    @if report.items.is_empty() {
                        tr { td colspan="6" { "No procedures yet." } }
                    }
                }
            }
        }
        details {
            summary { "What the states mean" }
            dl.props {
                @for s in STATES { dt { (badge(s.as_str())) } dd { (meaning(s)) } }
            }
        }
    };
    Ok(page(&viewer, Nav::Procedures, "Procedures", body))
}

async fn show(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let d = crate::procedures::drift::detail(&app.db, &id).await?;
    let p = &d.procedure;
    let base = format!("/procedures/{}", p.id);
    let state = d.item.state;
    let body = html! {
        (notice(q.notice.as_deref()))
        dl.props {
            dt { "State" } dd { (badge(state.as_str())) " " span.muted { (meaning(state)) } }
            dt { "Type" } dd { (p.proc_type.as_str()) }
            dt { "Version" } dd { code { (p.version) } }
            dt { "Sort" } dd { (p.sort) }
            dt { "Depends on" } dd {
                @if p.depends_on.is_empty() { "—" }
                @for (n, dep) in p.depends_on.iter().enumerate() {
                    @if n > 0 { ", " }
                    a href={ "/procedures/" (segment(dep)) } { (dep) }
                }
            }
            dt { "Deployed" } dd { @if let Some(t) = &p.executed_at { (when(t)) } @else { "not deployed" } }
            dt { "Hash" } dd.break { code { (p.hash) } }
            @if let Some(h) = &p.deployed_hash { dt { "Deployed hash" } dd.break { code { (h) } } }
            @if !d.item.missing_objects.is_empty() {
                dt { "Missing objects" } dd { @for k in &d.item.missing_objects { code { (k) } br; } }
            }
            @if let Some(e) = &p.last_error { dt { "Last error" } dd.break { span.error-text { (e) } } }
            dt { "Created" } dd { (when(&p.created_at)) }
            dt { "Updated" } dd { (when(&p.updated_at)) }
        }
        @if viewer.can(Scope::Write) {
            div.actions {
                (button(&viewer, Scope::Write, &format!("{base}/deploy"),
                    match state {
                        DriftState::Pending => "Deploy",
                        DriftState::Drifted | DriftState::Missing => "Deploy (restore)",
                        _ => "Deploy again",
                    },
                    "primary"))
                @if p.is_executed {
                    a.buttonlike href={ (base) "/rollback" } { "Roll back…" }
                }
            }
        }
        h2 { "Deployed vs live definition" }
        @match (&d.deployed, &d.live) {
            (Some(deployed), Some(live)) => (definitions(deployed, live, d.item.diff.as_deref())),
            _ => p.muted { "Not deployed yet: there is no definition in the database to compare." },
        }
        @if matches!(state, DriftState::Changed | DriftState::ChangedAndDrifted) {
            p.hint { "The up script below was edited after the deploy; the database still runs the deployed version until it is deployed again." }
        }
        h2 { "Up script" }
        pre { code { (p.up_script) } }
        h2 { "Down script" }
        @if let Some(down) = &p.down_script {
            pre { code { (down) } }
        } @else {
            p.muted { "None: this procedure cannot be rolled back." }
        }
        p { a href="/procedures" { "Back to procedures" } }
    };
    Ok(page(&viewer, Nav::Procedures, &p.name, body))
}

/// A name as one path segment (a procedure's page answers to its name as to its id).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The deployed and live definitions in two aligned columns (stacked on narrow screens),
/// changed lines highlighted, and the API's unified diff under it.
fn definitions(deployed: &str, live: &str, unified: Option<&str>) -> Markup {
    let rows = diff::side_by_side(deployed, live);
    let differing = rows.iter().filter(|r| r.kind != RowKind::Same).count();
    html! {
        @if differing == 0 {
            p.notice role="status" { "Identical: the database renders what it rendered right after the deploy." }
        } @else {
            p.error role="status" { (differing) " line(s) differ between the deployed and the live definition." }
        }
        div.sbs {
            section.side aria-labelledby="def-deployed" {
                h3 #def-deployed { "Deployed " span.muted { "(rendered right after the deploy)" } }
                div.lines tabindex="0" role="region" aria-labelledby="def-deployed" {
                    @for r in &rows { (line(r.left, r.kind, true)) }
                    @if rows.is_empty() { div.ln { span.tx.muted { " (empty)" } } }
                }
            }
            section.side aria-labelledby="def-live" {
                h3 #def-live { "Live " span.muted { "(rendered by the database now)" } }
                div.lines tabindex="0" role="region" aria-labelledby="def-live" {
                    @for r in &rows { (line(r.right, r.kind, false)) }
                    @if live.is_empty() { div.ln { span.tx.muted { " (no live definition: the objects are missing)" } } }
                }
            }
        }
        @if let Some(u) = unified.filter(|u| !u.is_empty()) {
            details {
                summary { "Unified diff (as the API and CLI report it)" }
                pre { code { (u) } }
            }
        }
    }
}

/// One side of a row: a numbered line, or a filler keeping both columns aligned.
fn line(cell: Option<(usize, &str)>, kind: RowKind, left: bool) -> Markup {
    let Some((n, text)) = cell else {
        return html! { div.ln.filler aria-hidden="true" { span.no {} span.mk { " " } span.tx {} } };
    };
    html! {
        @if kind == RowKind::Same {
            div.ln { span.no { (n) } span.mk { " " } span.tx { (text) } }
        } @else if left {
            div.ln.del { span.no { (n) } span.mk aria-hidden="true" { "-" } span.tx { del { (text) } } }
        } @else {
            div.ln.add { span.no { (n) } span.mk aria-hidden="true" { "+" } span.tx { ins { (text) } } }
        }
    }
}

/// The create form as typed; blank fields take the API's defaults.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ProcForm {
    name: String,
    #[serde(rename = "type")]
    proc_type: String,
    version: String,
    sort: String,
    up_script: String,
    down_script: String,
    depends_on: String,
}

impl ProcForm {
    fn to_new(&self) -> Result<NewProcedure, ApiError> {
        let sort = match self.sort.trim() {
            "" => 0,
            s => s.parse().map_err(|_| {
                ApiError::unprocessable("invalid_procedure", "sort must be a whole number")
            })?,
        };
        let version = match self.version.trim() {
            "" => "1".to_string(),
            v => v.to_string(),
        };
        let down = lf(&self.down_script);
        Ok(NewProcedure {
            name: self.name.trim().to_string(),
            proc_type: ProcType::parse(self.proc_type.trim()),
            version,
            sort,
            up_script: lf(&self.up_script),
            down_script: (!down.trim().is_empty()).then_some(down),
            depends_on: self
                .depends_on
                .split([',', '\n'])
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

/// The types this backend can hold (SQLite has no stored routines).
fn types(app: &AppState) -> &'static [ProcType] {
    if app.db.dialect() == Dialect::Sqlite {
        &[ProcType::View, ProcType::Trigger]
    } else {
        &[
            ProcType::View,
            ProcType::Trigger,
            ProcType::Function,
            ProcType::Procedure,
        ]
    }
}

fn form(viewer: &Viewer, types: &[ProcType], f: &ProcForm, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        p.hint { "Creating a procedure stores the record; nothing runs until it is deployed." }
        form.stack method="post" action="/procedures/new" {
            (csrf(viewer))
            div.row {
                div { label for="p-name" { "Name" } input #p-name name="name" value=(f.name) required; }
                div {
                    label for="p-type" { "Type" }
                    select #p-type name="type" {
                        option value="" selected[f.proc_type.is_empty()] { "From the script's CREATE" }
                        @for t in types {
                            option value=(t.as_str()) selected[f.proc_type == t.as_str()] { (t.as_str()) }
                        }
                    }
                }
            }
            div.row {
                div { label for="p-version" { "Version" } input #p-version name="version" value=(f.version) placeholder="1"; }
                div { label for="p-sort" { "Sort" } input #p-sort type="number" step="1" name="sort" value=(f.sort) placeholder="0"; }
            }
            label for="p-up" { "Up script" }
            textarea #p-up.code name="up_script" rows="8" required { (f.up_script) }
            label for="p-down" { "Down script (optional; needed to roll back)" }
            textarea #p-down.code name="down_script" rows="3" { (f.down_script) }
            label for="p-deps" { "Depends on (procedure names, comma-separated)" }
            input #p-deps name="depends_on" value=(f.depends_on);
            button.primary type="submit" { "Create procedure" }
        }
    }
}

async fn new_form(State(app): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Scope::Write)?;
    let f = ProcForm {
        version: "1".into(),
        sort: "0".into(),
        ..ProcForm::default()
    };
    Ok(page(
        &viewer,
        Nav::Procedures,
        "New procedure",
        form(&viewer, types(&app), &f, None),
    ))
}

async fn create(State(app): State<AppState>, act: Act<ProcForm>) -> PageResult {
    let f = &act.form;
    let created = match f.to_new() {
        Ok(new) => crate::procedures::create(&app.db, new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(p) => Ok(Redirect::to(&format!("/procedures/{}?notice=created", p.id)).into_response()),
        // A 4xx shows the form again with the message and what was typed.
        Err(e) if !e.status().is_server_error() => {
            let mut resp = page(
                &act.viewer,
                Nav::Procedures,
                "New procedure",
                form(&act.viewer, types(&app), f, Some(&e.to_string())),
            );
            *resp.status_mut() = e.status();
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

async fn confirm_deploy_all(State(app): State<AppState>, viewer: Viewer) -> PageResult {
    viewer.require(Scope::Write)?;
    let opts = DeployOptions {
        dry_run: true,
        lock_timeout: None,
    };
    let plan = crate::procedures::deploy::deploy_all(&app.db, &runner(&app, &viewer), &opts)
        .await?
        .plan;
    let body = html! {
        @if plan.is_empty() {
            p { "Nothing to do: no procedure is pending or changed. (A drifted or missing one is restored by deploying it on its own page.)" }
            p { a href="/procedures" { "Back to procedures" } }
        } @else {
            p { "This will deploy " (plan.len()) " procedure(s), dependencies first, in this order. Nothing has run yet." }
            ol.plan {
                @for item in &plan {
                    li {
                        a href={ "/procedures/" (item.procedure.id) } { strong { (item.procedure.name) } } " "
                        (item.procedure.proc_type.as_str()) " " code { (item.version) } " "
                        (badge(&item.reason))
                        pre { code { (item.up_script) } }
                    }
                }
            }
            form.inline method="post" action="/procedures/deploy" {
                (csrf(&viewer))
                button.primary type="submit" { "Deploy " (plan.len()) " procedure(s)" }
            }
            " "
            a.buttonlike href="/procedures" { "Cancel" }
        }
    };
    Ok(page(&viewer, Nav::Procedures, "Deploy procedures", body))
}

async fn deploy_all(State(app): State<AppState>, act: Act<Empty>) -> PageResult {
    let (r, db) = (runner(&app, &act.viewer), app.db.clone());
    let opts = DeployOptions::default();
    let report =
        detached(async move { crate::procedures::deploy::deploy_all(&db, &r, &opts).await })
            .await?;
    Ok(report_page(&act.viewer, "Deploy report", &report))
}

async fn deploy_one(
    State(app): State<AppState>,
    Path(id): Path<String>,
    act: Act<Empty>,
) -> PageResult {
    let (r, db, target) = (runner(&app, &act.viewer), app.db.clone(), id.clone());
    let opts = DeployOptions::default();
    let report =
        detached(
            async move { crate::procedures::deploy::deploy_one(&db, &r, &target, &opts).await },
        )
        .await?;
    if report.failed.is_some() {
        return Ok(report_page(&act.viewer, "Deploy report", &report));
    }
    let at = report
        .deployed
        .first()
        .map_or(id, |d| d.procedure.id.clone());
    Ok(Redirect::to(&format!("/procedures/{at}?notice=deployed")).into_response())
}

fn report_page(viewer: &Viewer, title: &str, report: &DeployReport) -> Response {
    let body = html! {
        @if let Some(f) = &report.failed {
            p.error role="alert" {
                "Procedure " a href={ "/procedures/" (f.procedure.id) } { strong { (f.procedure.name) } }
                " failed to deploy and was rolled back: " (f.error)
            }
        } @else {
            p.notice role="status" { "Done: " (report.deployed.len()) " procedure(s) deployed." }
        }
        h2 { "Deployed" }
        @if report.deployed.is_empty() { p { "None." } }
        ul {
            @for d in &report.deployed {
                li { a href={ "/procedures/" (d.procedure.id) } { (d.procedure.name) } " — " (d.duration_ms) " ms" }
            }
        }
        @if !report.not_attempted.is_empty() {
            h2 { "Not attempted" }
            ul { @for p in &report.not_attempted { li { a href={ "/procedures/" (p.id) } { (p.name) } } } }
        }
        p { a href="/procedures" { "Back to procedures" } }
    };
    page(viewer, Nav::Procedures, title, body)
}

async fn confirm_rollback(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    viewer.require(Scope::Write)?;
    let p = crate::procedures::get(&app.db, &id).await?;
    let back = format!("/procedures/{}", p.id);
    let body = html! {
        @if !p.is_executed {
            p { strong { (p.name) } " is not deployed; there is nothing to roll back." }
            p { a href=(back) { "Back to the procedure" } }
        } @else if let Some(down) = &p.down_script {
            p { "This runs the down script of " strong { (p.name) } " below, in one transaction, and marks it not deployed (pending). Nothing has run yet." }
            pre { code { (down) } }
            (button(&viewer, Scope::Write, &format!("{back}/rollback"), &format!("Roll back {}", p.name), "danger"))
            " " a.buttonlike href=(back) { "Cancel" }
        } @else {
            p.error role="alert" { strong { (p.name) } " has no down script, so it cannot be rolled back. Give it one (API or " code { "opshub proc update" } ") first." }
            p { a href=(back) { "Back to the procedure" } }
        }
    };
    Ok(page(&viewer, Nav::Procedures, "Roll back procedure", body))
}

async fn rollback(
    State(app): State<AppState>,
    Path(id): Path<String>,
    act: Act<Empty>,
) -> PageResult {
    let (r, db) = (runner(&app, &act.viewer), app.db.clone());
    let p = detached(async move { crate::procedures::deploy::rollback(&db, &r, &id, None).await })
        .await?;
    Ok(Redirect::to(&format!("/procedures/{}?notice=proc-rolled-back", p.id)).into_response())
}
