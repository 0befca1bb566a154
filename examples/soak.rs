//! Soak for bench/soak.sh (issue 9): ingest and event publishing at a steady rate against
//! one running `opshub serve` for a fixed time; every window prints the server's resident
//! memory, open file descriptors (sockets included) and the p99 latency of the window, so
//! growth shows as a trend. Asserts nothing.
//!
//! Usage: soak BASE_URL TOKEN SERVER_PID RATE_PER_SECOND SECONDS WINDOW_SECONDS

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

fn proc_status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_default()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn p99(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * 0.99).round() as usize] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    opshub::webhooks::deliver::install_tls_provider();
    let args: Vec<String> = std::env::args().collect();
    let (base, token) = (args[1].clone(), args[2].clone());
    let pid: u32 = args[3].parse().expect("SERVER_PID");
    let rate: u64 = args[4].parse().expect("RATE");
    let secs: u64 = args[5].parse().expect("SECONDS");
    let window: u64 = args[6].parse().expect("WINDOW_SECONDS");
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/ingest-sources"))
        .bearer_auth(&token)
        .json(&json!({"name": "soak", "verifier": "none"}))
        .send()
        .await
        .expect("create source");
    assert_eq!(r.status(), 201, "create source");
    let ingest_lat: Arc<Mutex<Vec<u64>>> = Arc::default();
    let publish_lat: Arc<Mutex<Vec<u64>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_report = start + Duration::from_secs(window);
    println!("   t(s)   RSS        fds   ingest p99 ms   publish p99 ms   errors");
    println!(
        "   {:>4}   {:<10} {:>4}",
        0,
        proc_status(pid, "VmRSS:"),
        open_fds(pid)
    );
    let mut i: u64 = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        i += 1;
        let (c, b, t) = (client.clone(), base.clone(), token.clone());
        let (il, pl, e) = (ingest_lat.clone(), publish_lat.clone(), errors.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = if i.is_multiple_of(2) {
                c.post(format!("{b}/ingest/soak"))
                    .body(format!("{{\"i\":{i}}}"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            } else {
                c.post(format!("{b}/api/v1/events"))
                    .bearer_auth(&t)
                    .json(&json!({"type": "soak.event", "payload": {"i": i}}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            };
            let us = sent.elapsed().as_micros() as u64;
            if !ok {
                e.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let target = if i.is_multiple_of(2) { il } else { pl };
            target.lock().expect("lock").push(us);
        });
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(window);
            let il = std::mem::take(&mut *ingest_lat.lock().expect("lock"));
            let pl = std::mem::take(&mut *publish_lat.lock().expect("lock"));
            println!(
                "   {:>4}   {:<10} {:>4}   {:>13.2}   {:>14.2}   {}",
                start.elapsed().as_secs(),
                proc_status(pid, "VmRSS:"),
                open_fds(pid),
                p99(il),
                p99(pl),
                errors.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
    }
    println!(
        "sent {i} requests in {:.0} s ({:.0}/s), peak RSS {}",
        start.elapsed().as_secs_f64(),
        i as f64 / start.elapsed().as_secs_f64(),
        proc_status(pid, "VmHWM:")
    );
}
