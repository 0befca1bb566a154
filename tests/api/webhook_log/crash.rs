//! Durable before 2xx, through the built binary: concurrent senders, SIGKILL once enough
//! requests were acknowledged, restart, and every acknowledged request is in the log (found
//! by the unique id in its body) while the chain still verifies.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use sqlx::Row;

use crate::backend_tests;
use crate::binary::opshub;
use crate::helpers::{Backend, TestDb, test_config};

pub(super) const ADMIN: &str = "opshub_crash-test-admin-token-0123456789";
/// Acknowledged requests after which the server is killed.
const KILL_AFTER: usize = 300;
const SENDERS: usize = 16;

backend_tests!(every_acknowledged_request_survives_sigkill);

/// Starts `serve` on a free port; returns the child and its address (from the JSON log).
pub(super) fn start(db: &TestDb) -> (Child, String) {
    let mut child = opshub(&db.url, db.dir())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("OPSHUB_ADMIN_TOKEN", ADMIN)
        .env("OPSHUB_LOG_FORMAT", "json")
        .env("OPSHUB_LOG", "warn,opshub=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn opshub");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
            v["addr"].as_str().map(String::from)
        })
        .expect("the server logs its address");
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// Sends numbered requests until the server stops answering; returns the acknowledged ids.
async fn sender(
    base: String,
    task: usize,
    acked: Arc<Mutex<Vec<String>>>,
    reached: Arc<tokio::sync::Notify>,
) {
    let client = reqwest::Client::new();
    for n in 0.. {
        let uid = format!("{task}-{n}");
        let sent = client
            .post(format!("{base}/ingest/crash"))
            .header("content-type", "application/json")
            .body(format!("{{\"uid\":\"{uid}\"}}"))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => {
                let mut all = acked.lock().expect("lock");
                all.push(uid);
                if all.len() == KILL_AFTER {
                    reached.notify_one();
                }
            }
            _ => return,
        }
    }
}

async fn every_acknowledged_request_survives_sigkill(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let created = opshub(&db.url, db.dir())
        .args(["source", "create", "crash"])
        .output()
        .expect("run");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let (mut child, addr) = start(&db);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let reached = Arc::new(tokio::sync::Notify::new());
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            tokio::spawn(sender(
                format!("http://{addr}"),
                t,
                acked.clone(),
                reached.clone(),
            ))
        })
        .collect();
    reached.notified().await;
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    child.wait().expect("reaped");
    for s in senders {
        s.await.expect("sender");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= KILL_AFTER);

    let (mut again, addr) = start(&db);
    let verify: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/webhook-logs/verify"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(verify["ok"], true, "{verify}");
    let handle = opshub::app::open_db(&test_config(&db, &[]))
        .await
        .expect("db");
    let rows = sqlx::query(handle.sql("SELECT body FROM opshub_webhook_log"))
        .fetch_all(handle.pool())
        .await
        .expect("rows");
    let stored: HashSet<String> = rows
        .iter()
        .map(|r| {
            let body: Vec<u8> = r.try_get("body").expect("body");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json body");
            v["uid"].as_str().expect("uid").to_string()
        })
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|u| !stored.contains(*u)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged requests lost: {lost:?}",
        lost.len()
    );
    assert_eq!(verify["headSeq"].as_u64(), Some(stored.len() as u64));
    handle.close().await;
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .expect("kill");
    again.wait().expect("stopped");
}
