//! Resource limits (issue 9): a receiver that never answers and a flood of ingests must
//! not starve the API. Requests time out after 10 s here, so a starved API would answer
//! 503 `timeout` (or not at all) instead of 2xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

backend_tests!(a_receiver_that_never_answers_and_an_ingest_flood_do_not_starve_the_api);

/// Accepts connections and holds them open without ever answering; counts them.
async fn black_hole() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted, task)
}

async fn a_receiver_that_never_answers_and_an_ingest_flood_do_not_starve_the_api(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        &[
            ("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OPSHUB_WEBHOOK_TIMEOUT_SECS", "30"),
            ("OPSHUB_WEBHOOK_WORKERS", "2"),
            ("OPSHUB_WEBHOOK_CONCURRENCY", "32"),
            ("OPSHUB_REQUEST_TIMEOUT_SECS", "10"),
        ],
    )
    .await
    else {
        return;
    };
    let (url, accepted, hole) = black_hole().await;
    app.post(
        "/api/v1/webhooks",
        json!({"name": "slow", "endpoint": url, "events": ["slow.*"]}),
    )
    .await
    .assert_status(201);
    app.post(
        "/api/v1/ingest-sources",
        json!({"name": "flood", "verifier": "none"}),
    )
    .await
    .assert_status(201);
    for i in 0..100 {
        app.post(
            "/api/v1/events",
            json!({"type": "slow.event", "payload": {"i": i}}),
        )
        .await
        .assert_status(202);
    }
    // Every delivery slot (2 loops × 32) is now stuck on the receiver.
    while accepted.load(Ordering::SeqCst) < 64 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // An ingest flood at the same time as API reads and writes.
    let client = reqwest::Client::new();
    let base = app.base.clone();
    let flood = (0..400).map(|i| {
        client
            .post(format!("{base}/ingest/flood"))
            .body(format!("{{\"i\":{i}}}"))
            .send()
    });
    let app = &app;
    let api = (0..40).map(|i| async move {
        let put = app
            .req(reqwest::Method::PUT, &format!("/api/v1/kv/limits.k{i}"))
            .json(&json!({"type": "integer", "value": i}))
            .send()
            .await
            .expect("put");
        let get = app.get(&format!("/api/v1/kv/limits.k{i}")).await;
        (put.status().as_u16(), get.status, get.json["value"].clone())
    });
    let (flooded, answers) = tokio::join!(
        futures_util::future::join_all(flood),
        futures_util::future::join_all(api)
    );
    for (i, (put, get, value)) in answers.into_iter().enumerate() {
        assert!(put == 200 || put == 201, "PUT answered {put}");
        assert_eq!((get, value), (200, json!(i)), "GET while deliveries hang");
    }
    let stored = flooded
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200))
        .count();
    assert_eq!(stored, 400, "every ingest of the flood was stored");
    // Closing the held connections fails the hanging attempts now, so shutdown need not
    // wait out their time limit.
    hole.abort();
}
