//! Webhook delivery through the real binary: a server SIGKILLed while 1,000 events are
//! being published loses none of the acknowledged ones after a restart (SQLite and
//! PostgreSQL), and three servers sharing one PostgreSQL deliver 5,000 events exactly once.

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::binary::{Server, opshub};
use crate::helpers::{Backend, TestDb};
use crate::webhooks::Receiver;

const ADMIN: &str = "opshub_webhook-e2e-admin-token-0123456789";

fn serve(db: &TestDb) -> Server {
    let mut cmd = opshub(&db.url, db.dir());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("OPSHUB_LOG_FORMAT", "json")
        .env("OPSHUB_LOG", "warn,opshub::cli=info")
        .env("OPSHUB_ADMIN_TOKEN", ADMIN)
        .env("OPSHUB_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("OPSHUB_WEBHOOK_TIMEOUT_SECS", "2");
    Server::start(cmd, false)
}

async fn create_hook(client: &reqwest::Client, addr: &str, url: &str) {
    let r = client
        .post(format!("http://{addr}/api/v1/webhooks"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "sink", "endpoint": url, "events": ["*"]}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
}

/// Acknowledged publishes so far, and a signal when they reach `at`.
#[derive(Clone)]
struct Progress {
    acked: Arc<Mutex<Vec<String>>>,
    at: usize,
    reached: Arc<tokio::sync::Notify>,
}

impl Progress {
    fn new(at: usize) -> Progress {
        Progress {
            acked: Arc::default(),
            at,
            reached: Arc::default(),
        }
    }
}

/// Publishes events `from..to` over `workers` connections to `addrs` (round robin) and
/// returns the ids acknowledged with 202; stops quietly when the server goes away.
async fn publish_range(addrs: Vec<String>, from: usize, to: usize, workers: usize) -> Vec<String> {
    publish_with(addrs, from, to, workers, Progress::new(usize::MAX)).await
}

async fn publish_with(
    addrs: Vec<String>,
    from: usize,
    to: usize,
    workers: usize,
    progress: Progress,
) -> Vec<String> {
    let acked = progress.acked.clone();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (addrs, acked, progress) = (addrs.clone(), acked.clone(), progress.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in (from + w..to).step_by(workers) {
                    let id = format!("evt-{i}");
                    let addr = &addrs[i % addrs.len()];
                    let r = client
                        .post(format!("http://{addr}/api/v1/events"))
                        .bearer_auth(ADMIN)
                        .json(&json!({"type": "load.test", "payload": {"i": i}, "id": id}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 202 => {
                            let mut a = acked.lock().expect("lock");
                            a.push(id);
                            if a.len() == progress.at {
                                progress.reached.notify_one();
                            }
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher");
    }
    acked.lock().expect("lock").clone()
}

async fn survives_sigkill(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let rx = Receiver::start().await;
    let mut server = serve(&db);
    let client = reqwest::Client::new();
    create_hook(&client, &server.addr, &rx.url).await;
    let addr = server.addr.clone();
    let progress = Progress::new(200);
    let publishing = tokio::spawn(publish_with(vec![addr], 0, 1000, 8, progress.clone()));
    // Kill it once 200 publishes are acknowledged (deliveries are under way by then; a
    // delivery can even reach the receiver before its publish's answer reaches the client,
    // so counting receipts would not tell how many were acknowledged).
    tokio::time::timeout(Duration::from_secs(60), progress.reached.notified())
        .await
        .expect("200 publishes acknowledged");
    Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .expect("kill");
    server.child.wait().expect("reaped");
    let acked: HashSet<String> = publishing.await.expect("publishers").into_iter().collect();
    assert!(
        acked.len() >= 200 && acked.len() < 1000,
        "killed mid-stream: {} acknowledged",
        acked.len()
    );
    let restarted_at = Instant::now();
    let server = serve(&db);
    // Everything acknowledged before the kill arrives, then publish the rest.
    rx.wait_until(Duration::from_secs(60), |r| {
        let seen = r.per_id();
        acked.iter().all(|id| seen.contains_key(id))
    })
    .await;
    let recovery = restarted_at.elapsed();
    let seen = rx.per_id();
    let duplicates: usize = acked.iter().map(|id| seen[id] - 1).sum();
    eprintln!(
        "{backend:?}: {} acknowledged before SIGKILL, all delivered {recovery:?} after restart, {duplicates} duplicate deliveries",
        acked.len()
    );
    assert!(
        recovery < Duration::from_secs(30),
        "recovery took {recovery:?}"
    );
    let (exit, _) = server.stop();
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_event_is_lost_when_the_server_is_killed_on_sqlite() {
    survives_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_event_is_lost_when_the_server_is_killed_on_postgres() {
    survives_sigkill(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_postgres_deliver_5000_events_exactly_once() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    let rx = Receiver::start().await;
    let servers = [serve(&db), serve(&db), serve(&db)];
    let client = reqwest::Client::new();
    create_hook(&client, &servers[0].addr, &rx.url).await;
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let started = Instant::now();
    let acked = publish_range(addrs, 0, 5000, 16).await;
    assert_eq!(acked.len(), 5000);
    rx.wait_until(Duration::from_secs(120), |r| r.per_id().len() >= 5000)
        .await;
    let took = started.elapsed();
    let seen = rx.per_id();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "3 servers on PostgreSQL: 5000 events published and delivered in {took:?}; {} delivered twice",
        twice.len()
    );
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for s in servers {
        assert!(s.stop().0.success());
    }
}
