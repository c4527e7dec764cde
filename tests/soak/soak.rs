//! The soak: the real llmgate binary in front of a mock upstream, driven with mixed traffic
//! (SSE and NDJSON streams, uploads, model lists, bad keys, a rate-limited key, streams the
//! client cancels) for a set duration, sampled every second, then judged: no unexplained
//! outcome, no panic or error in its log, in-flight gauges back to zero once traffic stops,
//! and no growth of RSS or open descriptors after warm-up.
//!
//! Shared by the CI test (`tests/soak/main.rs`, 20 s) and the bench (`benches/soak.rs`,
//! `cargo bench --bench soak -- --duration 600`).

#[path = "mock.rs"]
mod mock;
#[path = "sample.rs"]
mod sample;
#[path = "traffic.rs"]
mod traffic;

use sample::{median, slope, Sample};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use traffic::{Kind, Tally, Target, KINDS};

pub struct Opts {
    pub bin: PathBuf,
    pub duration: Duration,
    /// Samples before this are not judged for growth (caches and pools fill up).
    pub warmup: Duration,
    /// Concurrent clients of the general mix (the rate-limited key has one more).
    pub workers: usize,
    /// Print every Nth sample (the verdict uses all of them).
    pub print_every: usize,
}

pub struct Report {
    pub samples: Vec<Sample>,
    pub tally: Arc<Tally>,
    pub after: Option<Sample>,
    pub warnings: usize,
    pub problems: Vec<String>,
}

/// llmgate as a child process with its output collected.
struct Gate {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gate(bin: &PathBuf, dir: &std::path::Path, config: &str) -> (Gate, String) {
    let path = dir.join("llmgate.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let (log, tx) = (log.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("llmgate listening") {
                    let _ = tx.send(line.clone());
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("llmgate did not report its listeners");
    (Gate { child, log }, line)
}

pub fn run(opts: &Opts) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(drive(opts))
}

async fn drive(opts: &Opts) -> Report {
    let upstream = mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, limited) = (
        llmgate::auth::keys::generate(),
        llmgate::auth::keys::generate(),
    );
    let entry =
        |id: &str, k: &str| llmgate::auth::keys::entry(id, k).replace("[[keys]]", "[[auth.keys]]");
    // The bad-key clients share one address with the good ones, so the per-address failure
    // throttle is set out of the way; the limited key gets 30 at once, then one every 2 s.
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[log]
format = "json"
level = "info"
access_log = false
[[upstreams]]
name = "mock"
url = "http://{upstream}"
[[routes]]
path_prefix = "/"
upstream = "mock"
[rate_limit]
requests_per_minute = 0
burst = 0
unauthenticated_per_ip_per_minute = 0
[auth]
max_failures_per_ip = 1000000
{}{}requests_per_minute = 30
"#,
        entry("soak", &key),
        entry("limited", &limited),
    );
    let (mut gate, listening) = start_gate(&opts.bin, dir.path(), &config);
    let v: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let addr = v["listen"].as_str().unwrap().parse().unwrap();
    let admin = v["admin"].as_str().unwrap().parse().unwrap();
    let pid = gate.child.id();

    let target = Arc::new(Target::new(addr, key, limited));
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut workers = Vec::new();
    for w in 0..=opts.workers {
        let (target, tally) = (target.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut roll = w as u32 * 7919;
            while Instant::now() < deadline {
                roll = roll.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let kind = if w == 0 {
                    Kind::Limited
                } else {
                    traffic::pick(roll >> 8)
                };
                let outcome = target.run(kind).await;
                tally.record(kind, outcome);
                if w == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    println!(
        "soak: {} for {:?} ({} workers), warm-up {:?}",
        opts.bin.display(),
        opts.duration,
        opts.workers,
        opts.warmup
    );
    println!(
        "{:>6} {:>8} {:>5} {:>7} {:>6} {:>7} {:>6}",
        "t s", "rss MiB", "fds", "threads", "conns", "streams", "req/s"
    );
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut done_before = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let mut s = sample::take(pid, admin).await;
        s.t = start.elapsed().as_secs_f64();
        let done = tally.total();
        s.requests = done - done_before;
        done_before = done;
        if samples.len() % opts.print_every.max(1) == 0 {
            print_row(&s);
        }
        samples.push(s);
    }
    for w in workers {
        let _ = w.await;
    }
    // Closing the client's pool must bring every in-flight gauge back to zero.
    drop(target);
    let mut after = None;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(10) {
        let s = sample::take(pid, admin).await;
        after = Some(s);
        if s.connections == 0.0 && s.streams == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(s) = &after {
        print!("after ");
        print_row(&Sample {
            t: start.elapsed().as_secs_f64(),
            ..*s
        });
    }
    let exited = gate.child.try_wait().ok().flatten().is_some();
    let log = gate.log.lock().unwrap().clone();
    let mut report = Report {
        samples,
        tally,
        after,
        warnings: 0,
        problems: Vec::new(),
    };
    judge(&mut report, opts, &log, exited);
    report
}

fn print_row(s: &Sample) {
    println!(
        "{:>6.0} {:>8.1} {:>5} {:>7} {:>6} {:>7} {:>6}",
        s.t,
        s.rss_kib as f64 / 1024.0,
        s.fds,
        s.threads,
        s.connections,
        s.streams,
        s.requests
    );
}

fn judge(r: &mut Report, opts: &Opts, log: &[String], exited: bool) {
    let p = &mut r.problems;
    if exited {
        p.push("llmgate exited during the soak".into());
    }
    if r.tally.unexplained() > 0 {
        let first = r.tally.first_errors.lock().unwrap().join("\n  ");
        p.push(format!(
            "{} unexplained outcomes, first ones:\n  {first}",
            r.tally.unexplained()
        ));
    }
    for kind in KINDS {
        let [ok, refused, cancelled, _] = r.tally.get(kind);
        let expected = match kind {
            Kind::Unauthorized => refused,
            Kind::Cancel => cancelled,
            Kind::Limited => refused.min(ok),
            _ => ok,
        };
        if expected == 0 {
            p.push(format!("{kind:?}: never got its expected answer"));
        }
    }
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("panicked") || l.contains("\"level\":\"ERROR\""))
        .collect();
    if !bad.is_empty() {
        p.push(format!(
            "{} panics or errors in llmgate's log, e.g. {}",
            bad.len(),
            bad[0]
        ));
    }
    r.warnings = log
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .count();
    match r.after {
        Some(s) if s.connections == 0.0 && s.streams == 0.0 => {}
        s => p.push(format!(
            "in-flight gauges did not return to zero after traffic: {s:?}"
        )),
    }
    let judged: Vec<Sample> = r
        .samples
        .iter()
        .copied()
        .filter(|s| s.t >= opts.warmup.as_secs_f64())
        .collect();
    if judged.len() < 6 {
        p.push(format!(
            "only {} samples after warm-up: run longer",
            judged.len()
        ));
        return;
    }
    let third = judged.len() / 3;
    let (first, last) = (&judged[..third], &judged[judged.len() - third..]);
    let rss = |s: &Sample| s.rss_kib as f64;
    let fds = |s: &Sample| s.fds as f64;
    let rss_growth = median(last, rss) - median(first, rss);
    let rss_tolerance = (8.0 * 1024.0f64).max(0.10 * median(first, rss));
    let fd_growth = median(last, fds) - median(first, fds);
    let fd_tolerance = 2.0 * opts.workers as f64 + 8.0;
    println!(
        "after warm-up: RSS {:+.1} MiB (slope {:+.2} MiB/min, tolerance {:.1} MiB), fds {:+.0} (slope {:+.2}/min, tolerance {fd_tolerance})",
        rss_growth / 1024.0,
        slope(&judged, rss) * 60.0 / 1024.0,
        rss_tolerance / 1024.0,
        fd_growth,
        slope(&judged, fds) * 60.0,
    );
    if rss_growth > rss_tolerance {
        p.push(format!(
            "RSS grew {:.1} MiB after warm-up",
            rss_growth / 1024.0
        ));
    }
    if fd_growth > fd_tolerance {
        p.push(format!(
            "open descriptors grew by {fd_growth} after warm-up"
        ));
    }
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Outcomes per kind and the verdict.
    pub fn print(&self) {
        println!(
            "{:<13} {:>8} {:>8} {:>9} {:>11}",
            "kind", "ok", "refused", "cancelled", "unexplained"
        );
        for kind in KINDS {
            let [ok, refused, cancelled, bad] = self.tally.get(kind);
            println!(
                "{:<13} {ok:>8} {refused:>8} {cancelled:>9} {bad:>11}",
                format!("{kind:?}")
            );
        }
        let secs = self.samples.last().map_or(0.0, |s| s.t);
        println!(
            "{} requests in {secs:.0} s; {} warnings in llmgate's log",
            self.tally.total(),
            self.warnings
        );
        if self.passed() {
            println!("verdict: PASS");
        } else {
            println!("verdict: FAIL\n- {}", self.problems.join("\n- "));
        }
    }
}
