//! Outbound webhooks: validation, encrypted secrets, routing, the outbox and idempotency,
//! signed delivery to a real receiver on loopback, retries on a controlled clock,
//! Retry-After, 410, auto-disable, manual retry and recovery, SSRF refusals, digest/verify.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use opshub::webhooks::{sign, worker};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;
use time::OffsetDateTime;

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp};

backend_tests!(
    creates_validates_and_never_shows_the_secret_again,
    publishes_in_an_outbox_with_idempotent_ids,
    concurrent_publishes_share_commits_and_keep_ids_unique,
    delivers_signed_standard_webhooks_to_the_receiver,
    retries_on_the_schedule_and_logs_every_attempt,
    honours_retry_after_and_disables_on_410,
    disables_an_endpoint_failing_continuously_for_five_days,
    manual_retry_and_time_range_recovery_requeue_failed_deliveries,
    rotated_secret_signs_beside_the_new_one,
    hands_local_publishes_to_the_delivery_loop_without_a_claim,
    publishes_beyond_free_slots_wait_in_the_table_for_a_claim,
    a_success_right_after_a_failure_clears_the_failure_clock,
    publishes_route_to_endpoints_another_instance_changed,
);

/// One scripted answer: status and extra headers.
type Answer = (u16, Vec<(&'static str, String)>);

/// A receiver on loopback that records every request and answers from a script (then 200).
#[derive(Clone, Default)]
pub struct Receiver {
    pub seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    pub script: Arc<Mutex<VecDeque<Answer>>>,
    pub url: String,
    /// Signalled on every request, so a test can await progress instead of sleeping.
    pub arrived: Arc<tokio::sync::Notify>,
    /// Held by a test to keep the receiver from answering (requests are recorded first).
    pub held: Arc<tokio::sync::Mutex<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        opshub::webhooks::deliver::install_tls_provider();
        let mut r = Receiver::default();
        let state = r.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                state.seen.lock().expect("lock").push((headers, body));
                state.arrived.notify_waiters();
                drop(state.held.lock().await);
                let (status, extra) = state
                    .script
                    .lock()
                    .expect("lock")
                    .pop_front()
                    .unwrap_or((200, vec![]));
                let mut resp = axum::response::Response::new(axum::body::Body::from(format!(
                    "answer {status}"
                )));
                *resp.status_mut() = StatusCode::from_u16(status).expect("status");
                for (k, v) in extra {
                    resp.headers_mut().insert(k, v.parse().expect("header"));
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        r.url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
        r
    }

    pub fn answer(&self, status: u16, headers: Vec<(&'static str, String)>) {
        self.script
            .lock()
            .expect("lock")
            .push_back((status, headers));
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// How many times each message id (webhook-id) arrived.
    pub fn per_id(&self) -> std::collections::HashMap<String, usize> {
        let mut m = std::collections::HashMap::new();
        for (h, _) in self.seen.lock().expect("lock").iter() {
            let id = h
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            *m.entry(id).or_default() += 1;
        }
        m
    }

    /// Waits (without sleeping) until `done` holds, or panics after `within`.
    pub async fn wait_until(&self, within: std::time::Duration, done: impl Fn(&Receiver) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                assert!(
                    done(self),
                    "not done within {within:?}; {} requests seen",
                    self.count()
                );
                return;
            }
        }
    }
}

/// An app whose worker is driven by the test, allowed to reach the loopback receiver.
async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(
        backend,
        &[
            ("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OPSHUB_WEBHOOK_WORKERS", "0"),
        ],
    )
    .await
}

/// An app with running delivery loops (`workers` loops of `slots` slots each).
async fn spawn_running(backend: Backend, workers: &str, slots: &str) -> Option<TestApp> {
    TestApp::spawn_with(
        backend,
        &[
            ("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OPSHUB_WEBHOOK_WORKERS", workers),
            ("OPSHUB_WEBHOOK_CONCURRENCY", slots),
        ],
    )
    .await
}

/// (handed, claimed) attempts as `/metrics` reports them.
async fn attempt_counts(app: &TestApp) -> (u64, u64) {
    let text = app.get("/metrics").await.text;
    let read = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    (
        read("opshub_webhook_attempts_handed_total "),
        read("opshub_webhook_attempts_claimed_total "),
    )
}

async fn create(app: &TestApp, url: &str, events: Value) -> Value {
    let r = app.post("/api/v1/webhooks", json!({"name": format!("hook-{}", uuid::Uuid::now_v7()), "endpoint": url, "events": events})).await;
    r.assert_status(201);
    r.json
}

async fn publish(app: &TestApp, ty: &str) -> Value {
    let r = app
        .post("/api/v1/events", json!({"type": ty, "payload": {"n": 1}}))
        .await;
    r.assert_status(202);
    r.json
}

async fn round(app: &TestApp, at: OffsetDateTime) -> usize {
    worker::run_once(&app.state, at)
        .await
        .expect("worker round")
}

fn later(secs: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::seconds(secs)
}

async fn creates_validates_and_never_shows_the_secret_again(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ok = json!({"name": "billing", "endpoint": "https://hooks.example.com/in", "events": ["invoice.*"]});
    let created = app.post("/api/v1/webhooks", ok.clone()).await;
    created.assert_status(201);
    let secret = created.json["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"));
    let id = created.json["id"].as_str().expect("id").to_string();
    for path in [
        "/api/v1/webhooks".to_string(),
        format!("/api/v1/webhooks/{id}"),
    ] {
        let r = app.get(&path).await;
        assert!(
            !r.text.contains(&secret) && !r.text.contains("secret"),
            "{path}: {}",
            r.text
        );
    }
    let db = &app.state.db;
    let ct: String = sqlx::query(db.sql("SELECT secret_ct FROM opshub_webhooks WHERE id = ?"))
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .expect("row")
        .get(0);
    assert!(
        ct.starts_with("v1:") && !ct.contains(&secret[6..]),
        "encrypted at rest"
    );
    app.post("/api/v1/webhooks", ok)
        .await
        .assert_error(409, "webhook_name_taken");
    let bad = |patch: Value| {
        let mut b =
            json!({"name": "x", "endpoint": "https://hooks.example.com/in", "events": ["a"]});
        for (k, v) in patch.as_object().expect("obj") {
            b[k] = v.clone();
        }
        b
    };
    for (body, field) in [
        (bad(json!({"endpoint": "not a url"})), "endpoint"),
        (bad(json!({"endpoint": "ftp://example.com/x"})), "endpoint"),
        (bad(json!({"events": []})), "events"),
        (bad(json!({"events": ["user..created"]})), "events"),
        (
            bad(json!({"headers": {"webhook-signature": "x"}})),
            "headers",
        ),
        (bad(json!({"secret": "not-whsec"})), "secret"),
        (bad(json!({"metadata": [1]})), "metadata"),
        (
            bad(json!({"endpoint": "http://127.0.0.1:8080/x"})),
            "endpoint",
        ),
        (
            bad(json!({"endpoint": "http://169.254.169.254/latest"})),
            "endpoint",
        ),
        (bad(json!({"endpoint": "http://10.1.2.3/x"})), "endpoint"),
        (bad(json!({"endpoint": "http://[fd00::1]/x"})), "endpoint"),
        (bad(json!({"endpoint": "http://100.64.0.1/x"})), "endpoint"),
        (bad(json!({"endpoint": "http://localhost:9/x"})), "endpoint"),
    ] {
        let r = app.post("/api/v1/webhooks", body).await;
        r.assert_error(422, "invalid_webhook");
        assert_eq!(r.json["error"]["details"]["field"], field, "{}", r.text);
    }
    app.get("/api/v1/webhooks/nope")
        .await
        .assert_error(404, "webhook_not_found");
    assert_eq!(
        app.get("/api/v1/webhooks").await.json["items"]
            .as_array()
            .expect("items")
            .len(),
        1,
        "nothing else written"
    );
    let patched = Resp::from(
        app.req(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
            .json(&json!({"events": ["*"]}))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(patched.json["events"], json!(["*"]));
    let gone = Resp::from(
        app.req(Method::DELETE, &format!("/api/v1/webhooks/{id}"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(gone.status, 204);
}

/// Publishes arriving together are committed in shared transactions; a batch holding the
/// same id several times (and ids already stored) must still create each event once.
async fn concurrent_publishes_share_commits_and_keep_ids_unique(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    create(&app, &rx.url, json!(["load.*"])).await;
    let stored = app
        .post(
            "/api/v1/events",
            json!({"type": "load.old", "payload": {}, "id": "evt-old"}),
        )
        .await;
    stored.assert_status(202);
    let sends = (0..90).map(|i| {
        let id = match i % 3 {
            0 => Value::Null,
            1 => json!("evt-same"),
            _ => json!("evt-old"),
        };
        app.post(
            "/api/v1/events",
            json!({"type": "load.event", "payload": {"i": i}, "id": id}),
        )
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut fresh = 0;
    let mut same_created = std::collections::BTreeSet::new();
    for (i, a) in answers.iter().enumerate() {
        let duplicate = a.json["duplicate"] == json!(true);
        a.assert_status(if duplicate { 200 } else { 202 });
        match i % 3 {
            0 => assert!(!duplicate, "a fresh id is never a duplicate: {:?}", a.json),
            1 => {
                same_created.insert(a.json["createdAt"].to_string());
            }
            _ => assert_eq!(
                (duplicate, &a.json["createdAt"]),
                (true, &stored.json["createdAt"]),
                "an id stored before the batch"
            ),
        }
        if !duplicate {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 31, "30 fresh ids plus the first evt-same");
    assert_eq!(
        same_created.len(),
        1,
        "every evt-same answer names one event"
    );
    let all = app.get("/api/v1/deliveries?limit=1000").await;
    assert_eq!(
        all.json["items"].as_array().expect("items").len(),
        32,
        "one delivery per stored event"
    );
}

async fn publishes_in_an_outbox_with_idempotent_ids(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    create(&app, &rx.url, json!(["user.*"])).await;
    create(&app, &rx.url, json!(["user.*.deleted", "order.created"])).await;
    let inactive = create(&app, &rx.url, json!(["*"])).await;
    let id = inactive["id"].as_str().expect("id");
    app.req(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
        .json(&json!({"isActive": false}))
        .send()
        .await
        .expect("sent");
    let routed = app
        .post(
            "/api/v1/events/route",
            json!({"type": "user.profile.deleted"}),
        )
        .await;
    assert_eq!(routed.json.as_array().expect("list").len(), 2);
    assert_eq!(
        app.post("/api/v1/events/route", json!({"type": "user"}))
            .await
            .json,
        json!([]),
        "user.* needs a segment"
    );
    let first = app
        .post(
            "/api/v1/events",
            json!({"type": "user.created", "payload": {"a": 1}, "id": "evt-42"}),
        )
        .await;
    first.assert_status(202);
    assert_eq!(
        (
            first.json["deliveries"].clone(),
            first.json["duplicate"].clone()
        ),
        (json!(1), json!(false))
    );
    let again = app
        .post(
            "/api/v1/events",
            json!({"type": "user.created", "payload": {"a": 2}, "id": "evt-42"}),
        )
        .await;
    again.assert_status(200);
    assert_eq!(
        (
            again.json["duplicate"].clone(),
            again.json["createdAt"].clone()
        ),
        (json!(true), first.json["createdAt"].clone())
    );
    let all = app.get("/api/v1/deliveries").await;
    assert_eq!(
        all.json["items"].as_array().expect("items").len(),
        1,
        "a repeat creates no delivery"
    );
    for bad in [
        json!({"type": "a..b", "payload": {}}),
        json!({"type": "a.*", "payload": {}}),
        json!({"type": "a", "payload": {}, "id": "sp ace"}),
    ] {
        app.post("/api/v1/events", bad)
            .await
            .assert_error(422, "invalid_event");
    }
    app.post("/api/v1/events", json!({"payload": {}}))
        .await
        .assert_error(422, "invalid_body");
}

async fn delivers_signed_standard_webhooks_to_the_receiver(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let hook = create(&app, &rx.url, json!(["invoice.paid"])).await;
    let key = sign::parse_secret(hook["secret"].as_str().expect("secret")).expect("key");
    let event = publish(&app, "invoice.paid").await;
    assert_eq!(round(&app, later(0)).await, 1);
    let seen = rx.seen.lock().expect("lock").clone();
    let (headers, body) = &seen[0];
    let h = |n: &str| {
        headers
            .get(n)
            .expect(n)
            .to_str()
            .expect("ascii")
            .to_string()
    };
    assert_eq!(h("webhook-id"), event["id"].as_str().expect("id"));
    assert_eq!(h("content-type"), "application/json");
    let now = OffsetDateTime::now_utc().unix_timestamp();
    sign::verify(
        &[key.as_slice()],
        &h("webhook-id"),
        &h("webhook-timestamp"),
        &h("webhook-signature"),
        body.as_bytes(),
        now,
        300,
    )
    .expect("the signature verifies");
    let v: Value = serde_json::from_str(body).expect("json body");
    assert_eq!(
        (v["type"].clone(), v["data"].clone()),
        (json!("invoice.paid"), json!({"n": 1}))
    );
    assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let d = app.get("/api/v1/deliveries?status=succeeded").await;
    let did = d.json["items"][0]["id"]
        .as_str()
        .expect("delivery")
        .to_string();
    let detail = app.get(&format!("/api/v1/deliveries/{did}")).await;
    assert_eq!(detail.json["attemptsLog"][0]["statusCode"], 200);
    assert_eq!(detail.json["attemptsLog"][0]["responseBody"], "answer 200");
    assert_eq!(
        round(&app, later(3600)).await,
        0,
        "a delivered event is not sent again"
    );
}

async fn retries_on_the_schedule_and_logs_every_attempt(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    create(&app, &rx.url, json!(["*"])).await;
    rx.answer(500, vec![("x-debug", "boom".into())]);
    rx.answer(502, vec![]);
    publish(&app, "a.b").await;
    let t0 = OffsetDateTime::now_utc();
    assert_eq!(round(&app, t0).await, 1);
    // First retry after 5 s ± 20 %: not at +3.9 s, surely at +6.1 s.
    assert_eq!(
        round(&app, t0 + time::Duration::milliseconds(3900)).await,
        0
    );
    assert_eq!(
        round(&app, t0 + time::Duration::milliseconds(6100)).await,
        1
    );
    // Second retry after 5 min ± 20 %.
    let t1 = t0 + time::Duration::milliseconds(6100);
    assert_eq!(round(&app, t1 + time::Duration::seconds(239)).await, 0);
    assert_eq!(round(&app, t1 + time::Duration::seconds(361)).await, 1);
    assert_eq!(rx.count(), 3);
    let list = app.get("/api/v1/deliveries").await;
    let d = &list.json["items"][0];
    assert_eq!(
        (d["status"].clone(), d["attempts"].clone()),
        (json!("succeeded"), json!(3))
    );
    let detail = app
        .get(&format!(
            "/api/v1/deliveries/{}",
            d["id"].as_str().expect("id")
        ))
        .await;
    let log = detail.json["attemptsLog"].as_array().expect("log");
    assert_eq!(
        log.iter()
            .map(|a| a["statusCode"].as_i64().expect("code"))
            .collect::<Vec<_>>(),
        [500, 502, 200]
    );
    assert_eq!(log[0]["error"], "HTTP 500");
    assert!(
        log[0]["responseHeaders"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h[0] == "x-debug" && h[1] == "boom")
    );
    assert!(log.iter().all(|a| a["durationMs"].as_i64().is_some()));
}

async fn honours_retry_after_and_disables_on_410(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let hook = create(&app, &rx.url, json!(["*"])).await;
    rx.answer(503, vec![("retry-after", "120".into())]);
    publish(&app, "a").await;
    let t0 = OffsetDateTime::now_utc();
    round(&app, t0).await;
    assert_eq!(
        round(&app, t0 + time::Duration::seconds(100)).await,
        0,
        "Retry-After asked for 120 s"
    );
    rx.answer(410, vec![]);
    assert_eq!(round(&app, t0 + time::Duration::seconds(125)).await, 1);
    let w = app
        .get(&format!(
            "/api/v1/webhooks/{}",
            hook["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(w.json["isActive"], false);
    assert!(
        w.json["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{}",
        w.text
    );
    publish(&app, "a").await;
    assert_eq!(
        app.get("/api/v1/deliveries?status=pending").await.json["items"],
        json!([]),
        "disabled endpoints get nothing"
    );
}

async fn disables_an_endpoint_failing_continuously_for_five_days(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let hook = create(&app, &rx.url, json!(["*"])).await;
    for _ in 0..3 {
        rx.answer(500, vec![]);
    }
    publish(&app, "a").await;
    let t0 = OffsetDateTime::now_utc();
    round(&app, t0).await;
    round(&app, t0 + time::Duration::days(2)).await;
    let id = hook["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/api/v1/webhooks/{id}")).await.json["isActive"],
        true,
        "two days is not enough"
    );
    round(
        &app,
        t0 + time::Duration::days(5) + time::Duration::minutes(1),
    )
    .await;
    let w = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(w.json["isActive"], false);
    assert!(
        w.json["disabledReason"]
            .as_str()
            .is_some_and(|r| r.contains("5d") || r.contains("failed")),
        "{}",
        w.text
    );
    let re = Resp::from(
        app.req(Method::PATCH, &format!("/api/v1/webhooks/{id}"))
            .json(&json!({"isActive": true}))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(
        (
            re.json["isActive"].clone(),
            re.json["disabledReason"].clone()
        ),
        (json!(true), Value::Null)
    );
}

async fn manual_retry_and_time_range_recovery_requeue_failed_deliveries(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        &[
            ("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OPSHUB_WEBHOOK_WORKERS", "0"),
            ("OPSHUB_WEBHOOK_RETRY_SCHEDULE", "5s"),
        ],
    )
    .await
    else {
        return;
    };
    let rx = Receiver::start().await;
    create(&app, &rx.url, json!(["*"])).await;
    for _ in 0..4 {
        rx.answer(500, vec![]);
    }
    publish(&app, "a").await;
    publish(&app, "b").await;
    let t0 = OffsetDateTime::now_utc();
    round(&app, t0).await;
    round(&app, t0 + time::Duration::seconds(10)).await;
    let failed = app.get("/api/v1/deliveries?status=failed").await;
    let ids: Vec<String> = failed.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "one retry then failed: {}", failed.text);
    let r = app
        .post(&format!("/api/v1/deliveries/{}/retry", ids[0]), json!({}))
        .await;
    r.assert_status(202);
    assert_eq!(r.json["status"], "pending");
    app.post(&format!("/api/v1/deliveries/{}/retry", ids[0]), json!({}))
        .await
        .assert_error(409, "delivery_pending");
    app.post("/api/v1/deliveries/nope/retry", json!({}))
        .await
        .assert_error(404, "delivery_not_found");
    let since = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .expect("fmt");
    let rec = app
        .post("/api/v1/deliveries/recover", json!({"since": since}))
        .await;
    assert_eq!(rec.json["requeued"], 1, "the other failed one");
    app.post("/api/v1/deliveries/recover", json!({"since": "yesterday"}))
        .await
        .assert_error(422, "invalid_range");
    assert_eq!(round(&app, later(1)).await, 2);
    assert_eq!(
        app.get("/api/v1/deliveries?status=succeeded").await.json["items"]
            .as_array()
            .expect("items")
            .len(),
        2
    );
}

async fn rotated_secret_signs_beside_the_new_one(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let hook = create(&app, &rx.url, json!(["*"])).await;
    let old = sign::parse_secret(hook["secret"].as_str().expect("secret")).expect("key");
    let rotated = app
        .post(
            &format!(
                "/api/v1/webhooks/{}/rotate-secret",
                hook["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    rotated.assert_status(200);
    let new = sign::parse_secret(rotated.json["secret"].as_str().expect("secret")).expect("key");
    assert_ne!(old, new);
    publish(&app, "a").await;
    round(&app, later(0)).await;
    let (headers, body) = rx.seen.lock().expect("lock")[0].clone();
    let h = |n: &str| {
        headers
            .get(n)
            .expect(n)
            .to_str()
            .expect("ascii")
            .to_string()
    };
    let sig = h("webhook-signature");
    assert_eq!(
        sig.split(' ').count(),
        2,
        "two signatures during rotation: {sig}"
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for key in [&old, &new] {
        sign::verify(
            &[key.as_slice()],
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &sig,
            body.as_bytes(),
            now,
            300,
        )
        .expect("each key verifies");
    }
}

#[tokio::test]
async fn digest_reproduces_the_svix_test_vector_and_verify_checks_it() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let req = json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "payload": "{\"test\": 2432232314}",
        "id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "timestamp": 1614265330});
    let d = app.post("/api/v1/digest", req).await;
    d.assert_status(200);
    assert_eq!(
        d.json["headers"]["webhook-signature"],
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    let fresh = app
        .post(
            "/api/v1/digest",
            json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "payload": {"a": 1}}),
        )
        .await;
    let headers = fresh.json["headers"].clone();
    let check = |payload: &str| json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "headers": headers, "payload": payload});
    assert_eq!(
        app.post("/api/v1/verify", check("{\"a\":1}")).await.json["valid"],
        true
    );
    let tampered = app.post("/api/v1/verify", check("{\"a\":2}")).await;
    assert_eq!(tampered.json["valid"], false);
    assert!(tampered.json["reason"].is_string());
    app.post("/api/v1/digest", json!({"payload": {}}))
        .await
        .assert_error(422, "invalid_digest");
    app.post(
        "/api/v1/digest",
        json!({"secret": "whsec_x", "payload": {}}),
    )
    .await
    .assert_error(422, "invalid_secret");
}

#[tokio::test]
async fn refuses_at_send_time_a_name_that_resolves_to_loopback() {
    // Created while private targets are allowed, sent by an instance where they are not.
    let Some(permissive) = spawn(Backend::Sqlite).await else {
        return;
    };
    let rx = Receiver::start().await;
    let port = rx
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .expect("port");
    let Some(name) = ["runsc", "vm", "ip6-localhost", "localhost.localdomain"]
        .into_iter()
        .find(|n| {
            std::net::ToSocketAddrs::to_socket_addrs(&(*n, 80))
                .is_ok_and(|mut a| a.all(|a| a.ip().is_loopback()))
        })
    else {
        eprintln!("skipping: no host name here resolves to loopback");
        return;
    };
    create(
        &permissive,
        &format!("http://{name}:{port}/hook"),
        json!(["*"]),
    )
    .await;
    let strict_cfg =
        crate::helpers::test_config(&permissive.db, &[("OPSHUB_WEBHOOK_WORKERS", "0")]);
    let strict = opshub::app::App::build(strict_cfg)
        .await
        .expect("strict app");
    let r = strict.state.clone();
    let refused = opshub::webhooks::create(
        &r,
        serde_json::from_value(
            json!({"name": "n", "endpoint": format!("http://{name}:{port}/x"), "events": ["*"]}),
        )
        .expect("req"),
    )
    .await;
    assert!(
        refused.is_err(),
        "refused at creation: the name resolves to loopback"
    );
    publish(&permissive, "a").await;
    assert_eq!(
        worker::run_once(&strict.state, later(0))
            .await
            .expect("round"),
        1
    );
    assert_eq!(rx.count(), 0, "nothing reached the loopback receiver");
    // A refused name is retried later (its DNS may change), never sent to the private address.
    let d = permissive.get("/api/v1/deliveries").await;
    assert_eq!(d.json["items"][0]["status"], "pending");
    assert!(
        d.json["items"][0]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("private")),
        "{}",
        d.text
    );
}

/// The venv made by tests/python/setup.sh, or `None` (skipping, unless CI) without it.
pub fn python_venv() -> Option<std::path::PathBuf> {
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
    if py.exists() {
        return Some(py);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run tests/python/setup.sh before the tests"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "note: Python conformance tests skip: run tests/python/setup.sh"
    );
    None
}

/// Runs the official libraries over captured deliveries; returns their verdicts.
fn verify_with_libraries(py: &std::path::Path, cases: &Value) -> Vec<Value> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/verify_webhooks.py");
    let mut child = std::process::Command::new(py)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cases.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python finishes");
    assert!(out.status.success(), "verifier script failed");
    serde_json::from_slice(&out.stdout).expect("json verdicts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_standard_webhooks_and_svix_libraries_accept_every_delivery() {
    let Some(py) = python_venv() else { return };
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let rx = Receiver::start().await;
    let hook = create(&app, &rx.url, json!(["*"])).await;
    let old = hook["secret"].as_str().expect("secret").to_string();
    let payloads = [
        json!({"n": 1}),
        json!({"text": "ünïcödé ✓ \"quoted\" \\ slash", "list": [1.5, null, true]}),
        json!([]),
    ];
    for p in &payloads {
        app.post(
            "/api/v1/events",
            json!({"type": "conformance.check", "payload": p}),
        )
        .await
        .assert_status(202);
    }
    round(&app, later(0)).await;
    let rotated = app
        .post(
            &format!(
                "/api/v1/webhooks/{}/rotate-secret",
                hook["id"].as_str().expect("id")
            ),
            json!({}),
        )
        .await;
    let new = rotated.json["secret"].as_str().expect("secret").to_string();
    app.post(
        "/api/v1/events",
        json!({"type": "after.rotation", "payload": {"n": 2}}),
    )
    .await;
    round(&app, later(0)).await;
    let seen = rx.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 4);
    let as_case = |(headers, body): &(HeaderMap, String), secret: &str, tamper: bool| {
        let h: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().expect("ascii"))))
            .collect();
        let body = if tamper {
            body.replacen('1', "2", 1)
        } else {
            body.clone()
        };
        json!({"secret": secret, "headers": h, "body": body})
    };
    // Before rotation: the old secret; after: both the old (grace period) and the new.
    let mut cases: Vec<Value> = seen[..3].iter().map(|s| as_case(s, &old, false)).collect();
    cases.push(as_case(&seen[3], &old, false));
    cases.push(as_case(&seen[3], &new, false));
    let verdicts = verify_with_libraries(&py, &Value::Array(cases));
    for v in &verdicts {
        assert_eq!(
            (v["standardwebhooks"].clone(), v["svix"].clone()),
            (Value::Null, Value::Null),
            "{verdicts:?}"
        );
    }
    // The check can fail: a tampered body is rejected by both libraries.
    let bad = verify_with_libraries(&py, &json!([as_case(&seen[0], &old, true)]));
    assert!(
        bad[0]["standardwebhooks"].is_string() && bad[0]["svix"].is_string(),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_after_an_endpoint_change_never_deadlock() {
    // SQLite has one write lock; reloading the routing index inside a publish transaction
    // used to need a second pooled connection while every other one waited for that lock.
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OPSHUB_WEBHOOK_WORKERS", "0"),
            ("OPSHUB_DB_POOL_SIZE", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let rx = Receiver::start().await;
    for round in 0..3 {
        create(&app, &rx.url, json!(["*"])).await; // the index is stale again
        let publishes: Vec<_> = (0..40)
            .map(|i| {
                let (client, base, token) = (
                    app.client.clone(),
                    app.base.clone(),
                    app.admin_token.clone(),
                );
                tokio::spawn(async move {
                    let r = client
                        .post(format!("{base}/api/v1/events"))
                        .bearer_auth(token)
                        .json(&json!({"type": "a.b", "payload": {"round": round, "i": i}}))
                        .send()
                        .await
                        .expect("sent");
                    r.status().as_u16()
                })
            })
            .collect();
        for p in publishes {
            assert_eq!(
                tokio::time::timeout(std::time::Duration::from_secs(20), p)
                    .await
                    .expect("no deadlock")
                    .expect("task"),
                202
            );
        }
    }
}

/// With a free slot in this process, publish inserts the delivery leased to itself and
/// hands it straight to the delivery loop: the first attempt needs no claim, and no other
/// worker can claim it meanwhile.
async fn hands_local_publishes_to_the_delivery_loop_without_a_claim(backend: Backend) {
    let Some(app) = spawn_running(backend, "2", "8").await else {
        return;
    };
    let rx = Receiver::start().await;
    create(&app, &rx.url, json!(["hand.*"])).await;
    let held = rx.held.lock().await;
    publish(&app, "hand.first").await;
    rx.wait_until(std::time::Duration::from_secs(10), |r| r.count() == 1)
        .await;
    // The attempt is in flight: the row is leased to this process, so another worker
    // (a second instance on the same database) finds nothing to claim.
    let other = opshub::app::App::build(crate::helpers::test_config(
        &app.db,
        &[("OPSHUB_WEBHOOK_WORKERS", "0")],
    ))
    .await
    .expect("second instance");
    let claimed = worker::run_once(&other.state, later(0))
        .await
        .expect("worker round");
    assert_eq!(claimed, 0, "a handed delivery is leased");
    drop(held);
    for i in 0..5 {
        publish(&app, &format!("hand.n{i}")).await;
    }
    rx.wait_until(std::time::Duration::from_secs(10), |r| r.count() == 6)
        .await;
    assert_eq!(
        attempt_counts(&app).await,
        (6, 0),
        "every attempt was handed"
    );
    assert_eq!(rx.per_id().values().max(), Some(&1), "each sent once");
    // Fan-out: one event for three endpoints hands all three.
    create(&app, &rx.url, json!(["hand.*"])).await;
    create(&app, &rx.url, json!(["hand.*"])).await;
    assert_eq!(publish(&app, "hand.fan").await["deliveries"], 3);
    rx.wait_until(std::time::Duration::from_secs(10), |r| r.count() == 9)
        .await;
    assert_eq!(attempt_counts(&app).await, (9, 0));
}

/// Publishes that find every slot busy are inserted unleased and claimed from the table
/// when a slot frees up (here by the same process; any instance could).
async fn publishes_beyond_free_slots_wait_in_the_table_for_a_claim(backend: Backend) {
    let Some(app) = spawn_running(backend, "1", "1").await else {
        return;
    };
    let rx = Receiver::start().await;
    create(&app, &rx.url, json!(["slot.*"])).await;
    let held = rx.held.lock().await;
    publish(&app, "slot.first").await;
    rx.wait_until(std::time::Duration::from_secs(10), |r| r.count() == 1)
        .await;
    publish(&app, "slot.second").await;
    publish(&app, "slot.third").await;
    drop(held);
    rx.wait_until(std::time::Duration::from_secs(10), |r| r.count() == 3)
        .await;
    assert_eq!(attempt_counts(&app).await, (1, 2));
}

/// A process writes "healthy again" at most once a second per endpoint while successes
/// continue; a failure it records in between must make the next success clear at once.
async fn a_success_right_after_a_failure_clears_the_failure_clock(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let hook = create(&app, &rx.url, json!(["*"])).await;
    let id = hook["id"].as_str().expect("id").to_string();
    let failing_since = || async {
        let db = &app.state.db;
        sqlx::query(db.sql("SELECT failing_since FROM opshub_webhooks WHERE id = ?"))
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .expect("row")
            .get::<Option<String>, _>(0)
    };
    for (n, status) in [500, 200, 500, 200].into_iter().enumerate() {
        rx.answer(status, vec![]);
        publish(&app, &format!("clock.{n}")).await;
        assert_eq!(round(&app, OffsetDateTime::now_utc()).await, 1);
        assert_eq!(
            failing_since().await.is_some(),
            status == 500,
            "after answer {n} ({status})"
        );
    }
}

/// Each instance routes with an in-memory index; an endpoint created, disabled or deleted
/// on another instance must still be honoured by the very next publish here (the publish
/// checks the endpoint generation in the same transaction or statement as its writes).
async fn publishes_route_to_endpoints_another_instance_changed(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let first = create(&app, &rx.url, json!(["route.*"])).await;
    assert_eq!(publish(&app, "route.a").await["deliveries"], 1);
    let other = opshub::app::App::build(crate::helpers::test_config(
        &app.db,
        &[
            ("OPSHUB_WEBHOOK_WORKERS", "0"),
            ("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    ))
    .await
    .expect("second instance");
    let new = |name: &str| {
        serde_json::from_value(json!({"name": name, "endpoint": rx.url, "events": ["route.*"]}))
            .expect("new webhook")
    };
    opshub::webhooks::create(&other.state, new("elsewhere"))
        .await
        .expect("created on the other instance");
    assert_eq!(publish(&app, "route.b").await["deliveries"], 2);
    let id = first["id"].as_str().expect("id");
    opshub::webhooks::delete(&other.state, id)
        .await
        .expect("deleted on the other instance");
    assert_eq!(publish(&app, "route.c").await["deliveries"], 1);
    // With a chosen id, in a batch with a repeat of an id stored before.
    let again = app
        .post(
            "/api/v1/events",
            json!({"type": "route.d", "payload": {}, "id": "evt-route"}),
        )
        .await;
    again.assert_status(202);
    let repeat = app
        .post(
            "/api/v1/events",
            json!({"type": "route.d", "payload": {}, "id": "evt-route"}),
        )
        .await;
    assert_eq!(
        (repeat.status, &repeat.json["duplicate"]),
        (200, &json!(true))
    );
    assert_eq!(repeat.json["deliveries"], 1);
}
