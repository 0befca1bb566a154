//! KV across instances and through the CLI: a write on one instance reaches every other
//! instance's cache and change feed (PostgreSQL within a second through LISTEN/NOTIFY; every
//! backend through the revision poller), and `opshub kv` parses values by type.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend_tests;
use crate::binary::{Server, opshub};
use crate::helpers::{Backend, TestDb, test_config};

backend_tests!(a_write_on_one_instance_invalidates_the_cache_of_another);

/// Waits (without sleeping) for the next `change` event on an SSE response.
async fn next_change(resp: &mut reqwest::Response, within: Duration) -> Value {
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("a change event in time")
            .expect("chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream open")));
        if let Some(data) = buf
            .split("\n\n")
            .find_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
        {
            return serde_json::from_str(data).expect("json");
        }
    }
}

async fn a_write_on_one_instance_invalidates_the_cache_of_another(backend: Backend) {
    let Some(tdb) = TestDb::create(backend).await else {
        return;
    };
    let a = opshub::app::App::build(test_config(&tdb, &[]))
        .await
        .expect("a");
    let b = opshub::app::App::build(test_config(&tdb, &[]))
        .await
        .expect("b");
    let req = |v: i64| {
        serde_json::from_value(json!({"type": "integer", "value": v, "isCached": true}))
            .expect("req")
    };
    let none = opshub::kv::model::Precondition::None;
    opshub::kv::put(&a.state, "shared", req(1), none, "t")
        .await
        .expect("put");
    let read = |app: &opshub::app::AppState| {
        let app = app.clone();
        async move {
            let s = opshub::kv::get(&app, "shared", false).await.expect("get");
            (
                serde_json::from_slice::<Value>(&s.body).expect("json")["value"].clone(),
                s.cache,
            )
        }
    };
    assert_eq!(read(&b.state).await.0, json!(1));
    assert_eq!(
        read(&b.state).await.1,
        opshub::kv::CacheStatus::Hit,
        "b now caches the value"
    );
    let mut woke = b.state.kv.revision.subscribe();
    opshub::kv::put(&a.state, "shared", req(2), none, "t")
        .await
        .expect("put");
    // b learns through its poller (or LISTEN on PostgreSQL), never by expiry here.
    tokio::time::timeout(Duration::from_secs(5), woke.wait_for(|r| *r >= 2))
        .await
        .expect("b hears of it")
        .expect("open");
    assert_eq!(
        read(&b.state).await,
        (json!(2), opshub::kv::CacheStatus::Miss)
    );
    a.state.shutdown.cancel();
    b.state.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_postgres_see_each_others_writes_within_a_second() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let admin = "opshub_shared-admin-token-for-two-instances";
    let start = || {
        let mut cmd = opshub(&db.url, db.dir());
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("OPSHUB_LOG_FORMAT", "json")
            .env("OPSHUB_ADMIN_TOKEN", admin);
        Server::start(cmd, false)
    };
    let (a, b) = (start(), start());
    let client = reqwest::Client::new();
    let put = |addr: String, v: i64| {
        let c = client.clone();
        async move {
            let r = c
                .put(format!("http://{addr}/api/v1/kv/shared"))
                .bearer_auth(admin)
                .json(&json!({"type": "integer", "value": v, "isCached": true}))
                .send()
                .await
                .expect("put");
            assert!(r.status().is_success());
        }
    };
    let get = |addr: String| {
        let c = client.clone();
        async move {
            let r = c
                .get(format!("http://{addr}/api/v1/kv/shared"))
                .bearer_auth(admin)
                .send()
                .await
                .expect("get");
            let cache = r.headers()["x-cache"].to_str().expect("ascii").to_string();
            (
                r.json::<Value>().await.expect("json")["value"].clone(),
                cache,
            )
        }
    };
    put(a.addr.clone(), 1).await;
    assert_eq!(get(b.addr.clone()).await.0, json!(1));
    assert_eq!(
        get(b.addr.clone()).await,
        (json!(1), "hit".to_string()),
        "b caches it"
    );
    let mut feed = client
        .get(format!("http://{}/api/v1/kv/changes", b.addr))
        .bearer_auth(admin)
        .send()
        .await
        .expect("feed");
    let t0 = Instant::now();
    put(a.addr.clone(), 2).await;
    let event = next_change(&mut feed, Duration::from_secs(1)).await;
    let (value, cache) = get(b.addr.clone()).await;
    let took = t0.elapsed();
    assert_eq!(
        (event["key"].clone(), value, cache.as_str()),
        (json!("shared"), json!(2), "miss")
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!("cross-instance invalidation on PostgreSQL: {took:?}");
    for s in [a, b] {
        assert!(s.stop().0.success());
    }
}

#[test]
fn kv_cli_parses_values_by_type_and_manages_history() {
    let dir = std::env::temp_dir().join(format!("opshub-kvcli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}", dir.join("kv.db").display());
    let run = |args: &[&str]| opshub(&url, &dir).args(args).output().expect("run");
    assert!(
        run(&["kv", "set", "retries", "5", "--type", "integer"])
            .status
            .success()
    );
    let bad = run(&["kv", "set", "retries", "five", "--type", "integer"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("integer"),
        "names the type"
    );
    assert!(
        run(&["kv", "set", "limits", r#"{"rps": 10}"#, "--type", "object"])
            .status
            .success()
    );
    assert!(
        run(&["kv", "set", "pw", "hunter2", "--type", "secret"])
            .status
            .success()
    );
    assert!(
        run(&[
            "kv",
            "set",
            "retries",
            "6",
            "-t",
            "integer",
            "--if-version",
            "1"
        ])
        .status
        .success()
    );
    let cas = run(&[
        "kv",
        "set",
        "retries",
        "7",
        "-t",
        "integer",
        "--if-version",
        "1",
    ]);
    assert_eq!(
        cas.status.code(),
        Some(1),
        "a lost compare-and-set is a failed operation"
    );
    let get = run(&["kv", "get", "retries", "--json"]);
    let v: Value = serde_json::from_slice(&get.stdout).expect("json");
    assert_eq!(
        (v["value"].clone(), v["version"].clone()),
        (json!(6), json!(2))
    );
    let list = String::from_utf8(run(&["kv", "list"]).stdout).expect("utf8");
    assert!(
        list.contains("limits") && list.contains("********") && !list.contains("hunter2"),
        "{list}"
    );
    assert_eq!(
        String::from_utf8(run(&["kv", "get", "pw", "--reveal"]).stdout)
            .expect("utf8")
            .trim(),
        "hunter2"
    );
    assert!(
        run(&["kv", "rollback", "retries", "--version", "1"])
            .status
            .success()
    );
    let hist = String::from_utf8(run(&["kv", "history", "retries"]).stdout).expect("utf8");
    assert!(
        hist.contains("rollback") && hist.lines().count() == 4,
        "{hist}"
    );
    let export = run(&["kv", "export"]);
    let file = dir.join("export.json");
    std::fs::write(&file, &export.stdout).expect("write");
    let dry = run(&["kv", "import", file.to_str().expect("path"), "--dry-run"]);
    let report: Value = serde_json::from_slice(&dry.stdout).expect("report");
    assert_eq!(report["unchanged"], json!(["limits", "pw", "retries"]));
    assert!(run(&["kv", "rm", "limits"]).status.success());
    assert_eq!(run(&["kv", "get", "limits"]).status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}
