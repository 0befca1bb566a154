//! The incoming log pages: captured requests with filters (source, method, signature
//! status, time range, body text), one request's headers and pretty-printed body with its
//! signature status and chain hashes, verification of the whole hash chain, and the
//! ingest sources (list, create).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Failure, Nav, PageResult, badge, clip, csrf, notice, page, when};
use super::session::{Act, Viewer};
use crate::app::AppState;
use crate::page::PageRequest;
use crate::tokens::model::Scope;
use crate::webhook_log::model::{LogQuery, NewSource};
use crate::webhook_log::verify::Verifier;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/incoming", get(list))
        .route("/incoming/verify", get(verify))
        .route("/incoming/sources", post(create_source))
        .route("/incoming/{id}", get(show))
}

#[derive(Deserialize, Default)]
pub struct Filters {
    source: Option<String>,
    method: Option<String>,
    signature_status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

fn blank_to_none(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Filters {
    fn query(&self) -> LogQuery {
        LogQuery {
            source: blank_to_none(&self.source),
            method: blank_to_none(&self.method),
            from: blank_to_none(&self.from),
            to: blank_to_none(&self.to),
            signature_status: blank_to_none(&self.signature_status),
            q: self.q.clone().filter(|q| !q.is_empty()),
            limit: None,
            cursor: None,
        }
    }

    /// This page's query string with another cursor, for the "older" link.
    fn with_cursor(&self, cursor: &str) -> String {
        let q = self.query();
        let pairs: Vec<(&str, String)> = [
            ("source", q.source),
            ("method", q.method),
            ("signature_status", q.signature_status),
            ("from", q.from),
            ("to", q.to),
            ("q", q.q),
            ("cursor", Some(cursor.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

async fn list(State(app): State<AppState>, viewer: Viewer, Query(f): Query<Filters>) -> PageResult {
    let filter = f
        .query()
        .filter()
        .map_err(|m| Failure::new(StatusCode::BAD_REQUEST, m))?;
    let page_req = crate::page::PageQuery {
        limit: Some(50),
        cursor: f.cursor.clone(),
    }
    .validate()?;
    let found = crate::webhook_log::list_entries(&app.db, &filter, page_req).await?;
    let sources = crate::webhook_log::list_sources(
        &app.db,
        PageRequest {
            limit: 1000,
            after: None,
        },
    )
    .await?;
    let q = f.query();
    let body = html! {
        (notice(f.notice.as_deref()))
        form.filters method="get" action="/incoming" {
            div { label for="f-source" { "Source" }
                select #f-source name="source" {
                    option value="" { "any" }
                    @for s in &sources.items { option value=(s.name) selected[q.source.as_deref() == Some(s.name.as_str())] { (s.name) } }
                }
            }
            div { label for="f-method" { "Method" } input #f-method.narrow name="method" value=(q.method.clone().unwrap_or_default()) placeholder="POST"; }
            div { label for="f-sig" { "Signature" }
                select #f-sig name="signature_status" {
                    @for (v, l) in [("", "any"), ("valid", "valid"), ("invalid", "invalid"), ("unchecked", "unchecked")] {
                        option value=(v) selected[q.signature_status.as_deref().unwrap_or("") == v] { (l) }
                    }
                }
            }
            div { label for="f-from" { "From (RFC 3339)" } input #f-from name="from" value=(q.from.clone().unwrap_or_default()) placeholder="2026-12-01T00:00:00Z"; }
            div { label for="f-to" { "To" } input #f-to name="to" value=(q.to.clone().unwrap_or_default()); }
            div { label for="f-q" { "Body contains" } input #f-q name="q" value=(q.q.clone().unwrap_or_default()); }
            div.end { button type="submit" { "Filter" } }
        }
        div.actions {
            a.buttonlike href="/incoming/verify" { "Verify hash chain" }
        }
        div.scroll {
            table {
                thead { tr { th { "#" } th { "Received" } th { "Source" } th { "Request" } th { "Signature" } th { "Size" } } }
                tbody {
                    @for e in &found.items {
                        tr {
                            td { a href={ "/incoming/" (e.capture.id) } { (e.seq) } }
                            td { (when(&e.capture.received_at)) }
                            td { (e.capture.source) }
                            td.break { code { (e.capture.method) " " (clip(&e.capture.path, 50)) } }
                            td { (badge(&e.capture.signature_status)) }
                            td { (e.body_size) " B" }
                        }
                    }
                    @if found.items.is_empty() { tr { td colspan="6" { "No requests match." } } }
                }
            }
        }
        @if let Some(c) = &found.next_cursor { p { a href={ "/incoming?" (f.with_cursor(c)) } { "Older requests" } } }
        (sources_section(&viewer, &sources.items))
    };
    Ok(page(&viewer, Nav::Incoming, "Incoming requests", body))
}

fn sources_section(viewer: &Viewer, sources: &[crate::webhook_log::model::Source]) -> Markup {
    html! {
        h2 { "Ingest sources" }
        p.hint { "Providers send to " code { "/ingest/<source>" } "; every request is logged, signed or not." }
        div.scroll {
            table {
                thead { tr { th { "Name" } th { "Verifier" } th { "Secret" } th { "Rejects invalid" } } }
                tbody {
                    @for s in sources {
                        tr {
                            td { code { (s.name) } }
                            td { (s.verifier.as_str()) }
                            td { @if s.has_secret { "set" } @else { "—" } }
                            td { @if s.reject_invalid { "yes" } @else { "no" } }
                        }
                    }
                    @if sources.is_empty() { tr { td colspan="4" { "No sources yet." } } }
                }
            }
        }
        @if viewer.can(Scope::Write) {
            details.panel {
                summary { "New source" }
                form.stack method="post" action="/incoming/sources" {
                    (csrf(viewer))
                    div.row {
                        div { label for="s-name" { "Name" } input #s-name name="name" required placeholder="stripe"; }
                        div { label for="s-verifier" { "Signature scheme" }
                            select #s-verifier name="verifier" {
                                @for v in Verifier::ALL { option value=(v.as_str()) { (v.as_str()) } }
                            }
                        }
                    }
                    label for="s-secret" { "Secret (for the signature check)" }
                    input #s-secret type="password" name="secret" autocomplete="off";
                    div.check {
                        input #s-reject type="checkbox" name="reject_invalid" value="true";
                        label for="s-reject" { "Answer 401 to a bad signature (the request is still logged)" }
                    }
                    button.primary type="submit" { "Create source" }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct SourceForm {
    name: String,
    verifier: String,
    #[serde(default)]
    secret: String,
    reject_invalid: Option<String>,
}

async fn create_source(State(app): State<AppState>, act: Act<SourceForm>) -> PageResult {
    let f = act.form;
    let verifier: Verifier =
        f.verifier
            .parse()
            .map_err(|e: crate::webhook_log::verify::UnknownVerifier| {
                Failure::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            })?;
    let new = NewSource {
        name: f.name.trim().to_string(),
        verifier,
        secret: Some(f.secret).filter(|s| !s.is_empty()),
        redact_headers: Vec::new(),
        max_body_bytes: None,
        reject_invalid: f.reject_invalid.is_some(),
    };
    crate::webhook_log::create_source(&app.db, &app.keys, new).await?;
    app.webhook_log.forget_sources();
    Ok(Redirect::to("/incoming?notice=created").into_response())
}

/// The body as text: JSON re-indented, other UTF-8 as is, binary as a note.
fn pretty_body(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => reindent(text),
        Ok(text) => text.to_string(),
        Err(_) => format!(
            "({} bytes of binary data; download it from the API's /raw route)",
            body.len()
        ),
    }
}

/// Indents valid JSON text without parsing it into values, so the provider's key order
/// and number spelling stay exactly as sent.
fn reindent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                out.push(c);
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

async fn show(State(app): State<AppState>, viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let e = crate::webhook_log::get_entry(&app.db, &id).await?;
    let c = &e.capture;
    let headers: Vec<(String, String)> = serde_json::from_str(&c.headers).unwrap_or_default();
    let body = html! {
        dl.props {
            dt { "Request" } dd.break { code { (c.method) " " (c.path) @if let Some(q) = &c.query { "?" (q) } } }
            dt { "Source" } dd { (c.source) }
            dt { "Received" } dd { (when(&c.received_at)) " from " (c.remote_addr) }
            dt { "Signature" } dd { (badge(&c.signature_status)) @if let Some(r) = &c.signature_reason { " " code { (r) } } }
            dt { "Size" } dd { (e.body_size) " bytes" @if let Some(t) = &c.content_type { ", " code { (t) } } }
            dt { "Chain" } dd.break { "seq " (e.seq) br; "hash " code { (e.hash) } br; "previous " code { (e.prev_hash) } }
        }
        h2 { "Headers" }
        div.scroll {
            table {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody { @for (k, v) in &headers { tr { td { code { (k) } } td.break { (v) } } } }
            }
        }
        h2 { "Body" }
        pre { code { (pretty_body(&c.body)) } }
        p { a href="/incoming" { "Back to incoming requests" } }
    };
    Ok(page(
        &viewer,
        Nav::Incoming,
        &format!("Request #{}", e.seq),
        body,
    ))
}

async fn verify(State(app): State<AppState>, viewer: Viewer) -> PageResult {
    let r = crate::webhook_log::verify_chain(&app.db).await?;
    let body = html! {
        @if r.ok {
            p.notice role="status" { (badge("ok")) " The chain is intact: " (r.checked_rows) " row(s) checked from seq " (r.checkpoint_seq) " to " (r.head_seq) "." }
        } @else {
            p.error role="alert" {
                (badge("broken")) " The chain breaks"
                @if let Some(s) = r.first_bad_seq { " at seq " (s) }
                @if let Some(p) = &r.problem { ": " (p) }
            }
        }
        dl.props {
            dt { "Rows checked" } dd { (r.checked_rows) }
            dt { "Checkpoint" } dd { (r.checkpoint_seq) }
            dt { "Head" } dd.break { (r.head_seq) " " code { (r.head_hash) } }
        }
        p { a href="/incoming" { "Back to incoming requests" } }
    };
    Ok(page(&viewer, Nav::Incoming, "Chain verification", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_indented_in_their_own_order() {
        let sent = br#"{"z":1.50,"a":[],"b":{"s":"x, \"y\": {z}","n":[1,2]}}"#;
        let shown = pretty_body(sent);
        assert_eq!(
            shown,
            "{\n  \"z\": 1.50,\n  \"a\": [],\n  \"b\": {\n    \"s\": \"x, \\\"y\\\": {z}\",\n    \"n\": [\n      1,\n      2\n    ]\n  }\n}"
        );
        assert_eq!(pretty_body(b"not json {"), "not json {");
        assert!(pretty_body(&[0xff, 0xfe]).contains("2 bytes of binary data"));
    }
}
