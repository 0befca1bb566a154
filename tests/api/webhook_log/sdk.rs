//! Verifiers against the providers' own SDKs (PyPI `stripe`, `slack_sdk`,
//! `standardwebhooks`, installed by `tests/python/setup.sh` into `target/pyvenv`): requests
//! signed by the SDK verify `valid`; one flipped body byte, a stale timestamp or a wrong
//! secret verify `invalid`. Without the venv the test skips with a notice, except in CI.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use reqwest::Method;
use serde_json::{Value, json};

use super::{create_source, ingest};
use crate::helpers::{Backend, TestApp};

/// The venv's python, or `None` (with a notice) when `tests/python/setup.sh` has not run.
fn python() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").is_err(),
        "{} is missing: .ci/run must run tests/python/setup.sh first",
        path.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "note: provider SDK signature tests skip: run tests/python/setup.sh to install them"
    );
    None
}

/// Signs every request with the SDKs in one python run; headers per request, in order.
fn sign_with_sdks(python: &PathBuf, requests: &[Value]) -> Vec<Vec<(String, String)>> {
    let mut child = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sign.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let input = json!({ "requests": requests }).to_string();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python finished");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&out.stdout).expect("json");
    signed
        .into_iter()
        .map(|h| {
            h.into_iter()
                .map(|(k, v)| (k, v.as_str().expect("header text").to_string()))
                .collect()
        })
        .collect()
}

struct Case {
    scheme: &'static str,
    secret: &'static str,
}

const CASES: [Case; 3] = [
    Case {
        scheme: "stripe",
        secret: "whsec_stripe_literal_secret_not_base64",
    },
    Case {
        scheme: "slack",
        secret: "8f742231b10e8888abcd99yyyzzz85a5",
    },
    Case {
        scheme: "standard-webhooks",
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sdk_signatures_verify_and_tampering_does_not() {
    let Some(python) = python() else {
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let body = r#"{"type":"invoice.paid","note":"café ☕","amount":4200}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut requests = Vec::new();
    for c in &CASES {
        create_source(
            &app,
            json!({"name": c.scheme, "verifier": c.scheme, "secret": c.secret}),
        )
        .await;
        // Signed right; signed ten minutes ago; signed with another secret.
        let wrong = if c.scheme == "standard-webhooks" {
            "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        } else {
            "a-different-secret"
        };
        for (secret, ts) in [(c.secret, now), (c.secret, now - 600), (wrong, now)] {
            requests.push(json!({"scheme": c.scheme, "secret": secret, "body": body,
                                 "timestamp": ts, "id": "msg_2Lh9KRb0pzN8Qkq1"}));
        }
    }
    let signed = sign_with_sdks(&python, &requests);
    for (i, c) in CASES.iter().enumerate() {
        let post = |n: usize, body: Vec<u8>| {
            let headers: Vec<(&str, &str)> = signed[n]
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let app = &app;
            async move { ingest(app, Method::POST, c.scheme, &headers, body).await }
        };
        let status = |r: &crate::helpers::Resp| r.json["signatureStatus"].clone();
        let valid = post(i * 3, body.as_bytes().to_vec()).await;
        assert_eq!(status(&valid), "valid", "{}: {}", c.scheme, valid.text);
        let mut flipped = body.as_bytes().to_vec();
        flipped[10] ^= 0x01;
        let r = post(i * 3, flipped).await;
        assert_eq!(status(&r), "invalid", "{}: flipped byte", c.scheme);
        let r = post(i * 3 + 1, body.as_bytes().to_vec()).await;
        assert_eq!(status(&r), "invalid", "{}: stale", c.scheme);
        let r = post(i * 3 + 2, body.as_bytes().to_vec()).await;
        assert_eq!(status(&r), "invalid", "{}: wrong secret", c.scheme);
    }
    let invalid = app
        .get("/api/v1/webhook-logs?signatureStatus=invalid&limit=100")
        .await;
    let reasons: Vec<&str> = invalid.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["signatureReason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons.len(), 9, "every invalid request is logged too");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "timestamp_out_of_tolerance")
            .count(),
        3
    );
}
