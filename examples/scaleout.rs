//! Scale-out and crash check for bench/scaleout.sh (issue 9): three `opshub serve`
//! processes on one fresh PostgreSQL database, driven at once with event publishing, ingest
//! and KV writes while instance 0 is killed with SIGKILL and restarted twice; before that,
//! three `opshub migrate up --dir` processes race on the same folder. Prints what it
//! measured and exits 1 if anything acknowledged was lost.
//!
//! Usage: scaleout BIN PG_ADMIN_URL SECONDS

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;

const TOKEN: &str = "opshub_scaleout-admin-token-0123456789abcdef";
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const INSTANCES: usize = 3;
const KV_KEYS: usize = 8;

struct Instance {
    port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(bin: &str, url: &str, port: u16) -> Child {
    Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("OPSHUB_DATABASE_URL", url)
        .env("OPSHUB_ADMIN_TOKEN", TOKEN)
        .env("OPSHUB_MASTER_KEY", MASTER_KEY)
        .env("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("OPSHUB_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start opshub serve")
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance on port {port} did not become healthy");
}

/// What the receiver saw: deliveries per event id.
type Seen = Arc<Mutex<HashMap<String, u32>>>;

async fn receiver(seen: Seen) -> String {
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        async move {
            if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                *seen
                    .lock()
                    .expect("lock")
                    .entry(id.to_string())
                    .or_default() += 1;
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    url
}

#[derive(Default)]
struct Acked {
    events: Mutex<Vec<String>>,
    ingests: Mutex<Vec<String>>,
    /// Per key: the last acknowledged value, and values written after it whose answer
    /// never came (the instance died mid-request; they may or may not have committed).
    kv: Mutex<BTreeMap<String, (i64, Vec<i64>)>>,
    failed_requests: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

fn port_of(ports: &[u16], i: usize) -> u16 {
    ports[i % ports.len()]
}

async fn publish_loop(
    c: reqwest::Client,
    ports: Vec<u16>,
    acked: Arc<Acked>,
    stop: Arc<AtomicBool>,
    w: usize,
) {
    let mut i = w;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r = c
            .post(format!(
                "http://127.0.0.1:{}/api/v1/events",
                port_of(&ports, i)
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"type": "load.event", "payload": {"i": i}}))
            .send()
            .await;
        i += 1;
        match r {
            Ok(r) if r.status().as_u16() == 202 => {
                let v: Value = r.json().await.unwrap_or_default();
                if let Some(id) = v["id"].as_str() {
                    acked.events.lock().expect("lock").push(id.to_string());
                    acked
                        .latencies_us
                        .lock()
                        .expect("lock")
                        .push(t.elapsed().as_micros() as u64);
                }
            }
            _ => {
                acked.failed_requests.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn ingest_loop(
    c: reqwest::Client,
    ports: Vec<u16>,
    acked: Arc<Acked>,
    stop: Arc<AtomicBool>,
    w: usize,
) {
    let mut i = w;
    while !stop.load(Ordering::Relaxed) {
        let r = c
            .post(format!(
                "http://127.0.0.1:{}/ingest/load",
                port_of(&ports, i)
            ))
            .header("content-type", "application/json")
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await;
        i += 1;
        match r {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap_or_default();
                if let Some(id) = v["id"].as_str() {
                    acked.ingests.lock().expect("lock").push(id.to_string());
                }
            }
            _ => {
                acked.failed_requests.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn kv_loop(
    c: reqwest::Client,
    ports: Vec<u16>,
    acked: Arc<Acked>,
    stop: Arc<AtomicBool>,
    key: usize,
) {
    let name = format!("load.key{key}");
    let mut value: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        value += 1;
        let r = c
            .put(format!(
                "http://127.0.0.1:{}/api/v1/kv/{name}",
                port_of(&ports, value as usize + key)
            ))
            .bearer_auth(TOKEN)
            .json(&json!({"type": "integer", "value": value, "isCached": true}))
            .send()
            .await;
        let ok = matches!(&r, Ok(r) if r.status().is_success());
        {
            let mut kv = acked.kv.lock().expect("lock");
            let entry = kv.entry(name.clone()).or_insert((0, Vec::new()));
            if ok {
                *entry = (value, Vec::new());
            } else {
                entry.1.push(value);
                acked.failed_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Three `migrate up --dir` processes at once on the same 60 migrations.
fn migrate_race(bin: &str, url: &str, dir: &std::path::Path) -> Vec<i32> {
    std::fs::create_dir_all(dir).expect("dir");
    for i in 1..=60 {
        std::fs::write(
            dir.join(format!("{i:05}_t{i}.up.sql")),
            format!("CREATE TABLE scale_t{i} (id INT PRIMARY KEY);\n"),
        )
        .expect("write migration");
    }
    let children: Vec<Child> = (0..INSTANCES)
        .map(|_| {
            Command::new(bin)
                .args(["migrate", "up", "--dir"])
                .arg(dir)
                .env("OPSHUB_DATABASE_URL", url)
                .env("OPSHUB_MASTER_KEY", MASTER_KEY)
                .env("OPSHUB_LOG", "error")
                .stdout(Stdio::null())
                .spawn()
                .expect("migrate up")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            c.wait_with_output()
                .map_or(-1, |o| o.status.code().unwrap_or(-1))
        })
        .collect()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    opshub::webhooks::deliver::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let (bin, admin_url) = (args[1].clone(), args[2].clone());
    let secs: u64 = args[3].parse().expect("SECONDS");
    let db_name = "opshub_scaleout";
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("drop");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&admin)
        .await
        .expect("create");
    let url = format!("{}/{db_name}", admin_url.rsplit_once('/').expect("url").0);

    let tmp = std::env::temp_dir().join(format!("opshub-scaleout-{}", std::process::id()));
    let codes = migrate_race(&bin, &url, &tmp.join("migrations"));

    let client = reqwest::Client::new();
    let mut instances: Vec<Instance> = (0..INSTANCES)
        .map(|_| {
            let port = free_port();
            Instance {
                port,
                child: Some(start(&bin, &url, port)),
            }
        })
        .collect();
    for i in &instances {
        wait_healthy(&client, i.port).await;
    }
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let seen: Seen = Arc::default();
    let hook = receiver(seen.clone()).await;
    let base = format!("http://127.0.0.1:{}", ports[1]);
    let r = client
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "scaleout", "endpoint": hook, "events": ["load.*"]}))
        .send()
        .await
        .expect("create webhook");
    assert_eq!(r.status(), 201, "create webhook");
    let r = client
        .post(format!("{base}/api/v1/ingest-sources"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "load", "verifier": "none"}))
        .send()
        .await
        .expect("create source");
    assert_eq!(r.status(), 201, "create source");

    let acked = Arc::new(Acked::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..8 {
        tasks.push(tokio::spawn(publish_loop(
            client.clone(),
            ports.clone(),
            acked.clone(),
            stop.clone(),
            w,
        )));
        tasks.push(tokio::spawn(ingest_loop(
            client.clone(),
            ports.clone(),
            acked.clone(),
            stop.clone(),
            w,
        )));
    }
    for k in 0..KV_KEYS {
        tasks.push(tokio::spawn(kv_loop(
            client.clone(),
            ports.clone(),
            acked.clone(),
            stop.clone(),
            k,
        )));
    }
    let started = Instant::now();
    let mut kills = 0;
    for at in [secs / 3, 2 * secs / 3] {
        tokio::time::sleep_until((started + Duration::from_secs(at)).into()).await;
        if let Some(mut c) = instances[0].child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaped");
            kills += 1;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        instances[0].child = Some(start(&bin, &url, instances[0].port));
        wait_healthy(&client, instances[0].port).await;
    }
    tokio::time::sleep_until((started + Duration::from_secs(secs)).into()).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let drive = started.elapsed();

    // Every acknowledged event delivered at least once (give the queue time to drain).
    let events = acked.events.lock().expect("lock").clone();
    let drain_started = Instant::now();
    let mut missing: Vec<String> = events.clone();
    while drain_started.elapsed() < Duration::from_secs(120) {
        {
            let s = seen.lock().expect("lock");
            missing.retain(|id| !s.contains_key(id));
        }
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained_in = drain_started.elapsed();
    let duplicates: u32 = seen.lock().expect("lock").values().map(|n| n - 1).sum();

    // Every acknowledged ingest is in the log, and the chain verifies.
    let ingests = acked.ingests.lock().expect("lock").clone();
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connect");
    let stored: HashSet<String> = sqlx::query("SELECT id FROM opshub.webhook_log")
        .fetch_all(&db)
        .await
        .expect("log ids")
        .iter()
        .map(|r| r.get::<String, _>("id"))
        .collect();
    let lost_ingests = ingests.iter().filter(|id| !stored.contains(*id)).count();
    let verify: Value = client
        .get(format!("{base}/api/v1/webhook-logs/verify"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("verify json");

    // No delivery attempt recorded twice (two workers holding one claim at once).
    let double_claims: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM (SELECT delivery_id, attempt FROM opshub.delivery_attempts
         GROUP BY delivery_id, attempt HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&db)
    .await
    .expect("attempts")
    .get("n");

    // KV reads on every instance match the last write (or a write whose answer was lost).
    let kv = acked.kv.lock().expect("lock").clone();
    let mut kv_mismatches = Vec::new();
    for (key, (last, unsure)) in &kv {
        for port in &ports {
            let v: Value = client
                .get(format!("http://127.0.0.1:{port}/api/v1/kv/{key}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("kv get")
                .json()
                .await
                .unwrap_or_default();
            let got = v["value"].as_i64().unwrap_or(-1);
            if got != *last && !unsure.contains(&got) {
                kv_mismatches.push(format!("{key} on :{port} = {got}, last write {last}"));
            }
        }
    }

    // Migrations: each applied once.
    let applied: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM opshub.migrations WHERE is_executed = 1")
            .fetch_one(&db)
            .await
            .expect("migrations")
            .get("n");
    let tables: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name LIKE 'scale_t%'",
    )
    .fetch_one(&db)
    .await
    .expect("tables")
    .get("n");

    let mut lat = acked.latencies_us.lock().expect("lock").clone();
    lat.sort_unstable();
    println!(
        "drive: {:.0} s, 3 instances, instance 0 SIGKILLed and restarted {kills}×",
        drive.as_secs_f64()
    );
    println!(
        "events: {} acknowledged ({:.0}/s, publish p50 {:.1} ms p99 {:.1} ms), {} never delivered, {} duplicate deliveries, queue drained {:.1} s after the load stopped",
        events.len(),
        events.len() as f64 / drive.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        missing.len(),
        duplicates,
        drained_in.as_secs_f64()
    );
    println!("delivery attempts recorded twice for one claim: {double_claims}");
    println!(
        "ingest: {} acknowledged, {} missing from the log; chain verify ok={} over {} rows",
        ingests.len(),
        lost_ingests,
        verify["ok"],
        verify["checkedRows"]
    );
    println!(
        "kv: {} keys × {} instances read back, {} mismatches {:?}",
        kv.len(),
        ports.len(),
        kv_mismatches.len(),
        kv_mismatches
    );
    println!(
        "migrate up ×3 at once: exit codes {codes:?}, {applied} of 60 recorded executed, {tables} tables"
    );
    println!(
        "requests refused or cut off (mostly the killed instance): {}",
        acked.failed_requests.load(Ordering::Relaxed)
    );

    for i in &mut instances {
        if let Some(mut c) = i.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let ok = missing.is_empty()
        && lost_ingests == 0
        && verify["ok"] == json!(true)
        && double_claims == 0
        && kv_mismatches.is_empty()
        && codes.iter().all(|c| *c == 0)
        && applied == 60
        && tables == 60;
    println!(
        "{}",
        if ok {
            "RESULT: nothing acknowledged was lost"
        } else {
            "RESULT: FAILED"
        }
    );
    std::process::exit(if ok { 0 } else { 1 });
}
