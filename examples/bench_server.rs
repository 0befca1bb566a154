//! The server side of `bench/ingest.sh`: the real opshub application (configuration from
//! `OPSHUB_*` as usual), a source named `bench` (no verifier), and two floors measured in
//! the same process: `GET /healthz` through opshub's full middleware stack, and
//! `POST /floor`, which reads the body and answers 200 JSON without storing anything.

use std::net::SocketAddr;

use axum::routing::post;
use opshub::config::{Config, Flags};
use opshub::webhook_log::model::NewSource;
use opshub::webhook_log::verify::Verifier;

async fn floor(body: axum::body::Bytes) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "received": body.len() }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(&Flags::default())?;
    // Logging as `opshub serve` has it (OPSHUB_LOG, default info), so floors and ingest
    // pay for the same request spans as production.
    opshub::telemetry::init(&config.log, config.log_format);
    let listen = config.listen.clone();
    let app = opshub::app::App::build(config).await?;
    let state = app.state.clone();
    let bench = NewSource {
        name: "bench".into(),
        verifier: Verifier::None,
        secret: None,
        redact_headers: Vec::new(),
        max_body_bytes: None,
        reject_invalid: false,
    };
    // A second run on the same database finds the source already there.
    let _ = opshub::webhook_log::create_source(&state.db, &state.keys, bench).await;
    let router = axum::Router::new()
        .route("/floor", post(floor))
        .merge(app.router);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
