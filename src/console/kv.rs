//! The key-value pages: keys by prefix, one key with a typed editor (a number field for
//! integers, a date picker for dates, JSON text for objects, a password field for
//! secrets…), secrets masked with a reveal for admins, and the history with rollback.
//! Edits are compare-and-set on the version shown, so a stale form never overwrites a
//! newer value. Keys travel in query strings and form fields, since they may hold `/`.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{Failure, Nav, PageResult, badge, clip, csrf, notice, page, when};
use super::session::{Act, Viewer};
use crate::app::AppState;
use crate::error::ApiError;
use crate::kv::model::{EntryView, HistoryView, Precondition, PutRequest};
use crate::kv::value::{self, ValueType};
use crate::page::PageRequest;
use crate::tokens::model::Scope;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/kv", get(list))
        .route("/kv/entry", get(show))
        .route("/kv/edit", get(edit))
        .route("/kv/put", post(put))
        .route("/kv/delete", get(confirm_delete).post(delete))
        .route("/kv/rollback", post(rollback))
        .route("/kv/reveal", post(reveal))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    notice: Option<String>,
}

fn entry_href(key: &str) -> String {
    format!(
        "/kv/entry?{}",
        serde_urlencoded::to_string([("key", key)]).unwrap_or_default()
    )
}

async fn list(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let page_req = crate::page::PageQuery {
        limit: Some(100),
        cursor: q.cursor.clone(),
    }
    .validate()?;
    let found = crate::kv::list(&app, &q.prefix, page_req).await?;
    let body = html! {
        (notice(q.notice.as_deref()))
        form.filters method="get" action="/kv" {
            div { label for="k-prefix" { "Key prefix" } input #k-prefix name="prefix" value=(q.prefix); }
            div.end { button type="submit" { "Filter" } }
        }
        div.scroll {
            table {
                thead { tr { th { "Key" } th { "Type" } th { "Value" } th { "Version" } th { "Updated" } } }
                tbody {
                    @for e in &found.items {
                        tr {
                            td { a href=(entry_href(&e.key)) { code { (e.key) } } @if !e.is_active { " " (badge("inactive")) } }
                            td { (e.value_type.as_str()) }
                            td.break { (clip(&shown(e), 60)) }
                            td { (e.version) }
                            td { (when(&e.updated_at)) }
                        }
                    }
                    @if found.items.is_empty() { tr { td colspan="5" { "No keys." } } }
                }
            }
        }
        @if let Some(c) = &found.next_cursor {
            p { a href={ "/kv?" (serde_urlencoded::to_string([("prefix", q.prefix.as_str()), ("cursor", c.as_str())]).unwrap_or_default()) } { "More keys" } }
        }
        @if viewer.can(Scope::Write) {
            h2 { "New key" }
            form.filters method="get" action="/kv/edit" {
                div { label for="n-key" { "Key" } input #n-key name="key" required placeholder="app/feature.enabled"; }
                div { label for="n-type" { "Type" } (type_select("n-type", ValueType::String)) }
                div.end { button type="submit" { "Continue" } }
            }
        }
    };
    Ok(page(&viewer, Nav::Kv, "Key-value", body))
}

fn type_select(id: &str, selected: ValueType) -> Markup {
    html! {
        select id=(id) name="type" {
            @for t in ValueType::ALL { option value=(t.as_str()) selected[t == selected] { (t.as_str()) } }
        }
    }
}

/// A value as one line of text for tables; a masked secret as dots.
fn shown(e: &EntryView) -> String {
    if e.masked {
        return "••••••••".into();
    }
    as_text(&e.value, false)
}

/// A typed value as editable text: strings bare, JSON documents pretty when `pretty`.
fn as_text(v: &Value, pretty: bool) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) if pretty => {
            serde_json::to_string_pretty(v).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
pub struct KeyQuery {
    key: String,
    #[serde(rename = "type")]
    value_type: Option<String>,
    notice: Option<String>,
}

/// The key's history, newest first; the first row is its current state.
async fn history(app: &AppState, key: &str) -> Result<Vec<HistoryView>, ApiError> {
    Ok(crate::kv::history(
        app,
        key,
        PageRequest {
            limit: 50,
            after: None,
        },
    )
    .await?
    .items)
}

async fn show(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<KeyQuery>,
) -> PageResult {
    let rows = history(&app, &q.key).await?;
    Ok(entry_page(
        &viewer,
        &q.key,
        &rows,
        None,
        q.notice.as_deref(),
        None,
    ))
}

fn entry_page(
    viewer: &Viewer,
    key: &str,
    rows: &[HistoryView],
    revealed: Option<&str>,
    notice_code: Option<&str>,
    error: Option<(&Draft, &str)>,
) -> Response {
    let current = rows.first();
    let deleted = current.is_none_or(|h| h.op == "delete");
    let body = html! {
        (notice(notice_code))
        @if let Some(h) = current {
            @let e = &h.entry;
            dl.props {
                dt { "Type" } dd { (e.value_type.as_str()) }
                dt { "State" } dd {
                    @if deleted { (badge("delete")) " deleted" }
                    @else if e.is_active { (badge("active")) } @else { (badge("inactive")) }
                    @if e.is_cached { " · cached" }
                }
                dt { "Version" } dd { (e.version) " · " (when(&e.updated_at)) " by " (e.updated_by) }
                @if !e.description.is_empty() { dt { "Description" } dd { (e.description) } }
                dt { "Value" }
                dd {
                    @if let Some(secret) = revealed {
                        pre { code { (secret) } }
                    } @else if e.masked {
                        span.masked { "••••••••" } " "
                        @if !deleted { (reveal_button(viewer, key)) }
                    } @else if !deleted {
                        pre { code { (as_text(&e.value, true)) } }
                    }
                }
            }
            @if viewer.can(Scope::Write) {
                @if let Some((draft, message)) = error {
                    h2 { "Edit" }
                    (editor(viewer, draft, Some(message)))
                } @else if !deleted {
                    h2 { "Edit" }
                    (editor(viewer, &Draft::from_entry(e), None))
                    p { a.buttonlike.danger href={ "/kv/delete?" (serde_urlencoded::to_string([("key", key)]).unwrap_or_default()) } { "Delete…" } }
                }
            }
            h2 { "History" }
            div.scroll {
                table {
                    thead { tr { th { "Version" } th { "Change" } th { "Value" } th { "When" } th { "By" } th { span.sr { "Actions" } } } }
                    tbody {
                        @for (i, h) in rows.iter().enumerate() {
                            tr {
                                td { (h.entry.version) }
                                td { (badge(&h.op)) }
                                td.break { @if h.op != "delete" { code { (clip(&shown(&h.entry), 80)) } } }
                                td { (when(&h.entry.updated_at)) }
                                td { (h.entry.updated_by) }
                                td {
                                    @if i > 0 && h.op != "delete" && viewer.can(Scope::Write) {
                                        form.inline method="post" action="/kv/rollback" {
                                            (csrf(viewer))
                                            input type="hidden" name="key" value=(key);
                                            input type="hidden" name="version" value=(h.entry.version);
                                            button.small type="submit" { "Roll back to v" (h.entry.version) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/kv" { "Back to keys" } }
    };
    page(viewer, Nav::Kv, key, body)
}

fn reveal_button(viewer: &Viewer, key: &str) -> Markup {
    html! {
        @if viewer.can(Scope::Admin) {
            form.inline method="post" action="/kv/reveal" {
                (csrf(viewer))
                input type="hidden" name="key" value=(key);
                button.small type="submit" { "Reveal" }
            }
        }
    }
}

/// The editor's fields, as typed.
#[derive(Deserialize, Clone)]
pub struct Draft {
    key: String,
    #[serde(rename = "type")]
    value_type: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    description: String,
    is_active: Option<String>,
    is_cached: Option<String>,
    /// The version the form was made from (compare-and-set); blank for a new key.
    #[serde(default)]
    version: String,
}

impl Draft {
    fn from_entry(e: &EntryView) -> Draft {
        Draft {
            key: e.key.clone(),
            value_type: e.value_type.as_str().into(),
            value: if e.masked {
                String::new()
            } else {
                as_text(&e.value, true)
            },
            description: e.description.clone(),
            is_active: e.is_active.then(|| "true".into()),
            is_cached: e.is_cached.then(|| "true".into()),
            version: e.version.to_string(),
        }
    }

    fn ty(&self) -> ValueType {
        self.value_type.parse().unwrap_or(ValueType::String)
    }
}

/// The typed input for the value: each type gets the control that fits it.
fn value_input(ty: ValueType, v: &str) -> Markup {
    html! {
        @match ty {
            ValueType::String => textarea #kv-value name="value" rows="3" { (v) },
            ValueType::Integer => input #kv-value type="number" step="1" name="value" value=(v) required;,
            ValueType::Number => input #kv-value type="number" step="any" name="value" value=(v) required;,
            ValueType::Boolean => select #kv-value name="value" {
                option value="true" selected[v == "true"] { "true" }
                option value="false" selected[v != "true"] { "false" }
            },
            ValueType::Date => input #kv-value type="date" name="value" value=(v) required;,
            ValueType::Datetime => input #kv-value name="value" value=(v) required placeholder="2026-12-04T09:30:00Z" pattern=".*T.*(Z|z|[+-][0-9]{2}:[0-9]{2})";,
            ValueType::Object | ValueType::Array => textarea #kv-value.code name="value" rows="8" required { (v) },
            ValueType::Secret => input #kv-value type="password" name="value" autocomplete="new-password" required;,
        }
    }
}

fn editor(viewer: &Viewer, d: &Draft, error: Option<&str>) -> Markup {
    let ty = d.ty();
    let hint = match ty {
        ValueType::Object => "a JSON object",
        ValueType::Array => "a JSON array",
        ValueType::Datetime => "RFC 3339 with an offset, stored in UTC",
        ValueType::Secret => "stored encrypted; type the new value",
        _ => ty.as_str(),
    };
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.stack method="post" action="/kv/put" {
            (csrf(viewer))
            input type="hidden" name="key" value=(d.key);
            input type="hidden" name="type" value=(ty.as_str());
            input type="hidden" name="version" value=(d.version);
            label for="kv-value" { "Value (" (hint) ")" }
            (value_input(ty, &d.value))
            label for="kv-desc" { "Description" }
            input #kv-desc name="description" value=(d.description);
            div.check {
                input #kv-active type="checkbox" name="is_active" value="true" checked[d.is_active.is_some()];
                label for="kv-active" { "Active (served to applications)" }
            }
            div.check {
                input #kv-cached type="checkbox" name="is_cached" value="true" checked[d.is_cached.is_some()];
                label for="kv-cached" { "Cached in memory by every instance" }
            }
            button.primary type="submit" { "Save" }
        }
    }
}

/// A new key, or a change of an existing key's type: the editor for the chosen type.
async fn edit(
    State(app): State<AppState>,
    viewer: Viewer,
    Query(q): Query<KeyQuery>,
) -> PageResult {
    viewer.require(Scope::Write)?;
    crate::kv::model::validate_key(&q.key)
        .map_err(|m| Failure::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    let ty: ValueType = q
        .value_type
        .as_deref()
        .unwrap_or("string")
        .parse()
        .map_err(|e: value::UnknownValueType| {
            Failure::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        })?;
    let existing = match history(&app, &q.key).await {
        Ok(rows) => rows.into_iter().next().filter(|h| h.op != "delete"),
        Err(ApiError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let draft = Draft {
        key: q.key.clone(),
        value_type: ty.as_str().into(),
        value: String::new(),
        description: existing
            .as_ref()
            .map(|h| h.entry.description.clone())
            .unwrap_or_default(),
        is_active: Some("true".into()),
        is_cached: None,
        version: existing
            .map(|h| h.entry.version.to_string())
            .unwrap_or_default(),
    };
    let body = html! {
        p { "Key " code { (q.key) } ", type " strong { (ty.as_str()) } "." }
        (editor(&viewer, &draft, None))
    };
    Ok(page(&viewer, Nav::Kv, "Set a key", body))
}

async fn put(State(app): State<AppState>, act: Act<Draft>) -> PageResult {
    let d = act.form;
    match save(&app, &act.viewer, &d).await {
        Ok(()) => Ok(Redirect::to(&format!("{}&notice=saved", entry_href(&d.key))).into_response()),
        Err(e) if e.status().is_client_error() => {
            let rows = match history(&app, &d.key).await {
                Ok(rows) => rows,
                Err(ApiError::NotFound { .. }) => Vec::new(),
                Err(other) => return Err(other.into()),
            };
            let mut resp = if rows.is_empty() {
                let body = html! { (editor(&act.viewer, &d, Some(&e.to_string()))) };
                page(&act.viewer, Nav::Kv, "Set a key", body)
            } else {
                entry_page(
                    &act.viewer,
                    &d.key,
                    &rows,
                    None,
                    None,
                    Some((&d, &e.to_string())),
                )
            };
            *resp.status_mut() = e.status();
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses the typed text with the type's own rule, then writes through the KV operation.
async fn save(app: &AppState, viewer: &Viewer, d: &Draft) -> Result<(), ApiError> {
    let ty: ValueType = d.value_type.parse().map_err(|e: value::UnknownValueType| {
        ApiError::unprocessable("invalid_type", e.to_string())
    })?;
    // Browsers send textarea line breaks as CRLF.
    let text = d.value.replace("\r\n", "\n");
    let typed = value::parse_text(ty, &text).map_err(crate::kv::type_mismatch)?;
    let pre = match d.version.trim() {
        "" => Precondition::Absent,
        v => Precondition::Version(v.parse().map_err(|_| {
            ApiError::bad_request("invalid_version", "the form's version is not a number")
        })?),
    };
    let req = PutRequest {
        value_type: ty,
        value: typed.to_json(),
        is_active: Some(d.is_active.is_some()),
        is_cached: Some(d.is_cached.is_some()),
        description: Some(d.description.clone()),
    };
    crate::kv::put(app, &d.key, req, pre, &viewer.actor()).await?;
    Ok(())
}

async fn confirm_delete(viewer: Viewer, Query(q): Query<KeyQuery>) -> PageResult {
    viewer.require(Scope::Write)?;
    let body = html! {
        p { "Delete key " code { (q.key) } "? Its history stays, and a later write continues its version numbers." }
        form.inline method="post" action="/kv/delete" {
            (csrf(&viewer))
            input type="hidden" name="key" value=(q.key);
            button.danger type="submit" { "Delete key" }
        }
        " " a.buttonlike href=(entry_href(&q.key)) { "Cancel" }
    };
    Ok(page(&viewer, Nav::Kv, "Delete key", body))
}

#[derive(Deserialize)]
pub struct KeyForm {
    key: String,
    #[serde(default)]
    version: String,
}

async fn delete(State(app): State<AppState>, act: Act<KeyForm>) -> PageResult {
    crate::kv::delete(&app, &act.form.key, Precondition::None, &act.viewer.actor()).await?;
    Ok(Redirect::to("/kv?notice=deleted").into_response())
}

async fn rollback(State(app): State<AppState>, act: Act<KeyForm>) -> PageResult {
    let to: i64 = act.form.version.parse().map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "the version to roll back to is missing".into(),
        )
    })?;
    crate::kv::rollback(
        &app,
        &act.form.key,
        to,
        Precondition::None,
        &act.viewer.actor(),
    )
    .await?;
    Ok(Redirect::to(&format!("{}&notice=rolled-back", entry_href(&act.form.key))).into_response())
}

/// Shows a secret in clear to an admin (a POST, so it never sits in a URL or history).
async fn reveal(State(app): State<AppState>, act: Act<KeyForm>) -> PageResult {
    act.viewer.require(Scope::Admin)?;
    let served = crate::kv::get(&app, &act.form.key, true).await?;
    let view: Value =
        serde_json::from_slice(&served.body).map_err(|e| ApiError::Internal(e.into()))?;
    let secret = as_text(&view["value"], true);
    let rows = history(&app, &act.form.key).await?;
    let mut resp = entry_page(&act.viewer, &act.form.key, &rows, Some(&secret), None, None);
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}
