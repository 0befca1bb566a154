//! Queries (filters, cursor paging) and replay to a URL.

use reqwest::Method;
use serde_json::json;

use super::{create_source, ingest, verify};
use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

backend_tests!(
    queries_filter_and_paginate,
    replay_sends_the_stored_request_and_leaves_the_row_unchanged,
);

async fn queries_filter_and_paginate(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(&app, json!({"name": "a", "verifier": "none"})).await;
    create_source(&app, json!({"name": "b", "verifier": "none"})).await;
    for i in 0..5 {
        let body = if i % 2 == 0 {
            format!("has needle {i}")
        } else {
            format!("plain {i}")
        };
        ingest(&app, Method::POST, "a", &[], body.into_bytes())
            .await
            .assert_status(200);
    }
    ingest(&app, Method::PUT, "b", &[], b"needle in b".to_vec())
        .await
        .assert_status(200);
    assert_eq!(
        seqs(&app, "/api/v1/webhook-logs?source=a").await,
        vec![5, 4, 3, 2, 1]
    );
    assert_eq!(seqs(&app, "/api/v1/webhook-logs?method=put").await, vec![6]);
    assert_eq!(
        seqs(&app, "/api/v1/webhook-logs?q=needle").await,
        vec![6, 5, 3, 1]
    );
    assert_eq!(
        seqs(&app, "/api/v1/webhook-logs?q=needle&source=a").await,
        vec![5, 3, 1]
    );
    assert_eq!(
        seqs(&app, "/api/v1/webhook-logs?signatureStatus=valid").await,
        Vec::<i64>::new()
    );
    let all = app.get("/api/v1/webhook-logs").await;
    let items = all.json["items"].as_array().expect("items");
    assert!(items[0].get("body").is_none(), "lists leave bodies out");
    let t3 = items.iter().find(|i| i["seq"] == 3).expect("row 3")["receivedAt"]
        .as_str()
        .expect("ts")
        .to_string();
    let t5 = items.iter().find(|i| i["seq"] == 5).expect("row 5")["receivedAt"]
        .as_str()
        .expect("ts")
        .to_string();
    let within = seqs(
        &app,
        &format!("/api/v1/webhook-logs?source=a&from={t3}&to={t5}"),
    )
    .await;
    assert_eq!(within, vec![4, 3]);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/webhook-logs?limit=4&cursor={c}"),
            None => "/api/v1/webhook-logs?limit=4".to_string(),
        };
        let page = app.get(&path).await;
        seen.extend(
            page.json["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["seq"].as_i64().expect("seq")),
        );
        match page.json["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec![6, 5, 4, 3, 2, 1]);
    app.get("/api/v1/webhook-logs?signatureStatus=maybe")
        .await
        .assert_error(400, "invalid_filter");
    app.get("/api/v1/webhook-logs?from=yesterday")
        .await
        .assert_error(400, "invalid_filter");
    app.get("/api/v1/webhook-logs?cursor=zzz")
        .await
        .assert_error(400, "invalid_cursor");
}

async fn seqs(app: &TestApp, path: &str) -> Vec<i64> {
    let r = app.get(path).await;
    r.assert_status(200);
    r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["seq"].as_i64().expect("seq"))
        .collect()
}

async fn replay_sends_the_stored_request_and_leaves_the_row_unchanged(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, &[("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true")]).await
    else {
        return;
    };
    let (url, mut received) = receiver().await;
    create_source(&app, json!({"name": "s", "verifier": "none"})).await;
    let r = ingest(
        &app,
        Method::PATCH,
        "s",
        &[("authorization", "Bearer x"), ("x-event", "e1")],
        b"payload".to_vec(),
    )
    .await;
    let id = r.json["id"].as_str().expect("id").to_string();
    let before = app.get(&format!("/api/v1/webhook-logs/{id}")).await.text;
    let done = app
        .post(
            &format!("/api/v1/webhook-logs/{id}/replay"),
            json!({"url": url}),
        )
        .await;
    done.assert_status(201);
    assert_eq!(done.json["status"], 204);
    let (method, headers, body) = received.recv().await.expect("delivered");
    assert_eq!(
        (method.as_str(), body.as_slice()),
        ("PATCH", b"payload".as_slice())
    );
    assert_eq!(headers.get("x-event").map(String::as_str), Some("e1"));
    assert_eq!(headers.get("x-opshub-replay-of"), Some(&id));
    assert!(
        !headers.contains_key("authorization"),
        "redacted headers are not replayed"
    );
    let after = app.get(&format!("/api/v1/webhook-logs/{id}")).await.text;
    assert_eq!(before, after, "the logged row never changes");
    let list = app.get(&format!("/api/v1/webhook-logs/{id}/replay")).await;
    assert_eq!(list.json.as_array().expect("replays").len(), 1);
    assert_eq!(verify(&app).await["ok"], true);

    let strict = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    create_source(&strict, json!({"name": "s", "verifier": "none"})).await;
    let r = ingest(&strict, Method::POST, "s", &[], b"x".to_vec()).await;
    let id = r.json["id"].as_str().expect("id");
    strict
        .post(
            &format!("/api/v1/webhook-logs/{id}/replay"),
            json!({"url": url}),
        )
        .await
        .assert_error(422, "replay_target_forbidden");
    strict
        .post(
            &format!("/api/v1/webhook-logs/{id}/replay"),
            json!({"url": "ftp://example.com/"}),
        )
        .await
        .assert_error(422, "invalid_replay_url");
}

type Received = (String, std::collections::HashMap<String, String>, Vec<u8>);

/// A tiny receiver on a loopback port that reports each request it gets.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = move |req: axum::extract::Request| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            tx.send((parts.method.to_string(), headers, bytes.to_vec()))
                .ok();
            axum::http::StatusCode::NO_CONTENT
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let router = axum::Router::new().fallback(handler);
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    (url, rx)
}
