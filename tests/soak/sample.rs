//! What is sampled of the llmgate process every second: RSS and threads from
//! /proc/PID/status, open file descriptors from /proc/PID/fd, and the in-flight gauges from
//! its /metrics (tokio has no public task count; connections and streams are the tasks).

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since traffic started.
    pub t: f64,
    pub rss_kib: u64,
    pub threads: u64,
    pub fds: u64,
    pub connections: f64,
    pub streams: f64,
    /// Requests finished since the previous sample.
    pub requests: u64,
}

pub async fn take(pid: u32, admin: SocketAddr) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let metrics = metrics(admin).await.unwrap_or_default();
    Sample {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        fds,
        connections: gauge(&metrics, "llmgate_connections_active"),
        streams: gauge(&metrics, "llmgate_streams_active"),
        ..Sample::default()
    }
}

/// The sum of a gauge's series.
pub fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET /metrics` over a fresh HTTP/1.0 connection: no chunked framing to undo, none held open.
pub async fn metrics(admin: SocketAddr) -> Option<String> {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: admin\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out);
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// Median of `f` over `samples`.
pub fn median(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Least-squares slope of `f` against time, per second.
pub fn slope(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mt = samples.iter().map(|s| s.t).sum::<f64>() / n;
    let my = samples.iter().map(&f).sum::<f64>() / n;
    let cov: f64 = samples.iter().map(|s| (s.t - mt) * (f(s) - my)).sum();
    let var: f64 = samples.iter().map(|s| (s.t - mt).powi(2)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var
    }
}
