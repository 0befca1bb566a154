//! Append-only enforcement in the database, tamper detection, pruning behind a
//! checkpoint, and one chain from concurrent requests on two instances.

use reqwest::Method;
use serde_json::{Value, json};

use super::{create_source, exec, ingest, verify};
use crate::backend_tests;
use crate::helpers::{Backend, Resp, TestApp};

backend_tests!(
    logged_rows_cannot_be_updated_or_deleted,
    verify_names_the_tampered_row,
    prune_keeps_a_checkpoint_so_verify_still_passes,
    concurrent_requests_and_two_instances_extend_one_chain,
);

async fn logged_rows_cannot_be_updated_or_deleted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(&app, json!({"name": "s", "verifier": "none"})).await;
    let r = ingest(&app, Method::POST, "s", &[], b"original".to_vec()).await;
    let id = r.json["id"].as_str().expect("id").to_string();
    for m in [Method::PUT, Method::PATCH, Method::DELETE] {
        let r = Resp::from(
            app.req(m.clone(), &format!("/api/v1/webhook-logs/{id}"))
                .json(&json!({"body": "changed"}))
                .send()
                .await
                .expect("sent"),
        )
        .await;
        r.assert_error(405, "method_not_allowed");
    }
    for sql in [
        "UPDATE opshub_webhook_log SET source = 'other'",
        "UPDATE opshub_webhook_log SET body = body WHERE seq = 1",
        "DELETE FROM opshub_webhook_log",
        "DELETE FROM opshub_webhook_log WHERE seq = 1",
    ] {
        let err = exec(&app, sql).await;
        assert!(err.is_err(), "{sql} must be refused by the database");
    }
    if backend == Backend::Postgres {
        assert!(exec(&app, "TRUNCATE opshub_webhook_log").await.is_err());
    }
    let row = app.get(&format!("/api/v1/webhook-logs/{id}")).await;
    assert_eq!(row.json["body"], "original");
    assert_eq!(verify(&app).await["ok"], true);
}

/// Switches the update guard off the way a privileged attacker would.
async fn disable_update_guard(app: &TestApp, backend: Backend) {
    let sql = match backend {
        Backend::Postgres => {
            "ALTER TABLE opshub_webhook_log DISABLE TRIGGER webhook_log_append_only"
        }
        _ => "DROP TRIGGER trg_opshub_webhook_log_no_update",
    };
    exec(app, sql).await.expect("guard disabled");
}

async fn verify_names_the_tampered_row(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(&app, json!({"name": "s", "verifier": "none"})).await;
    for i in 0..4 {
        ingest(
            &app,
            Method::POST,
            "s",
            &[],
            format!("{{\"n\":{i}}}").into_bytes(),
        )
        .await
        .assert_status(200);
    }
    let v = verify(&app).await;
    assert_eq!(
        (
            v["ok"].clone(),
            v["headSeq"].clone(),
            v["checkedRows"].clone()
        ),
        (json!(true), json!(4), json!(4))
    );
    disable_update_guard(&app, backend).await;
    exec(
        &app,
        "UPDATE opshub_webhook_log SET signature_status = 'valid' WHERE seq = 3",
    )
    .await
    .expect("edited without the guard");
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["firstBadSeq"], 3);
    assert!(v["problem"].as_str().expect("problem").contains("row 3"));
}

async fn prune_keeps_a_checkpoint_so_verify_still_passes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(&app, json!({"name": "s", "verifier": "none"})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = ingest(
            &app,
            Method::POST,
            "s",
            &[],
            format!("row {i}").into_bytes(),
        )
        .await;
        ids.push(r.json["id"].as_str().expect("id").to_string());
    }
    let third = app.get(&format!("/api/v1/webhook-logs/{}", ids[2])).await;
    let cut = third.json["receivedAt"].as_str().expect("ts").to_string();
    let db = &app.state.db;
    let report = opshub::webhook_log::prune(db, &cut).await.expect("pruned");
    assert_eq!(report.pruned_rows, 2);
    assert_eq!(report.checkpoint_seq, Some(2));
    app.get(&format!("/api/v1/webhook-logs/{}", ids[0]))
        .await
        .assert_error(404, "log_entry_not_found");
    let v = verify(&app).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checkpointSeq"], 2);
    assert_eq!(v["checkedRows"], 1);
    // Rows after the checkpoint are still protected.
    assert!(
        exec(&app, "DELETE FROM opshub_webhook_log WHERE seq = 3")
            .await
            .is_err()
    );
    ingest(&app, Method::POST, "s", &[], b"after".to_vec())
        .await
        .assert_status(200);
    let v = verify(&app).await;
    assert_eq!(
        (v["ok"].clone(), v["headSeq"].clone()),
        (json!(true), json!(4))
    );
    let again = opshub::webhook_log::prune(db, &cut).await.expect("no-op");
    assert_eq!(again.pruned_rows, 0);
}

async fn concurrent_requests_and_two_instances_extend_one_chain(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    create_source(&app, json!({"name": "s", "verifier": "none"})).await;
    let second = opshub::app::App::build(crate::helpers::test_config(&app.db, &[]))
        .await
        .expect("second instance");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let second_base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = second.router;
    tokio::spawn(async move {
        opshub::http::serve(listener, router, Default::default())
            .await
            .ok()
    });
    let client = reqwest::Client::new();
    let sends = (0..120).map(|i| {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            second_base.clone()
        };
        let client = client.clone();
        async move {
            let r = client
                .post(format!("{base}/ingest/s"))
                .body(format!("n={i}"))
                .send()
                .await
                .expect("sent");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")["seq"]
                .as_i64()
                .expect("seq")
        }
    });
    let mut seqs = futures_join_all(sends).await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=120).collect::<Vec<i64>>(), "one gap-free chain");
    let v = verify(&app).await;
    assert_eq!(
        (v["ok"].clone(), v["headSeq"].clone()),
        (json!(true), json!(120)),
        "{v}"
    );
    second.state.shutdown.cancel();
}

/// Runs futures concurrently on the runtime and collects their results in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
