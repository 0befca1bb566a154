//! The migrations page: every migration with its state, a form for a new one, activation,
//! and run / rollback behind a confirmation page that shows the plan (the runner's own dry
//! run, statements included) before anything executes.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{
    Empty, Failure, Nav, NoticeQuery, PageResult, badge, button, csrf, lf, notice, page, when,
};
use super::session::{Act, Viewer};
use crate::app::AppState;
use crate::migrations::model::{
    MigrationPatch, NewMigration, PlanItem, RollbackOptions, RunOptions, RunReport,
};
use crate::migrations::run::{Runner, detached};
use crate::page::PageRequest;
use crate::tokens::model::Scope;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/migrations", get(list))
        .route("/migrations/new", post(create))
        .route("/migrations/{id}/activate", post(activate))
        .route("/migrations/run", get(confirm_run).post(run))
        .route("/migrations/rollback", get(confirm_rollback).post(rollback))
}

fn runner(app: &AppState, viewer: &Viewer) -> Runner {
    Runner {
        actor: viewer.actor(),
        lock_timeout: Duration::from_secs(app.config.migration_lock_timeout_secs),
    }
}

async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let status = crate::migrations::validate::status(&app.db).await?;
    let history = crate::migrations::history(
        &app.db,
        PageRequest {
            limit: 20,
            after: None,
        },
        None,
    )
    .await?;
    let can_write = viewer.can(Scope::Write);
    let body = html! {
        (notice(q.notice.as_deref()))
        ul.stats {
            li { strong { (status.pending) } " pending" }
            li { strong { (status.executed) } " executed" }
            li { strong { (status.dirty) } " dirty" }
            li { strong { (status.out_of_order) } " out of order" }
            li { strong { (status.inactive) } " inactive" }
        }
        @if can_write {
            div.actions {
                form.inline method="get" action="/migrations/run" {
                    button.primary type="submit" disabled[status.pending == 0] { "Run pending…" }
                }
                form.inline method="get" action="/migrations/rollback" {
                    label for="rb-steps" { "Roll back" }
                    input #rb-steps.narrow type="number" name="steps" min="1" value="1";
                    button type="submit" disabled[status.executed == 0] { "Plan rollback…" }
                }
            }
        }
        div.scroll {
            table {
                caption { "Migrations in run order" }
                thead { tr { th { "Version" } th { "Name" } th { "State" } th { "Executed" } th { span.sr { "Actions" } } } }
                tbody {
                    @for m in &status.migrations {
                        tr {
                            td { code { (m.migration.version) } }
                            td { (m.migration.name) }
                            td { (badge(m.state)) }
                            td { @if let Some(t) = &m.executed_at { (when(t)) } @else { "—" } }
                            td {
                                @if m.state == "inactive" {
                                    (button(&viewer, Scope::Write, &format!("/migrations/{}/activate", m.migration.id), "Activate", "small"))
                                }
                            }
                        }
                    }
                    @if status.migrations.is_empty() {
                        tr { td colspan="5" { "No migrations yet." } }
                    }
                }
            }
        }
        @if can_write { (new_form(&viewer)) }
        h2 { "History" }
        div.scroll {
            table {
                thead { tr { th { "Started" } th { "Migration" } th { "Direction" } th { "Result" } th { "Actor" } } }
                tbody {
                    @for h in &history.items {
                        tr {
                            td { (when(&h.started_at)) }
                            td { (h.migration_name) " " code { (h.version) } }
                            td { (h.direction) }
                            td {
                                @if h.success { (badge("ok")) } @else { (badge("failed")) " " (h.error.clone().unwrap_or_default()) }
                            }
                            td { (h.actor) }
                        }
                    }
                    @if history.items.is_empty() { tr { td colspan="5" { "Nothing has run yet." } } }
                }
            }
        }
    };
    Ok(page(&viewer, Nav::Migrations, "Migrations", body))
}

fn new_form(viewer: &Viewer) -> Markup {
    html! {
        details.panel {
            summary { "New migration" }
            form.stack method="post" action="/migrations/new" {
                (csrf(viewer))
                div.row {
                    div { label for="m-name" { "Name" } input #m-name name="name" required; }
                    div { label for="m-version" { "Version" } input #m-version name="version" required placeholder="e.g. 3 or 2026.12.04"; }
                }
                label for="m-desc" { "Description" }
                input #m-desc name="description";
                label for="m-up" { "Up script" }
                textarea #m-up.code name="up_script" rows="6" required {}
                label for="m-down" { "Down script (optional)" }
                textarea #m-down.code name="down_script" rows="4" {}
                div.check {
                    input #m-active type="checkbox" name="is_active" value="true" checked;
                    label for="m-active" { "Active (runs with the next run)" }
                }
                button.primary type="submit" { "Create migration" }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct NewForm {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    up_script: String,
    #[serde(default)]
    down_script: String,
    is_active: Option<String>,
}

async fn create(State(app): State<AppState>, act: Act<NewForm>) -> PageResult {
    let f = act.form;
    let down = lf(&f.down_script);
    let new = NewMigration {
        name: f.name.trim().to_string(),
        version: f.version.trim().to_string(),
        execution_order: 0,
        description: f.description,
        up_script: lf(&f.up_script),
        down_script: (!down.trim().is_empty()).then_some(down),
        transactional: true,
        is_active: f.is_active.is_some(),
    };
    crate::migrations::create(&app.db, new).await?;
    Ok(Redirect::to("/migrations?notice=created").into_response())
}

async fn activate(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _act: Act<Empty>,
) -> PageResult {
    let patch = MigrationPatch {
        is_active: Some(true),
        ..MigrationPatch::default()
    };
    crate::migrations::update(&app.db, &id, patch).await?;
    Ok(Redirect::to("/migrations?notice=activated").into_response())
}

/// `steps` and `to` as typed into a form: blank means absent.
#[derive(Deserialize, Default)]
pub struct Bounds {
    steps: Option<String>,
    to: Option<String>,
}

impl Bounds {
    fn steps(&self) -> Result<Option<u32>, Failure> {
        match self.steps.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "steps must be a positive whole number".into(),
                )
            }),
        }
    }

    fn to(&self) -> Option<String> {
        self.to
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    }
}

async fn confirm_run(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(b): Query<Bounds>,
) -> PageResult {
    viewer.require(Scope::Write)?;
    let opts = RunOptions {
        to: b.to(),
        steps: b.steps()?,
        dry_run: true,
        ..RunOptions::default()
    };
    let plan = runner(&app, &viewer).up(&app.db, &opts).await?;
    Ok(confirm(
        &viewer,
        "Run migrations",
        "/migrations/run",
        &b,
        &plan.plan,
        "Run",
    ))
}

async fn confirm_rollback(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(b): Query<Bounds>,
) -> PageResult {
    viewer.require(Scope::Write)?;
    let opts = RollbackOptions {
        to: b.to(),
        steps: b.steps()?,
        dry_run: true,
        lock_timeout: None,
    };
    let plan = runner(&app, &viewer).down(&app.db, &opts).await?;
    Ok(confirm(
        &viewer,
        "Roll back migrations",
        "/migrations/rollback",
        &b,
        &plan.plan,
        "Roll back",
    ))
}

fn confirm(
    viewer: &Viewer,
    title: &str,
    action: &str,
    b: &Bounds,
    plan: &[PlanItem],
    verb: &str,
) -> axum::response::Response {
    let body = html! {
        @if plan.is_empty() {
            p { "Nothing to do: the plan is empty." }
            p { a href="/migrations" { "Back to migrations" } }
        } @else {
            p { "This will " (verb.to_lowercase()) " " (plan.len()) " migration(s), in this order. Nothing has run yet." }
            ol.plan {
                @for item in plan {
                    li {
                        strong { (item.migration.name) } " " code { (item.migration.version) } " "
                        span.muted { "(" (item.mode) @if let Some(r) = &item.reason { ": " (r) } ")" }
                        @for s in &item.statements { pre { code { (s) } } }
                    }
                }
            }
            form.inline method="post" action=(action) {
                (csrf(viewer))
                input type="hidden" name="steps" value=(b.steps.clone().unwrap_or_default());
                input type="hidden" name="to" value=(b.to.clone().unwrap_or_default());
                button.primary.danger[verb != "Run"] type="submit" { (verb) " " (plan.len()) " migration(s)" }
            }
            " "
            a.buttonlike href="/migrations" { "Cancel" }
        }
    };
    page(viewer, Nav::Migrations, title, body)
}

async fn run(State(app): State<AppState>, act: Act<Bounds>) -> PageResult {
    let opts = RunOptions {
        to: act.form.to(),
        steps: act.form.steps()?,
        ..RunOptions::default()
    };
    let (r, db) = (runner(&app, &act.viewer), app.db.clone());
    let report = detached(async move { r.up(&db, &opts).await }).await?;
    Ok(report_page(&act.viewer, "Run report", &report))
}

async fn rollback(State(app): State<AppState>, act: Act<Bounds>) -> PageResult {
    let opts = RollbackOptions {
        to: act.form.to(),
        steps: act.form.steps()?,
        dry_run: false,
        lock_timeout: None,
    };
    let (r, db) = (runner(&app, &act.viewer), app.db.clone());
    let report = detached(async move { r.down(&db, &opts).await }).await?;
    Ok(report_page(&act.viewer, "Rollback report", &report))
}

fn report_page(viewer: &Viewer, title: &str, report: &RunReport) -> axum::response::Response {
    let body = html! {
        @if let Some(f) = &report.failed {
            p.error role="alert" {
                "Migration " strong { (f.migration.name) } " failed"
                @if f.dirty { " and is dirty (resolve or resume it with the CLI or API)" } @else { " and was rolled back" }
                ": " (f.error)
            }
        } @else {
            p.notice role="status" { "Done: " (report.applied.len()) " migration(s) " (if report.direction.as_str() == "up" { "applied" } else { "rolled back" }) "." }
        }
        h2 { "Applied" }
        @if report.applied.is_empty() { p { "None." } }
        ul {
            @for a in &report.applied {
                li { (a.migration.name) " " code { (a.migration.version) } " — " (a.duration_ms) " ms" }
            }
        }
        @if !report.not_attempted.is_empty() {
            h2 { "Not attempted" }
            ul { @for m in &report.not_attempted { li { (m.name) " " code { (m.version) } } } }
        }
        p { a href="/migrations" { "Back to migrations" } }
    };
    page(viewer, Nav::Migrations, title, body)
}
