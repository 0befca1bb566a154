//! The page shell (header, navigation, sign-out), the HTML error page, and small markup
//! helpers shared by every page: state badges, action buttons that carry the CSRF token
//! and only appear for tokens allowed to use them.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Viewer;
use crate::error::ApiError;
use crate::tokens::model::Scope;

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Migrations,
    Procedures,
    Webhooks,
    Incoming,
    Kv,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Migrations, "/migrations", "Migrations"),
    (Nav::Procedures, "/procedures", "Procedures"),
    (Nav::Webhooks, "/webhooks", "Webhooks"),
    (Nav::Incoming, "/incoming", "Incoming"),
    (Nav::Kv, "/kv", "Key-value"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · opshub" }
            link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
            link rel="stylesheet" href="/assets/console.css";
        }
    }
}

/// A full page for a signed-in viewer.
pub fn page(viewer: &Viewer, current: Nav, title: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "opshub" }
                    nav aria-label="Main" {
                        ul {
                            @for (nav, href, label) in NAV {
                                li {
                                    a href=(href) aria-current=[(*nav == current).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                    div.who {
                        span { (viewer.name) " " span.badge { (viewer.scope.as_str()) } }
                        form method="post" action="/logout" {
                            (csrf(viewer))
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(doc.into_string()).into_response()
}

/// A page without navigation (login, errors before a session exists).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main {
                    p.brand { "opshub" }
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, Html(doc.into_string())).into_response()
}

/// A console error, shown as an HTML page (never the API's JSON).
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: String) -> Failure {
        Failure { status, message }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        let status = e.status();
        if status.is_server_error() {
            if let ApiError::Internal(cause) = &e {
                tracing::error!(error = format!("{cause:#}"), "console request failed");
            }
            return Failure::new(
                status,
                "something went wrong on the server; the log has the cause".into(),
            );
        }
        Failure::new(status, e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        bare(
            self.status,
            title,
            html! {
                p.error role="alert" { (self.message) }
                p { a href="/" { "Back to the dashboard" } }
            },
        )
    }
}

/// The query of a page that may show a [`notice`] after a redirect.
#[derive(serde::Deserialize, Default)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

/// A form with nothing but its CSRF token.
#[derive(serde::Deserialize)]
pub struct Empty {}

/// What a console handler returns.
pub type PageResult = Result<Response, Failure>;

/// The hidden CSRF field every form carries.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="_csrf" value=(viewer.csrf); }
}

/// A one-button form posting to `action`, shown only when the viewer has `needed`.
pub fn button(viewer: &Viewer, needed: Scope, action: &str, label: &str, class: &str) -> Markup {
    html! {
        @if viewer.can(needed) {
            form.inline method="post" action=(action) {
                (csrf(viewer))
                button class=(class) type="submit" { (label) }
            }
        }
    }
}

/// A coloured label for a state word.
pub fn badge(state: &str) -> Markup {
    let tone = match state {
        "executed" | "succeeded" | "valid" | "active" | "in_sync" | "ok" | "put" => "ok",
        "pending" | "inactive" | "unchecked" | "out_of_order" | "changed" | "rollback" => "warn",
        "dirty"
        | "failed"
        | "invalid"
        | "disabled"
        | "drifted"
        | "missing"
        | "broken"
        | "delete"
        | "changed_and_drifted" => "bad",
        _ => "",
    };
    html! { span class={ "badge " (tone) } { (state) } }
}

/// A notice shown after a redirect, chosen by code so no page text comes from the URL.
pub fn notice(code: Option<&str>) -> Markup {
    let text = match code.unwrap_or_default() {
        "created" => "Created.",
        "saved" => "Saved.",
        "deleted" => "Deleted.",
        "test-sent" => "Test event queued; its delivery is listed below.",
        "retried" => "Delivery queued again.",
        "activated" => "Activated.",
        "rolled-back" => "Rolled back to that version as a new version.",
        "deployed" => "Deployed.",
        "proc-rolled-back" => "Rolled back: the down script ran; the procedure is pending again.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A timestamp shortened for tables (stored form is fixed-width RFC 3339).
pub fn when(ts: &str) -> Markup {
    let short = ts.get(..19).map_or(ts.to_string(), |s| s.replace('T', " "));
    html! { time datetime=(ts) { (short) } }
}

/// Browsers send textarea lines with CRLF; scripts are stored with the author's LF.
pub fn lf(s: &str) -> String {
    s.replace("\r\n", "\n")
}

/// Text cut to `n` characters with an ellipsis.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}
