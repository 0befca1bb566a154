//! The dashboard: what needs attention across every module, each panel linking to its
//! page: pending and dirty migrations, procedures not in sync (pending, changed, drifted,
//! missing), disabled webhooks and failed deliveries, the most recent incoming requests,
//! and how many configuration keys exist.

use axum::extract::State;
use maud::html;

use super::layout::{Nav, PageResult, badge, clip, page, when};
use super::session::Viewer;
use crate::app::AppState;
use crate::page::PageRequest;
use crate::procedures::model::DriftState;
use crate::webhook_log::model::LogFilter;

fn first(n: u32) -> PageRequest {
    PageRequest {
        limit: n,
        after: None,
    }
}

pub async fn show(State(app): State<AppState>, viewer: Viewer) -> PageResult {
    let status = crate::migrations::validate::status(&app.db).await?;
    let attention: Vec<_> = status
        .migrations
        .iter()
        .filter(|m| matches!(m.state, "pending" | "out_of_order" | "dirty"))
        .take(8)
        .collect();
    let drift = crate::procedures::drift::drift(&app.db).await?;
    let drifted: Vec<_> = drift
        .items
        .iter()
        .filter(|i| i.state != DriftState::InSync)
        .collect();
    let hooks = crate::webhooks::list(&app, first(1000)).await?;
    let disabled: Vec<_> = hooks.items.iter().filter(|w| !w.is_active).collect();
    let failed = crate::webhooks::deliveries(&app, None, Some("failed"), first(5)).await?;
    let recent = crate::webhook_log::list_entries(&app.db, &LogFilter::default(), first(5)).await?;
    let keys = crate::kv::count(&app).await?;
    let body = html! {
        div.grid {
            section.card aria-labelledby="d-mig" {
                h2 #d-mig { a href="/migrations" { "Migrations" } }
                p.big { (status.pending) " pending · " (status.dirty) " dirty" }
                @if attention.is_empty() { p.muted { "Nothing waiting." } }
                ul.plain {
                    @for m in &attention { li { (badge(m.state)) " " (m.migration.name) " " code { (m.migration.version) } } }
                }
            }
            section.card aria-labelledby="d-proc" {
                h2 #d-proc { a href="/procedures" { "Drifted procedures" } }
                p.big { (drifted.len()) " not in sync" }
                @if drift.items.is_empty() {
                    p.muted { "No procedures yet." }
                } @else if drifted.is_empty() {
                    p.muted { "All " (drift.items.len()) " procedure(s) in sync." }
                }
                ul.plain {
                    @for i in drifted.iter().take(8) {
                        li { (badge(i.state.as_str())) " " a href={ "/procedures/" (i.procedure.id) } { (i.procedure.name) } }
                    }
                }
                @if drifted.len() > 8 { p { a href="/procedures" { "and " (drifted.len() - 8) " more" } } }
            }
            section.card aria-labelledby="d-wh" {
                h2 #d-wh { a href="/webhooks" { "Webhooks" } }
                p.big { (hooks.items.len()) " endpoint(s) · " (disabled.len()) " disabled" }
                ul.plain {
                    @for w in &disabled {
                        li { (badge("disabled")) " " a href={ "/webhooks/" (w.id) } { (w.name) } }
                    }
                    @for d in &failed.items {
                        li { (badge("failed")) " " a href={ "/deliveries/" (d.id) } { code { (d.event_type) } } " " (when(&d.created_at)) }
                    }
                }
                @if disabled.is_empty() && failed.items.is_empty() { p.muted { "No failing or disabled webhooks." } }
            }
            section.card aria-labelledby="d-in" {
                h2 #d-in { a href="/incoming" { "Incoming" } }
                @if recent.items.is_empty() { p.muted { "No requests received yet." } }
                ul.plain {
                    @for e in &recent.items {
                        li {
                            (badge(&e.capture.signature_status)) " "
                            a href={ "/incoming/" (e.capture.id) } { (e.capture.source) " " (clip(&e.capture.path, 30)) }
                            " " (when(&e.capture.received_at))
                        }
                    }
                }
            }
            section.card aria-labelledby="d-kv" {
                h2 #d-kv { a href="/kv" { "Key-value" } }
                p.big { (keys) " keys" }
            }
        }
    };
    Ok(page(&viewer, Nav::Dashboard, "Dashboard", body))
}
