//! A small in-process Prometheus registry: request counts and latency histograms by
//! method, route template and status, plus gauges supplied at render time. Per app
//! instance rather than global, so tests running several apps in one process stay apart.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What one (route, method) has seen.
#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// Route template → method → stats. Nested by borrowed-key lookups, so observing a request
/// allocates nothing once its route and method have been seen (this is on every request).
type Routes = BTreeMap<String, BTreeMap<String, RouteStats>>;

pub struct Metrics {
    started: Instant,
    routes: Mutex<Routes>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            routes: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), BTreeMap::new());
        }
        let Some(methods) = routes.get_mut(route) else {
            return;
        };
        if !methods.contains_key(method) {
            methods.insert(method.to_string(), RouteStats::default());
        }
        let Some(stats) = methods.get_mut(method) else {
            return;
        };
        *stats.by_status.entry(status).or_default() += 1;
        let h = &mut stats.latency;
        h.count += 1;
        h.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
    }

    /// The exposition text; `gauges` and `counters` are (name, help, value) read by the
    /// caller just now.
    pub fn render(&self, gauges: &[(&str, &str, f64)], counters: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let up = self.started.elapsed().as_secs_f64();
        let _ = writeln!(
            out,
            "# HELP opshub_uptime_seconds Seconds since this process started."
        );
        let _ = writeln!(
            out,
            "# TYPE opshub_uptime_seconds gauge\nopshub_uptime_seconds {up:.3}"
        );
        let typed = gauges
            .iter()
            .map(|g| (g, "gauge"))
            .chain(counters.iter().map(|c| (c, "counter")));
        for ((name, help, value), kind) in typed {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP opshub_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE opshub_http_requests_total counter");
        if let Ok(routes) = self.routes.lock() {
            for (route, methods) in routes.iter() {
                for (method, stats) in methods {
                    for (status, n) in &stats.by_status {
                        let _ = writeln!(
                            out,
                            "opshub_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                            escape(route)
                        );
                    }
                }
            }
        }
        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP opshub_http_request_duration_seconds Time to answer HTTP requests."
        );
        let _ = writeln!(out, "# TYPE opshub_http_request_duration_seconds histogram");
        let Ok(routes) = self.routes.lock() else {
            return;
        };
        let all = routes
            .iter()
            .flat_map(|(route, methods)| methods.iter().map(move |(m, s)| (m, route, &s.latency)));
        for (method, route, h) in all {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "opshub_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "opshub_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 opshub_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 opshub_http_request_duration_seconds_count{{{labels}}} {}",
                h.count, h.sum, h.count
            );
        }
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_fills_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_request("GET", "/healthz", 200, Duration::from_millis(3));
        m.observe_request("GET", "/healthz", 200, Duration::from_millis(300));
        let text = m.render(&[("g", "a gauge", 2.0)], &[("c_total", "a counter", 3.0)]);
        assert!(text.contains(
            "opshub_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.5\"} 2"));
        assert!(text.contains("# TYPE g gauge\ng 2"));
        assert!(text.contains("# TYPE c_total counter\nc_total 3"));
    }
}
