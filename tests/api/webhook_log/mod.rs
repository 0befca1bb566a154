//! The incoming webhook log on every backend. This file: shared helpers, sources, capture
//! of exact bytes, limits and signature status. `chain.rs`: append-only enforcement,
//! tampering, pruning, several writers. `query.rs`: filters, paging, replay. `crash.rs`:
//! SIGKILL mid-stream through the built binary.

mod chain;
mod cli;
mod crash;
mod query;
mod sdk;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp};

backend_tests!(
    sources_crud_validates_and_never_returns_the_secret,
    captures_exact_bytes_headers_and_metadata,
    headers_keep_their_arrival_order_across_names,
    unknown_source_is_404_and_oversized_body_is_413,
    signatures_are_recorded_and_reject_invalid_answers_401_but_logs,
);

pub async fn create_source(app: &TestApp, body: Value) -> Value {
    let r = app.post("/api/v1/ingest-sources", body).await;
    r.assert_status(201);
    r.json.clone()
}

/// Sends `body` to `/ingest/{path}` with `headers`, without a token.
pub async fn ingest(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}/ingest/{path}", app.base))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Resp::from(req.send().await.expect("sent")).await
}

pub fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

pub async fn exec(app: &TestApp, sql: &str) -> Result<u64, sqlx::Error> {
    let db = &app.state.db;
    sqlx::raw_sql(db.sql_dynamic(sql))
        .execute(db.pool())
        .await
        .map(|r| r.rows_affected())
}

pub async fn verify(app: &TestApp) -> Value {
    let r = app.get("/api/v1/webhook-logs/verify").await;
    r.assert_status(200);
    r.json.clone()
}

async fn sources_crud_validates_and_never_returns_the_secret(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let secret = "gh-secret-value-4711";
    let created = create_source(
        &app,
        json!({"name": "github", "verifier": "github", "secret": secret,
               "redactHeaders": ["X-Api-Key"], "maxBodyBytes": 2048}),
    )
    .await;
    assert_eq!(created["hasSecret"], true);
    assert_eq!(created["redactHeaders"], json!(["x-api-key"]));
    assert_eq!(created["maxBodyBytes"], 2048);
    assert_eq!(created["rejectInvalid"], false);
    assert!(created.get("secret").is_none());
    let list = app.get("/api/v1/ingest-sources").await;
    let one = app.get("/api/v1/ingest-sources/github").await;
    for r in [&list, &one] {
        r.assert_status(200);
        assert!(!r.text.contains(secret), "the secret is never returned");
    }
    let stored: String = sqlx::query_scalar(
        app.state
            .db
            .sql("SELECT secret FROM opshub_ingest_sources WHERE name = 'github'"),
    )
    .fetch_one(app.state.db.pool())
    .await
    .expect("row");
    assert!(
        stored.starts_with("v1:") && !stored.contains(secret),
        "encrypted at rest"
    );

    app.post(
        "/api/v1/ingest-sources",
        json!({"name": "github", "verifier": "none"}),
    )
    .await
    .assert_error(409, "source_exists");
    for bad in [
        json!({"name": "x", "verifier": "stripe"}),
        json!({"name": "bad name", "verifier": "none"}),
        json!({"name": "x", "verifier": "none", "maxBodyBytes": 0}),
        json!({"name": "x", "verifier": "none", "redactHeaders": ["a b"]}),
    ] {
        app.post("/api/v1/ingest-sources", bad)
            .await
            .assert_error(422, "invalid_source");
    }
    app.post(
        "/api/v1/ingest-sources",
        json!({"name": "x", "verifier": "md5"}),
    )
    .await
    .assert_error(422, "invalid_body");

    let id = created["id"].as_str().expect("id");
    let patched = Resp::from(
        app.req(Method::PATCH, &format!("/api/v1/ingest-sources/{id}"))
            .json(&json!({"rejectInvalid": true, "name": "gh"}))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    patched.assert_status(200);
    assert_eq!(patched.json["rejectInvalid"], true);
    assert_eq!(patched.json["hasSecret"], true, "absent secret is kept");
    let deleted = Resp::from(
        app.req(Method::DELETE, "/api/v1/ingest-sources/gh")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    deleted.assert_status(200);
    app.get("/api/v1/ingest-sources/gh")
        .await
        .assert_error(404, "source_not_found");
}

/// Sends raw HTTP/1.1 requests on one keep-alive connection and returns the answers' bodies.
async fn raw_requests(base: &str, requests: &[Vec<u8>]) -> Vec<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut answers = Vec::new();
    for req in requests {
        stream.write_all(req).await.expect("write");
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "connection closed early: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().expect("length"))
                    })
                    .expect("content-length");
                if buf.len() >= end + 4 + len {
                    answers
                        .push(serde_json::from_slice(&buf[end + 4..end + 4 + len]).expect("json"));
                    break;
                }
            }
        }
    }
    answers
}

/// hyper groups headers by name; the log must keep them as they arrived, even on a
/// keep-alive connection whose earlier body holds something that looks like a head.
async fn headers_keep_their_arrival_order_across_names(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(&app, json!({"name": "ord", "verifier": "none"})).await;
    let fake = "POST /ingest/ord HTTP/1.1\r\nX-B: 9\r\n\r\n";
    let first = format!(
        "POST /ingest/ord HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{fake}",
        fake.len()
    );
    let second = "POST /ingest/ord?q=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\nX-Custom-Case: v\r\nContent-Length: 2\r\n\r\n{}";
    let answers = raw_requests(&app.base, &[first.into_bytes(), second.as_bytes().to_vec()]).await;
    let row = app
        .get(&format!(
            "/api/v1/webhook-logs/{}",
            answers[1]["id"].as_str().expect("id")
        ))
        .await;
    row.assert_status(200);
    assert_eq!(
        row.json["headers"],
        json!([
            ["host", "h"],
            ["x-a", "1"],
            ["x-b", "2"],
            ["x-a", "3"],
            ["x-custom-case", "v"],
            ["content-length", "2"]
        ]),
        "arrival order, names lowercased"
    );
    let first_row = app
        .get(&format!(
            "/api/v1/webhook-logs/{}",
            answers[0]["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(first_row.json["body"], fake, "the body is stored as sent");
}

async fn captures_exact_bytes_headers_and_metadata(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(
        &app,
        json!({"name": "raw", "verifier": "none", "redactHeaders": ["x-api-key"]}),
    )
    .await;
    let body: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let req = reqwest::Client::new()
        .put(format!("{}/ingest/raw/a/b%20c?x=1&y=%2F", app.base))
        .header("content-type", "application/x-custom; charset=binary")
        .header("x-dup", "first")
        .header("authorization", "Bearer very-secret")
        .header("cookie", "session=abc")
        .header("X-Api-Key", "key-123")
        .header("x-dup", "second")
        .body(body.clone());
    let r = Resp::from(req.send().await.expect("sent")).await;
    r.assert_status(200);
    assert_eq!(r.json["seq"], 1);
    assert_eq!(r.json["signatureStatus"], "unchecked");
    let id = r.json["id"].as_str().expect("id").to_string();

    let row = app.get(&format!("/api/v1/webhook-logs/{id}")).await;
    row.assert_status(200);
    let j = &row.json;
    assert_eq!(j["method"], "PUT");
    assert_eq!(j["path"], "/ingest/raw/a/b%20c");
    assert_eq!(j["query"], "x=1&y=%2F");
    assert_eq!(j["source"], "raw");
    assert_eq!(j["bodySize"], 512);
    assert_eq!(j["contentType"], "application/x-custom; charset=binary");
    assert!(
        j["remoteAddr"]
            .as_str()
            .expect("addr")
            .starts_with("127.0.0.1:")
    );
    assert!(j["receivedAt"].as_str().expect("ts").ends_with('Z'));
    assert!(j["body"].is_null(), "binary bodies are not shown as text");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(j["bodyBase64"].as_str().expect("b64"))
        .expect("base64");
    assert_eq!(decoded, body);
    let headers = j["headers"].as_array().expect("headers");
    let get = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].as_str().expect("value"))
            .collect()
    };
    assert_eq!(get("x-dup"), vec!["first", "second"], "duplicates in order");
    assert_eq!(get("authorization"), vec!["[redacted]"]);
    assert_eq!(get("cookie"), vec!["[redacted]"]);
    assert_eq!(get("x-api-key"), vec!["[redacted]"]);
    assert!(!row.text.contains("very-secret") && !row.text.contains("key-123"));

    let raw = app
        .req(Method::GET, &format!("/api/v1/webhook-logs/{id}/raw"))
        .send()
        .await
        .expect("sent");
    assert_eq!(raw.status(), 200);
    assert_eq!(
        raw.headers()["content-type"],
        "application/x-custom; charset=binary"
    );
    assert_eq!(raw.bytes().await.expect("bytes").to_vec(), body);

    for (i, method) in [Method::GET, Method::DELETE, Method::PATCH]
        .into_iter()
        .enumerate()
    {
        let r = ingest(&app, method.clone(), "raw", &[], Vec::new()).await;
        r.assert_status(200);
        assert_eq!(r.json["seq"], i as i64 + 2);
        let row = app
            .get(&format!(
                "/api/v1/webhook-logs/{}",
                r.json["id"].as_str().expect("id")
            ))
            .await;
        assert_eq!(row.json["method"], method.as_str());
        assert_eq!(row.json["body"], "");
    }
}

async fn unknown_source_is_404_and_oversized_body_is_413(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    ingest(&app, Method::POST, "nope", &[], b"x".to_vec())
        .await
        .assert_error(404, "source_not_found");
    ingest(&app, Method::POST, "nope/deeper/path", &[], Vec::new())
        .await
        .assert_error(404, "source_not_found");
    create_source(
        &app,
        json!({"name": "small", "verifier": "none", "maxBodyBytes": 10}),
    )
    .await;
    ingest(&app, Method::POST, "small", &[], vec![b'a'; 10])
        .await
        .assert_status(200);
    let r = ingest(&app, Method::POST, "small", &[], vec![b'a'; 11]).await;
    r.assert_error(413, "payload_too_large");
    assert_eq!(r.json["error"]["details"]["limitBytes"], 10);
    // Chunked, so no length is announced: the limit holds while reading.
    let chunked = chunked_post(&app.base, "/ingest/small", &[b"aaaaaaaa", b"aaaaaaaa"]).await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("payload_too_large"), "{chunked}");
    // A source whose limit is above the API's global 1 MiB limit takes bigger bodies.
    create_source(
        &app,
        json!({"name": "big", "verifier": "none", "maxBodyBytes": 3_000_000}),
    )
    .await;
    ingest(&app, Method::POST, "big", &[], vec![7u8; 2_000_000])
        .await
        .assert_status(200);
    let list = app.get("/api/v1/webhook-logs").await;
    assert_eq!(
        list.json["items"].as_array().expect("items").len(),
        2,
        "rejected bodies are not logged"
    );
}

/// A raw HTTP/1.1 chunked POST; returns the whole response text.
async fn chunked_post(base: &str, path: &str, chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok();
    String::from_utf8_lossy(&out).into_owned()
}

async fn signatures_are_recorded_and_reject_invalid_answers_401_but_logs(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let secret = "It's a Secret to Everybody";
    create_source(
        &app,
        json!({"name": "gh", "verifier": "github", "secret": secret}),
    )
    .await;
    let body = br#"{"action":"opened"}"#.to_vec();
    let good = format!("sha256={}", hmac_hex(secret.as_bytes(), &[&body]));
    let r = ingest(
        &app,
        Method::POST,
        "gh",
        &[("x-hub-signature-256", &good)],
        body.clone(),
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json["signatureStatus"], "valid");
    let mut flipped = body.clone();
    flipped[3] ^= 1;
    let r = ingest(
        &app,
        Method::POST,
        "gh",
        &[("x-hub-signature-256", &good)],
        flipped.clone(),
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json["signatureStatus"], "invalid");

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let stripe_secret = "whsec_test_literal";
    create_source(
        &app,
        json!({"name": "stripe", "verifier": "stripe", "secret": stripe_secret, "rejectInvalid": true}),
    )
    .await;
    let sign = |t: i64, key: &str| {
        let ts = t.to_string();
        format!(
            "t={ts},v1={}",
            hmac_hex(key.as_bytes(), &[ts.as_bytes(), b".", &body])
        )
    };
    let ok = ingest(
        &app,
        Method::POST,
        "stripe",
        &[("stripe-signature", &sign(now, stripe_secret))],
        body.clone(),
    )
    .await;
    ok.assert_status(200);
    assert_eq!(ok.json["signatureStatus"], "valid");
    for (header, reason) in [
        (sign(now - 600, stripe_secret), "timestamp_out_of_tolerance"),
        (sign(now, "whsec_wrong"), "signature_mismatch"),
    ] {
        let r = ingest(
            &app,
            Method::POST,
            "stripe",
            &[("stripe-signature", &header)],
            body.clone(),
        )
        .await;
        r.assert_error(401, "signature_invalid");
        assert_eq!(r.json["error"]["details"]["reason"], reason);
        let id = r.json["error"]["details"]["id"]
            .as_str()
            .expect("logged id");
        let row = app.get(&format!("/api/v1/webhook-logs/{id}")).await;
        row.assert_status(200);
        assert_eq!(row.json["signatureStatus"], "invalid");
        assert_eq!(row.json["signatureReason"], reason);
    }
    let invalid = app
        .get("/api/v1/webhook-logs?signatureStatus=invalid")
        .await;
    assert_eq!(invalid.json["items"].as_array().expect("items").len(), 3);
}
