//! Key-value configuration: typed validation, inactive vs missing, cache hit/miss and
//! invalidation, encrypted secrets and their masking, versions and history, CAS under
//! concurrency, the SSE change feed, prefix lists, export/import, key rotation.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Row;

use crate::backend_tests;
use crate::helpers::{Backend, Resp, TEST_MASTER_KEY, TestApp, TestDb, test_config};

backend_tests!(
    every_type_accepts_valid_and_rejects_invalid_values_writing_nothing,
    inactive_keys_are_not_served_and_differ_from_missing_ones,
    cached_keys_report_hit_and_miss_and_writes_invalidate,
    secrets_are_encrypted_at_rest_masked_everywhere_and_revealed_only_to_admins,
    a_ciphertext_moved_to_another_key_does_not_decrypt,
    every_write_bumps_the_version_and_keeps_history_with_rollback,
    compare_and_set_gives_exactly_one_winner_per_version,
    change_feed_replays_from_a_revision_and_misses_nothing_on_reconnect,
    lists_by_prefix_with_pagination,
    export_and_import_round_trip_with_a_dry_run_diff,
    key_rotation_reencrypts_every_secret_and_reads_back,
);

async fn put(app: &TestApp, key: &str, body: Value) -> Resp {
    Resp::from(
        app.req(Method::PUT, &format!("/api/v1/kv/{key}"))
            .json(&body)
            .send()
            .await
            .expect("sent"),
    )
    .await
}

async fn every_type_accepts_valid_and_rejects_invalid_values_writing_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let valid: &[(&str, Value, Value)] = &[
        ("string", json!("hello"), json!("hello")),
        (
            "integer",
            json!(9223372036854775807i64),
            json!(9223372036854775807i64),
        ),
        ("number", json!(1.5), json!(1.5)),
        ("boolean", json!(false), json!(false)),
        ("date", json!("2024-02-29"), json!("2024-02-29")),
        (
            "datetime",
            json!("2026-01-02T03:04:05+05:30"),
            json!("2026-01-01T21:34:05Z"),
        ),
        ("object", json!({"a": [1, 2]}), json!({"a": [1, 2]})),
        ("array", json!([1, "x"]), json!([1, "x"])),
        ("secret", json!("s3cret"), Value::Null),
    ];
    for (i, (ty, input, read_back)) in valid.iter().enumerate() {
        let key = format!("ok.{i}");
        put(&app, &key, json!({"type": ty, "value": input}))
            .await
            .assert_status(201);
        let got = app.get(&format!("/api/v1/kv/{key}")).await;
        assert_eq!(&got.json["value"], read_back, "{ty} reads back typed");
        assert_eq!(got.json["type"], *ty);
    }
    let invalid: &[(&str, Value)] = &[
        ("integer", json!(1.5)),
        ("integer", json!("12")),
        ("integer", json!(9223372036854775808u64)),
        ("integer", json!(1e3)),
        ("number", json!("1.5")),
        ("boolean", json!("true")),
        ("boolean", json!(1)),
        ("date", json!("2026-02-30")),
        ("date", json!("2026-2-3")),
        ("datetime", json!("2026-01-02T03:04:05")),
        ("datetime", json!("2016-12-31T23:59:60Z")),
        ("object", json!([1])),
        ("array", json!({"a": 1})),
        ("string", json!(5)),
        ("secret", json!(7)),
    ];
    for (ty, input) in invalid {
        let r = put(&app, "bad", json!({"type": ty, "value": input})).await;
        r.assert_error(422, "type_mismatch");
        assert_eq!(r.json["error"]["details"]["type"], *ty, "names the type");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(ty)),
            "{}",
            r.text
        );
    }
    app.get("/api/v1/kv/bad")
        .await
        .assert_error(404, "key_not_found");
    app.get("/api/v1/kv/bad/history")
        .await
        .assert_error(404, "key_not_found");
    put(&app, "x", json!({"type": "decimal", "value": 1}))
        .await
        .assert_error(422, "invalid_body");
    put(&app, "_reserved", json!({"type": "string", "value": "v"}))
        .await
        .assert_error(422, "invalid_key");
}

async fn inactive_keys_are_not_served_and_differ_from_missing_ones(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    put(
        &app,
        "feature.x",
        json!({"type": "boolean", "value": true, "isActive": false}),
    )
    .await
    .assert_status(201);
    app.get("/api/v1/kv/feature.x")
        .await
        .assert_error(404, "key_inactive");
    app.get("/api/v1/kv/feature.y")
        .await
        .assert_error(404, "key_not_found");
    put(
        &app,
        "feature.x",
        json!({"type": "boolean", "value": true, "isActive": true}),
    )
    .await
    .assert_status(200);
    assert_eq!(app.get("/api/v1/kv/feature.x").await.json["value"], true);
}

async fn cached_keys_report_hit_and_miss_and_writes_invalidate(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    put(
        &app,
        "rate",
        json!({"type": "integer", "value": 10, "isCached": true}),
    )
    .await;
    put(&app, "plain", json!({"type": "integer", "value": 1})).await;
    let cache = |r: &Resp| r.headers["x-cache"].to_str().expect("ascii").to_string();
    assert_eq!(cache(&app.get("/api/v1/kv/rate").await), "miss");
    let hit = app.get("/api/v1/kv/rate").await;
    assert_eq!(
        (cache(&hit), hit.json["value"].clone()),
        ("hit".into(), json!(10))
    );
    assert_eq!(cache(&app.get("/api/v1/kv/plain").await), "bypass");
    put(&app, "rate", json!({"type": "integer", "value": 11}))
        .await
        .assert_status(200);
    let after = app.get("/api/v1/kv/rate").await;
    assert_eq!(
        (cache(&after), after.json["value"].clone()),
        ("miss".into(), json!(11)),
        "a write invalidates"
    );
    assert!(
        after.json["isCached"].as_bool().expect("flag"),
        "omitted flags keep their value"
    );
    let etag = after.headers["etag"].to_str().expect("etag").to_string();
    let r = app
        .req(Method::GET, "/api/v1/kv/rate")
        .header("if-none-match", etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 304);
}

async fn secrets_are_encrypted_at_rest_masked_everywhere_and_revealed_only_to_admins(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let plain = "correct-horse-battery-staple";
    put(
        &app,
        "db.password",
        json!({"type": "secret", "value": plain}),
    )
    .await
    .assert_status(201);
    put(
        &app,
        "db.password",
        json!({"type": "secret", "value": format!("{plain}-2")}),
    )
    .await
    .assert_status(200);
    for path in [
        "/api/v1/kv/db.password",
        "/api/v1/kv",
        "/api/v1/kv/db.password/history",
        "/api/v1/kv/_export",
    ] {
        let r = app.get(path).await;
        r.assert_status(200);
        assert!(
            !r.text.contains(plain),
            "{path} leaks the secret: {}",
            r.text
        );
    }
    assert_eq!(app.get("/api/v1/kv/db.password").await.json["masked"], true);
    let revealed = app.get("/api/v1/kv/db.password?reveal=true").await;
    assert_eq!(revealed.json["value"], format!("{plain}-2"));
    let write = app.token("write").await;
    let r = app
        .client
        .get(format!("{}/api/v1/kv/db.password?reveal=true", app.base))
        .bearer_auth(&write)
        .send()
        .await
        .expect("sent");
    Resp::from(r).await.assert_error(403, "forbidden");
    let db = &app.state.db;
    for table in ["opshub_kv", "opshub_kv_history"] {
        let sql = match table {
            "opshub_kv" => {
                db.sql("SELECT value, secret_ct FROM opshub_kv WHERE key_name = 'db.password'")
            }
            _ => db.sql(
                "SELECT value, secret_ct FROM opshub_kv_history WHERE key_name = 'db.password'",
            ),
        };
        let rows = sqlx::query(sql).fetch_all(db.pool()).await.expect("rows");
        assert_eq!(rows.len(), if table == "opshub_kv" { 1 } else { 2 });
        for r in rows {
            assert!(
                r.try_get::<Option<String>, _>("value")
                    .expect("value")
                    .is_none()
            );
            let ct: String = r.try_get("secret_ct").expect("ct");
            assert!(
                ct.starts_with("v1:") && !ct.contains(plain),
                "{table}: {ct}"
            );
        }
    }
}

async fn a_ciphertext_moved_to_another_key_does_not_decrypt(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    put(&app, "a", json!({"type": "secret", "value": "for-a"})).await;
    put(&app, "b", json!({"type": "secret", "value": "for-b"})).await;
    let db = &app.state.db;
    let ct: String = sqlx::query(db.sql("SELECT secret_ct FROM opshub_kv WHERE key_name = 'a'"))
        .fetch_one(db.pool())
        .await
        .expect("row")
        .get(0);
    sqlx::query(db.sql("UPDATE opshub_kv SET secret_ct = ? WHERE key_name = 'b'"))
        .bind(ct)
        .execute(db.pool())
        .await
        .expect("tamper");
    let r = app.get("/api/v1/kv/b?reveal=true").await;
    r.assert_error(500, "internal");
    assert!(!r.text.contains("for-a"));
    assert_eq!(
        app.get("/api/v1/kv/a?reveal=true").await.json["value"],
        "for-a"
    );
}

async fn every_write_bumps_the_version_and_keeps_history_with_rollback(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for v in 1..=3 {
        let r = put(&app, "limit", json!({"type": "integer", "value": v * 100})).await;
        assert_eq!(r.json["version"], v);
        assert_eq!(r.headers["etag"], format!("\"v{v}\"").as_str());
    }
    let h = app.get("/api/v1/kv/limit/history?limit=2").await;
    let versions: Vec<i64> = h.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["version"].as_i64().expect("v"))
        .collect();
    assert_eq!(versions, vec![3, 2]);
    let cursor = h.json["nextCursor"].as_str().expect("more");
    let rest = app
        .get(&format!("/api/v1/kv/limit/history?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest.json["items"][0]["version"], 1);
    let rolled = app
        .post("/api/v1/kv/limit/rollback", json!({"version": 1}))
        .await;
    rolled.assert_status(200);
    assert_eq!(
        (rolled.json["version"].clone(), rolled.json["value"].clone()),
        (json!(4), json!(100))
    );
    assert_eq!(
        app.get("/api/v1/kv/limit/history").await.json["items"][0]["op"],
        "rollback"
    );
    app.post("/api/v1/kv/limit/rollback", json!({"version": 99}))
        .await
        .assert_error(404, "version_not_found");
    let del = Resp::from(
        app.req(Method::DELETE, "/api/v1/kv/limit")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(del.json["version"], 5);
    app.get("/api/v1/kv/limit")
        .await
        .assert_error(404, "key_not_found");
    let again = put(&app, "limit", json!({"type": "string", "value": "back"})).await;
    assert_eq!(
        again.json["version"], 6,
        "a re-created key continues its versions"
    );
    // Secrets keep history too, encrypted, and roll back without being revealed.
    put(&app, "tok", json!({"type": "secret", "value": "one"})).await;
    put(&app, "tok", json!({"type": "secret", "value": "two"})).await;
    app.post("/api/v1/kv/tok/rollback", json!({"version": 1}))
        .await
        .assert_status(200);
    assert_eq!(
        app.get("/api/v1/kv/tok?reveal=true").await.json["value"],
        "one"
    );
}

async fn compare_and_set_gives_exactly_one_winner_per_version(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    put(&app, "counter", json!({"type": "integer", "value": 0})).await;
    let stale = app
        .req(Method::PUT, "/api/v1/kv/counter")
        .header("if-match", "\"v9\"")
        .json(&json!({"type": "integer", "value": 1}));
    let r = Resp::from(stale.send().await.expect("sent")).await;
    r.assert_error(412, "precondition_failed");
    assert_eq!(r.json["error"]["details"]["currentVersion"], 1);
    let create_only = app
        .req(Method::PUT, "/api/v1/kv/counter")
        .header("if-none-match", "*")
        .json(&json!({"type": "integer", "value": 1}));
    Resp::from(create_only.send().await.expect("sent"))
        .await
        .assert_error(412, "precondition_failed");
    // 20 writers, each retrying read-modify-write with If-Match, until each has added 1 once.
    let writers = (0..20).map(|_| {
        let (client, base, token) = (
            app.client.clone(),
            app.base.clone(),
            app.admin_token.clone(),
        );
        tokio::spawn(async move {
            let mut conflicts = 0;
            loop {
                let cur: Value = client
                    .get(format!("{base}/api/v1/kv/counter"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json");
                let (v, n) = (
                    cur["version"].as_i64().expect("v"),
                    cur["value"].as_i64().expect("n"),
                );
                let r = client
                    .put(format!("{base}/api/v1/kv/counter"))
                    .bearer_auth(&token)
                    .header("if-match", format!("\"v{v}\""))
                    .json(&json!({"type": "integer", "value": n + 1}))
                    .send()
                    .await
                    .expect("put");
                match r.status().as_u16() {
                    200 => return (v + 1, conflicts),
                    412 => conflicts += 1,
                    s => panic!("unexpected status {s}"),
                }
            }
        })
    });
    let mut won: Vec<i64> = Vec::new();
    for w in writers {
        won.push(w.await.expect("writer").0);
    }
    won.sort();
    assert_eq!(
        won,
        (2..=21).collect::<Vec<_>>(),
        "exactly one success per version"
    );
    let end = app.get("/api/v1/kv/counter").await;
    assert_eq!(
        (end.json["value"].clone(), end.json["version"].clone()),
        (json!(20), json!(21))
    );
}

/// Reads SSE `change` events until `n` have arrived; returns their (id, key).
async fn read_events(resp: reqwest::Response, n: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut resp = resp;
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
            .await
            .expect("event in time")
            .expect("chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream open")));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .map(|s| s.parse::<i64>().expect("id"));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(id), Some(data)) = (id, data) {
                let v: Value = serde_json::from_str(data).expect("json");
                assert!(v.get("value").is_none(), "events never carry values");
                out.push((id, v["key"].as_str().expect("key").to_string()));
            }
        }
    }
    out
}

async fn change_feed_replays_from_a_revision_and_misses_nothing_on_reconnect(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    put(&app, "k1", json!({"type": "string", "value": "a"})).await;
    put(&app, "k2", json!({"type": "secret", "value": "b"})).await;
    let feed = app
        .req(Method::GET, "/api/v1/kv/changes?since=0")
        .send()
        .await
        .expect("sent");
    assert!(
        feed.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let first = read_events(feed, 2).await;
    assert_eq!(
        first.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    // Live: a write after subscribing arrives.
    let live = app
        .req(Method::GET, "/api/v1/kv/changes")
        .send()
        .await
        .expect("sent");
    put(&app, "k3", json!({"type": "integer", "value": 3})).await;
    assert_eq!(read_events(live, 1).await[0].1, "k3");
    // A client that dropped after k1 reconnects with Last-Event-ID and gets k2, k3 and then
    // what happened while it was away.
    put(&app, "k4", json!({"type": "integer", "value": 4})).await;
    let resumed = app
        .req(Method::GET, "/api/v1/kv/changes")
        .header("last-event-id", first[0].0.to_string())
        .send()
        .await
        .expect("sent");
    let got = read_events(resumed, 3).await;
    assert_eq!(
        got.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>(),
        ["k2", "k3", "k4"]
    );
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "revisions increase"
    );
}

async fn lists_by_prefix_with_pagination(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for k in ["app/a", "app/b", "app/c", "app_x", "other/a"] {
        put(
            &app,
            &k.replace('/', "%2F"),
            json!({"type": "string", "value": k}),
        )
        .await
        .assert_status(201);
    }
    let p1 = app.get("/api/v1/kv?prefix=app/&limit=2").await;
    let keys = |r: &Resp| {
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["key"].as_str().expect("k").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&p1), ["app/a", "app/b"]);
    let cursor = p1.json["nextCursor"].as_str().expect("cursor").to_string();
    let p2 = app
        .get(&format!("/api/v1/kv?prefix=app/&limit=2&cursor={cursor}"))
        .await;
    assert_eq!(keys(&p2), ["app/c"]);
    assert!(p2.json["nextCursor"].is_null());
    assert_eq!(
        keys(&app.get("/api/v1/kv?prefix=app_").await),
        ["app_x"],
        "_ is not a wildcard"
    );
    assert_eq!(app.get("/api/v1/kv/app%2Fb").await.json["value"], "app/b");
}

async fn export_and_import_round_trip_with_a_dry_run_diff(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    put(
        &app,
        "n",
        json!({"type": "integer", "value": 1, "description": "count"}),
    )
    .await;
    put(&app, "s", json!({"type": "secret", "value": "pw"})).await;
    let doc = app.get("/api/v1/kv/_export").await.json;
    assert!(
        doc["entries"]["s"]["ciphertext"]
            .as_str()
            .is_some_and(|c| c.starts_with("v1:"))
    );
    assert!(
        app.get("/api/v1/kv/_export?omitSecrets=true").await.json["entries"]
            .get("s")
            .is_none()
    );
    // Import into a fresh database with the same master key.
    let Some(other) = TestApp::spawn(backend).await else {
        return;
    };
    let mut doc2 = doc.clone();
    doc2["entries"]["m"] = json!({"type": "boolean", "value": true});
    let dry = other
        .post("/api/v1/kv/_import?dryRun=true", doc2.clone())
        .await;
    dry.assert_status(200);
    assert_eq!(dry.json["created"], json!(["m", "n", "s"]));
    other
        .get("/api/v1/kv/n")
        .await
        .assert_error(404, "key_not_found");
    other
        .post("/api/v1/kv/_import", doc2.clone())
        .await
        .assert_status(200);
    assert_eq!(
        other.get("/api/v1/kv/s?reveal=true").await.json["value"],
        "pw"
    );
    assert_eq!(other.get("/api/v1/kv/n").await.json["description"], "count");
    let again = other
        .post("/api/v1/kv/_import?dryRun=true", doc2.clone())
        .await;
    assert_eq!(
        again.json["unchanged"],
        json!(["m", "n", "s"]),
        "re-import changes nothing"
    );
    // One bad entry: nothing written, every problem listed.
    doc2["entries"]["n"]["value"] = json!(2);
    doc2["entries"]["bad"] = json!({"type": "date", "value": "2026-13-01"});
    let r = other.post("/api/v1/kv/_import", doc2).await;
    r.assert_error(422, "import_invalid");
    assert!(r.json["error"]["details"]["errors"]["bad"].is_string());
    assert_eq!(
        other.get("/api/v1/kv/n").await.json["value"],
        1,
        "nothing written"
    );
}

async fn key_rotation_reencrypts_every_secret_and_reads_back(backend: Backend) {
    let Some(tdb) = TestDb::create(backend).await else {
        return;
    };
    let old = opshub::app::App::build(test_config(&tdb, &[]))
        .await
        .expect("builds");
    let state = &old.state;
    let actor = "test";
    for (k, v) in [("s1", "one"), ("s2", "two"), ("s1", "one-b")] {
        let req = serde_json::from_value(json!({"type": "secret", "value": v})).expect("req");
        opshub::kv::put(state, k, req, opshub::kv::model::Precondition::None, actor)
            .await
            .expect("put");
    }
    let hook = opshub::webhooks::create(
        state,
        serde_json::from_value(
            json!({"name": "h", "endpoint": "https://hooks.example.com/x", "events": ["*"]}),
        )
        .expect("req"),
    )
    .await
    .expect("webhook");
    let source = opshub::webhook_log::create_source(
        &state.db,
        &state.keys,
        serde_json::from_value(json!({"name": "gh", "verifier": "github", "secret": "gh-secret"}))
            .expect("source"),
    )
    .await
    .expect("source");
    state.shutdown.cancel();
    let new_key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let rotated_cfg = test_config(
        &tdb,
        &[
            ("OPSHUB_MASTER_KEY", new_key),
            ("OPSHUB_MASTER_KEY_PREVIOUS", TEST_MASTER_KEY),
        ],
    );
    let app = opshub::app::AppState::new(
        rotated_cfg,
        opshub::app::open_db(&test_config(&tdb, &[]))
            .await
            .expect("db"),
        {
            let c = test_config(
                &tdb,
                &[
                    ("OPSHUB_MASTER_KEY", new_key),
                    ("OPSHUB_MASTER_KEY_PREVIOUS", TEST_MASTER_KEY),
                ],
            );
            opshub::app::load_keyring(&c).expect("keyring")
        },
    );
    let report = opshub::keys::rotate(&app).await.expect("rotates");
    assert_eq!(report.reencrypted["kv"], 2);
    assert_eq!(report.reencrypted["kv history"], 3);
    assert_eq!(report.reencrypted["webhooks"], 1);
    assert_eq!(report.reencrypted["ingest sources"], 1);
    assert_eq!(
        opshub::keys::rotate(&app)
            .await
            .expect("idempotent")
            .reencrypted["kv"],
        0
    );
    // Only the new key is needed now.
    let only_new = opshub::app::load_keyring(&test_config(&tdb, &[("OPSHUB_MASTER_KEY", new_key)]))
        .expect("keyring");
    let fresh = opshub::app::AppState::new(test_config(&tdb, &[]), app.db.clone(), only_new);
    let served = opshub::kv::get(&fresh, "s1", true).await.expect("reads");
    let v: Value = serde_json::from_slice(&served.body).expect("json");
    assert_eq!(v["value"], "one-b");
    let h = opshub::kv::rollback(
        &fresh,
        "s1",
        1,
        opshub::kv::model::Precondition::None,
        actor,
    )
    .await
    .expect("history decrypts");
    assert_eq!(h.version, 3);
    let w = opshub::webhooks::get(&fresh, &hook.webhook.id)
        .await
        .expect("webhook");
    let keys = opshub::webhooks::signing_keys(&fresh, &w, &opshub::db::time::now())
        .expect("the webhook secret decrypts with the new key alone");
    assert_eq!(
        keys[0],
        opshub::webhooks::sign::parse_secret(&hook.secret).expect("key")
    );
    let ct: String = sqlx::query(
        fresh
            .db
            .sql("SELECT secret FROM opshub_ingest_sources WHERE id = ?"),
    )
    .bind(&source.id)
    .fetch_one(fresh.db.pool())
    .await
    .expect("source row")
    .get(0);
    let plain = fresh
        .keys
        .decrypt(&ct, &format!("ingest-source:{}", source.id))
        .expect("new key alone");
    assert_eq!(plain, b"gh-secret");
}
