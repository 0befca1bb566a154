//! The web console at `/`: server-rendered HTML pages over the same operations the API
//! and the CLI call (never HTTP to itself, no business logic of its own). Sign-in with an
//! API token opens a database-backed session ([`session`]); every form posts with a CSRF
//! token and is refused (403) for a token whose scope does not allow the action. Assets
//! (one stylesheet, an icon) are compiled into the binary; the pages need no script and
//! no network. Errors here are HTML pages, never the API's JSON.

mod dashboard;
mod incoming;
mod kv;
mod layout;
mod login;
mod migrations;
mod procedures;
pub mod session;
mod store;
mod webhooks;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::AppState;

const CSS: &str = include_str!("assets/console.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Content Security Policy of every console page: nothing but this origin's own
/// stylesheet and images, no scripts at all, forms only to this origin, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::show))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/assets/console.css", get(css))
        .route("/assets/favicon.svg", get(favicon))
        .merge(migrations::routes())
        .merge(procedures::routes())
        .merge(webhooks::routes())
        .merge(incoming::routes())
        .merge(kv::routes())
        .layer(axum::middleware::map_response(protect))
}

/// Headers every console response carries: the CSP, no framing, no sniffing, no caching
/// of pages that may show configuration.
async fn protect(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn favicon() -> Response {
    asset(FAVICON, "image/svg+xml")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
