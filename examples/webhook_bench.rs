//! Load generator for bench/webhooks.sh: publishes events to a running opshub whose only
//! webhook points at a receiver run here, and measures deliveries per second and the
//! publish→receipt latency; then measures the floor, a bare HTTP client posting bodies of
//! the same size to the same receiver. Prints figures; asserts nothing.
//!
//! Usage: webhook_bench BASE_URL TOKEN EVENTS CONCURRENCY [SERVER_PID]
//!
//! With SERVER_PID (Linux), it also prints the CPU time the server process and every
//! `postgres` process on the machine spent per delivery, from publish start to the last
//! receipt: a figure that moves less than throughput on a shared machine.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    done: Option<Instant>,
    target: usize,
}

async fn receiver(seen: Arc<Mutex<Seen>>) -> String {
    let app = axum::Router::new().fallback(move |body: String| {
        let seen = seen.clone();
        async move {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let sent = v["data"]["sentAt"]
                .as_u64()
                .or_else(|| v["sentAt"].as_u64())
                .unwrap_or(0);
            let mut s = seen.lock().expect("lock");
            s.latencies_us.push(now_micros().saturating_sub(sent));
            if s.latencies_us.len() == s.target {
                s.done = Some(Instant::now());
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

/// CPU clock ticks (utime + stime, USER_HZ = 100 on Linux) of the process `pid`, and of
/// every process named `postgres` (backends, writers, autovacuum).
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let ticks = |stat: &str| -> Option<(String, u64)> {
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the comm: state is field 3, utime 14 and stime 15 (1-based over the line).
        Some((
            comm,
            f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        ))
    };
    let (mut server, mut pg) = (0, 0);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(p) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some((comm, t)) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .as_deref()
            .and_then(ticks)
        else {
            continue;
        };
        if p == pid {
            server += t;
        } else if comm == "postgres" {
            pg += t;
        }
    }
    (server, pg)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Builds the i-th request of a run.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Runs `n` requests built by `make` over `conc` tasks; returns when all were sent.
async fn drive(n: usize, conc: usize, make: MakeRequest) {
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let make = make.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in (w..n).step_by(conc) {
                    let r = make(&client, i).send().await.expect("request");
                    assert!(r.status().is_success(), "status {}", r.status());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

async fn wait_done(seen: &Arc<Mutex<Seen>>, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(d) = seen.lock().expect("lock").done {
            return Some(d);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn report(label: &str, n: usize, took: Duration, seen: &Arc<Mutex<Seen>>) {
    let mut l = seen.lock().expect("lock").latencies_us.clone();
    l.sort_unstable();
    println!(
        "{label:<38} {:>9.0} deliveries/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({n} in {:.2} s)",
        n as f64 / took.as_secs_f64(),
        pct(&l, 0.50),
        pct(&l, 0.99),
        took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    opshub::webhooks::deliver::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let (base, token) = (args[1].clone(), args[2].clone());
    let n: usize = args[3].parse().expect("EVENTS");
    let conc: usize = args[4].parse().expect("CONCURRENCY");
    let server_pid: Option<u32> = args.get(5).and_then(|p| p.parse().ok());

    let seen = Arc::new(Mutex::new(Seen {
        target: n,
        ..Seen::default()
    }));
    let url = receiver(seen.clone()).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"name": format!("bench-{}", now_micros()), "endpoint": url, "events": ["bench.*"]}))
        .send()
        .await
        .expect("create webhook");
    assert_eq!(r.status(), 201, "create webhook");

    let cpu_before = server_pid.map(cpu_ticks);
    let start = Instant::now();
    let (b, t) = (base.clone(), token.clone());
    drive(
        n,
        conc,
        Arc::new(move |c, i| {
            c.post(format!("{b}/api/v1/events"))
                .bearer_auth(&t)
                .json(&json!({"type": "bench.event", "payload": {"i": i, "sentAt": now_micros()}}))
        }),
    )
    .await;
    let published = start.elapsed();
    match wait_done(&seen, Duration::from_secs(600)).await {
        Some(done) => {
            report("opshub publish → receipt", n, done - start, &seen);
            if let (Some(pid), Some((s0, p0))) = (server_pid, cpu_before) {
                let (s1, p1) = cpu_ticks(pid);
                // Ticks are 10 ms; per delivery in µs.
                let per = |t: u64| t as f64 * 10_000.0 / n as f64;
                println!(
                    "{:<38} {:>9.0} µs opshub + {:.0} µs postgres = {:.0} µs per delivery",
                    "  (CPU time)",
                    per(s1 - s0),
                    per(p1.saturating_sub(p0)),
                    per(s1 - s0 + p1.saturating_sub(p0))
                );
            }
        }
        None => println!(
            "opshub: only {} of {n} delivered within 600 s",
            seen.lock().expect("lock").latencies_us.len()
        ),
    }
    println!(
        "{:<38} {:>9.0} publishes/s (acknowledged)",
        "  (publish API alone)",
        n as f64 / published.as_secs_f64()
    );

    let floor = Arc::new(Mutex::new(Seen {
        target: n,
        ..Seen::default()
    }));
    let floor_url = receiver(floor.clone()).await;
    let start = Instant::now();
    drive(n, conc, Arc::new(move |c, i| {
        let body = json!({"type": "bench.event", "timestamp": "2026-12-04T00:00:00.000000Z", "data": {"i": i, "sentAt": now_micros()}});
        c.post(&floor_url).json(&body)
    }))
    .await;
    let done = wait_done(&floor, Duration::from_secs(60))
        .await
        .unwrap_or_else(Instant::now);
    report("floor: bare client → receiver", n, done - start, &floor);
}
