//! The webhooks pages: endpoints (create, edit, enable/disable, delete), the secret shown
//! once at creation and rotation, a test event, deliveries, and one delivery's attempt
//! timeline (status, duration, response headers and body, error) with a retry button.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{
    Empty, Nav, NoticeQuery, PageResult, badge, button, clip, csrf, notice, page, when,
};
use super::session::{Act, Viewer};
use crate::app::AppState;
use crate::error::ApiError;
use crate::page::PageRequest;
use crate::tokens::model::Scope;
use crate::webhooks::model::{NewWebhook, WebhookPatch, WebhookView, WithSecret};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(list))
        .route("/webhooks/new", get(new_form).post(create))
        .route("/webhooks/{id}", get(show))
        .route("/webhooks/{id}/edit", get(edit_form).post(update))
        .route("/webhooks/{id}/delete", get(confirm_delete).post(delete))
        .route("/webhooks/{id}/active", post(set_active))
        .route("/webhooks/{id}/rotate", post(rotate))
        .route("/webhooks/{id}/test", post(send_test))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/retry", post(retry))
}

async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let hooks = crate::webhooks::list(
        &app,
        PageRequest {
            limit: 1000,
            after: None,
        },
    )
    .await?;
    let body = html! {
        (notice(q.notice.as_deref()))
        @if viewer.can(Scope::Write) {
            p { a.buttonlike.primary href="/webhooks/new" { "New webhook" } }
        }
        div.scroll {
            table {
                thead { tr { th { "Name" } th { "Endpoint" } th { "Events" } th { "State" } } }
                tbody {
                    @for w in &hooks.items {
                        tr {
                            td { a href={ "/webhooks/" (w.id) } { (w.name) } }
                            td.break { (clip(&w.endpoint, 60)) }
                            td { (w.events.join(", ")) }
                            td { (state(w)) }
                        }
                    }
                    @if hooks.items.is_empty() { tr { td colspan="4" { "No webhooks yet." } } }
                }
            }
        }
    };
    Ok(page(&viewer, Nav::Webhooks, "Webhooks", body))
}

fn state(w: &WebhookView) -> Markup {
    html! {
        @if w.is_active { (badge("active")) }
        @else {
            (badge("disabled"))
            @if let Some(r) = &w.disabled_reason { " " span.muted { (r) } }
        }
    }
}

/// The webhook form's fields, as typed (also what the form is filled with again after an
/// error, so nothing typed is lost).
#[derive(Deserialize, Default, Clone)]
pub struct WebhookForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    events: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    metadata: String,
    #[serde(default)]
    retry_schedule: String,
    #[serde(default)]
    secret: String,
    is_active: Option<String>,
}

impl WebhookForm {
    fn from_view(w: &WebhookView) -> WebhookForm {
        WebhookForm {
            name: w.name.clone(),
            endpoint: w.endpoint.clone(),
            events: w.events.join("\n"),
            description: w.description.clone(),
            service: w.service.clone().unwrap_or_default(),
            headers: w
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect(),
            metadata: serde_json::to_string_pretty(&w.metadata).unwrap_or_default(),
            retry_schedule: w.retry_schedule.clone().unwrap_or_default(),
            secret: String::new(),
            is_active: w.is_active.then(|| "true".into()),
        }
    }

    fn events(&self) -> Vec<String> {
        self.events
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn headers(&self) -> Result<BTreeMap<String, String>, ApiError> {
        self.headers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "invalid_webhook",
                            format!("header line {l:?} is not Name: value"),
                        )
                    })
            })
            .collect()
    }

    fn metadata(&self) -> Result<serde_json::Value, ApiError> {
        if self.metadata.trim().is_empty() {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_str(&self.metadata).map_err(|e| {
            ApiError::unprocessable("invalid_webhook", format!("metadata is not JSON: {e}"))
        })
    }

    fn optional(s: &str) -> Option<String> {
        Some(s.trim().to_string()).filter(|s| !s.is_empty())
    }

    fn to_new(&self) -> Result<NewWebhook, ApiError> {
        Ok(NewWebhook {
            name: self.name.clone(),
            endpoint: self.endpoint.trim().to_string(),
            events: self.events(),
            secret: Self::optional(&self.secret),
            service: Self::optional(&self.service),
            metadata: Some(self.metadata()?),
            headers: Some(self.headers()?),
            is_active: Some(self.is_active.is_some()),
            description: Some(self.description.clone()),
            retry_schedule: Self::optional(&self.retry_schedule),
        })
    }

    fn to_patch(&self) -> Result<WebhookPatch, ApiError> {
        Ok(WebhookPatch {
            name: Some(self.name.clone()),
            endpoint: Some(self.endpoint.trim().to_string()),
            events: Some(self.events()),
            service: Self::optional(&self.service),
            metadata: Some(self.metadata()?),
            headers: Some(self.headers()?),
            is_active: Some(self.is_active.is_some()),
            description: Some(self.description.clone()),
            retry_schedule: Self::optional(&self.retry_schedule),
        })
    }
}

fn form(
    viewer: &Viewer,
    action: &str,
    f: &WebhookForm,
    creating: bool,
    error: Option<&str>,
) -> Markup {
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.stack method="post" action=(action) {
            (csrf(viewer))
            div.row {
                div { label for="w-name" { "Name" } input #w-name name="name" value=(f.name) required; }
                div { label for="w-endpoint" { "Endpoint URL" } input #w-endpoint type="url" name="endpoint" value=(f.endpoint) required placeholder="https://example.com/hooks"; }
            }
            label for="w-events" { "Event patterns (one per line; * matches everything, user.* a subtree)" }
            textarea #w-events name="events" rows="3" required { (f.events) }
            label for="w-desc" { "Description" }
            input #w-desc name="description" value=(f.description);
            details {
                summary { "More settings" }
                div.stack {
                    label for="w-service" { "Service" }
                    input #w-service name="service" value=(f.service);
                    label for="w-headers" { "Extra request headers (Name: value, one per line)" }
                    textarea #w-headers.code name="headers" rows="3" { (f.headers) }
                    label for="w-meta" { "Metadata (a JSON object)" }
                    textarea #w-meta.code name="metadata" rows="3" { (f.metadata) }
                    label for="w-retry" { "Retry schedule (blank: the global one; e.g. 5s,5m,30m)" }
                    input #w-retry name="retry_schedule" value=(f.retry_schedule);
                    @if creating {
                        label for="w-secret" { "Secret (blank: generate a whsec_ secret)" }
                        input #w-secret type="password" name="secret" autocomplete="off";
                    }
                }
            }
            div.check {
                input #w-active type="checkbox" name="is_active" value="true" checked[f.is_active.is_some()];
                label for="w-active" { "Active" }
            }
            button.primary type="submit" { @if creating { "Create webhook" } @else { "Save changes" } }
        }
    }
}

async fn new_form(viewer: Viewer) -> PageResult {
    viewer.require(Scope::Write)?;
    let f = WebhookForm {
        events: "*".into(),
        is_active: Some("true".into()),
        ..WebhookForm::default()
    };
    Ok(page(
        &viewer,
        Nav::Webhooks,
        "New webhook",
        form(&viewer, "/webhooks/new", &f, true, None),
    ))
}

/// A 4xx from an operation shows the form again with the message; a 5xx is an error page.
fn form_again(
    viewer: &Viewer,
    title: &str,
    action: &str,
    f: &WebhookForm,
    creating: bool,
    e: ApiError,
) -> PageResult {
    if e.status().is_server_error() {
        return Err(e.into());
    }
    let mut resp = page(
        viewer,
        Nav::Webhooks,
        title,
        form(viewer, action, f, creating, Some(&e.to_string())),
    );
    *resp.status_mut() = e.status();
    Ok(resp)
}

async fn create(State(app): State<AppState>, act: Act<WebhookForm>) -> PageResult {
    let f = &act.form;
    let created = match f.to_new() {
        Ok(new) => crate::webhooks::create(&app, new).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(w) => Ok(secret_page(&act.viewer, "Webhook created", &w)),
        Err(e) => form_again(&act.viewer, "New webhook", "/webhooks/new", f, true, e),
    }
}

/// The secret, shown this once (never put in a URL, never shown again).
fn secret_page(viewer: &Viewer, title: &str, w: &WithSecret) -> Response {
    let body = html! {
        p.notice role="status" { "Copy the signing secret of " strong { (w.webhook.name) } " now: it is not shown again." }
        label for="secret" { "Signing secret" }
        input #secret.code readonly value=(w.secret);
        p { a href={ "/webhooks/" (w.webhook.id) } { "Continue to the webhook" } }
    };
    page(viewer, Nav::Webhooks, title, body)
}

async fn show(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let w = crate::webhooks::get(&app, &id).await?;
    let view = WebhookView::from(&w);
    let deliveries = crate::webhooks::deliveries(
        &app,
        Some(&id),
        None,
        PageRequest {
            limit: 50,
            after: None,
        },
    )
    .await?;
    let base = format!("/webhooks/{id}");
    let body = html! {
        (notice(q.notice.as_deref()))
        dl.props {
            dt { "Endpoint" } dd.break { code { (view.endpoint) } }
            dt { "Events" } dd { (view.events.join(", ")) }
            dt { "State" } dd { (state(&view)) }
            @if let Some(since) = &w.failing_since { dt { "Failing since" } dd { (when(since)) } }
            @if !view.description.is_empty() { dt { "Description" } dd { (view.description) } }
            @if let Some(s) = &view.service { dt { "Service" } dd { (s) } }
            dt { "Retry schedule" } dd { (view.retry_schedule.clone().unwrap_or_else(|| "global default".into())) }
            @if !view.headers.is_empty() {
                dt { "Extra headers" } dd { @for (k, v) in &view.headers { code { (k) ": " (v) } br; } }
            }
            dt { "Created" } dd { (when(&view.created_at)) }
        }
        @if viewer.can(Scope::Write) {
            div.actions {
                (button(&viewer, Scope::Write, &format!("{base}/test"), "Send test event", "primary"))
                a.buttonlike href={ (base) "/edit" } { "Edit" }
                form.inline method="post" action={ (base) "/active" } {
                    (csrf(&viewer))
                    input type="hidden" name="active" value=(if view.is_active { "false" } else { "true" });
                    button type="submit" { @if view.is_active { "Disable" } @else { "Enable" } }
                }
                (button(&viewer, Scope::Write, &format!("{base}/rotate"), "Rotate secret", ""))
                a.buttonlike.danger href={ (base) "/delete" } { "Delete…" }
            }
        }
        h2 { "Deliveries" }
        div.scroll {
            table {
                thead { tr { th { "Created" } th { "Event" } th { "Status" } th { "Attempts" } th { "Last response" } } }
                tbody {
                    @for d in &deliveries.items {
                        tr {
                            td { a href={ "/deliveries/" (d.id) } { (when(&d.created_at)) } }
                            td { code { (d.event_type) } }
                            td { (badge(&d.status)) }
                            td { (d.attempts) }
                            td {
                                @if let Some(s) = d.last_status { (s) } @else if let Some(e) = &d.last_error { (clip(e, 60)) } @else { "—" }
                            }
                        }
                    }
                    @if deliveries.items.is_empty() { tr { td colspan="5" { "No deliveries yet." } } }
                }
            }
        }
    };
    Ok(page(&viewer, Nav::Webhooks, &view.name, body))
}

async fn edit_form(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    viewer.require(Scope::Write)?;
    let w = crate::webhooks::get(&app, &id).await?;
    let f = WebhookForm::from_view(&WebhookView::from(&w));
    let title = format!("Edit {}", w.name);
    Ok(page(
        &viewer,
        Nav::Webhooks,
        &title,
        form(&viewer, &format!("/webhooks/{id}/edit"), &f, false, None),
    ))
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    act: Act<WebhookForm>,
) -> PageResult {
    let f = &act.form;
    let updated = match f.to_patch() {
        Ok(patch) => crate::webhooks::update(&app, &id, patch).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => Ok(Redirect::to(&format!("/webhooks/{id}?notice=saved")).into_response()),
        Err(e) => form_again(
            &act.viewer,
            "Edit webhook",
            &format!("/webhooks/{id}/edit"),
            f,
            false,
            e,
        ),
    }
}

async fn confirm_delete(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    viewer.require(Scope::Write)?;
    let w = crate::webhooks::get(&app, &id).await?;
    let body = html! {
        p { "Delete webhook " strong { (w.name) } " (" code { (w.endpoint) } ")? It stops receiving events; this cannot be undone." }
        (button(&viewer, Scope::Write, &format!("/webhooks/{id}/delete"), "Delete webhook", "danger"))
        " " a.buttonlike href={ "/webhooks/" (id) } { "Cancel" }
    };
    Ok(page(&viewer, Nav::Webhooks, "Delete webhook", body))
}

async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _act: Act<Empty>,
) -> PageResult {
    crate::webhooks::delete(&app, &id).await?;
    Ok(Redirect::to("/webhooks?notice=deleted").into_response())
}

#[derive(Deserialize)]
pub struct ActiveForm {
    active: String,
}

async fn set_active(
    State(app): State<AppState>,
    Path(id): Path<String>,
    act: Act<ActiveForm>,
) -> PageResult {
    let patch = WebhookPatch {
        is_active: Some(act.form.active == "true"),
        ..WebhookPatch::default()
    };
    crate::webhooks::update(&app, &id, patch).await?;
    Ok(Redirect::to(&format!("/webhooks/{id}?notice=saved")).into_response())
}

async fn rotate(
    State(app): State<AppState>,
    Path(id): Path<String>,
    act: Act<Empty>,
) -> PageResult {
    let w = crate::webhooks::rotate_secret(&app, &id).await?;
    Ok(secret_page(&act.viewer, "Secret rotated", &w))
}

async fn send_test(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _act: Act<Empty>,
) -> PageResult {
    crate::webhooks::send_test(&app, &id).await?;
    Ok(Redirect::to(&format!("/webhooks/{id}?notice=test-sent")).into_response())
}

async fn delivery(
    State(app): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> PageResult {
    let d = crate::webhooks::delivery(&app, &id).await?;
    let v = &d.delivery;
    let body = html! {
        (notice(q.notice.as_deref()))
        dl.props {
            dt { "Event" } dd { code { (v.event_type) } " " span.muted { (v.event_id) } }
            dt { "Webhook" } dd { a href={ "/webhooks/" (v.webhook_id) } { "the webhook" } }
            dt { "Status" } dd { (badge(&v.status)) }
            dt { "Attempts" } dd { (v.attempts) }
            @if let Some(n) = &v.next_attempt_at { @if v.status == "pending" { dt { "Next attempt" } dd { (when(n)) } } }
            @if let Some(t) = &v.delivered_at { dt { "Delivered" } dd { (when(t)) } }
        }
        @if v.status != "pending" {
            (button(&viewer, Scope::Write, &format!("/deliveries/{id}/retry"), "Retry now", "primary"))
        }
        h2 { "Attempts" }
        @if d.attempts_log.is_empty() { p { "No attempt yet: the delivery is queued." } }
        ol.timeline {
            @for a in &d.attempts_log {
                li {
                    p {
                        strong { "Attempt " (a.attempt) } " · " (when(&a.started_at)) " · " (a.duration_ms) " ms · "
                        @match a.status_code {
                            Some(s) if (200..300).contains(&s) => { (badge("ok")) " " (s) }
                            Some(s) => { (badge("failed")) " " (s) }
                            None => { (badge("failed")) " no response" }
                        }
                    }
                    @if let Some(e) = &a.error { p.error { (e) } }
                    @if !a.response_headers.is_empty() {
                        details {
                            summary { "Response headers (" (a.response_headers.len()) ")" }
                            pre { code { @for (k, val) in &a.response_headers { (k) ": " (val) "\n" } } }
                        }
                    }
                    @if !a.response_body.is_empty() {
                        p.label { "Response body" }
                        pre { code { (a.response_body) } }
                    }
                }
            }
        }
    };
    Ok(page(&viewer, Nav::Webhooks, "Delivery", body))
}

async fn retry(
    State(app): State<AppState>,
    Path(id): Path<String>,
    _act: Act<Empty>,
) -> PageResult {
    crate::webhooks::retry(&app, &id).await?;
    Ok(Redirect::to(&format!("/deliveries/{id}?notice=retried")).into_response())
}
