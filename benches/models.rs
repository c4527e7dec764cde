//! Model-list benchmark: `/api/models` answered by llmgate's cache while the upstream takes
//! 2 s to list, against nginx passing the same request to an upstream that answers at once.
//!
//! Run:   `cargo bench --bench models`   (about a minute)
//! Flags: `--secs N` per run (default 10), `--conns N` (default 64), `--rate N` requests/s of
//!        the paced latency run (default 10000), `--only WORD` runs the scenarios whose name
//!        contains WORD, `--keep` keeps the temp dir (configs, logs).
//!
//! Processes: this program re-executes itself pinned on CPU 0 (`taskset`; the load generator,
//! one current-thread runtime). The mock upstream is this executable started with
//! `--mock PORTFILE`; the mock, llmgate and nginx run on CPU 1. The mock's `/slow/...` paths
//! answer after 2 s and are counted (`GET /calls`). CPU time of a process is utime + stime
//! from /proc/PID/stat. Only loopback addresses are used.

use bytes::{Buf, BytesMut};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ENV_INNER: &str = "LLMGATE_MODELSBENCH_INNER";
const SLOW: Duration = Duration::from_secs(2);
const REQ: &[u8] =
    b"GET /api/models HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer sk-bench\r\n\r\n";
/// What browsers and the httpx-based openai/ollama Python clients send.
const REQ_GZIP: &[u8] = b"GET /api/models HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer sk-bench\r\naccept-encoding: gzip, deflate\r\n\r\n";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--mock") {
        return mock(Path::new(&args[1]));
    }
    let pin = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if pin && std::env::var_os(ENV_INNER).is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 65536 2>/dev/null; exec taskset -c 0 \"$0\" \"$@\"")
            .arg(exe)
            .args(&args)
            .env(ENV_INNER, "1")
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let opt = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let cfg = Cfg {
        secs: Duration::from_secs(opt("--secs", 10)),
        conns: opt("--conns", 64) as usize,
        rate: opt("--rate", 10_000),
        keep: args.iter().any(|a| a == "--keep"),
        pin,
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .map(|s| &*s.clone().leak()),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(cfg));
}

#[derive(Clone, Copy)]
struct Cfg {
    secs: Duration,
    conns: usize,
    rate: u64,
    keep: bool,
    pin: bool,
    only: Option<&'static str>,
}

impl Cfg {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_none_or(|w| scenario.contains(w))
    }
}

// --- the mock upstream (its own process) -------------------------------------------------

/// An Open WebUI-like `/api/models` of about 12 KB; `/slow/...` answers after 2 s.
fn mock(portfile: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        std::fs::write(portfile, listener.local_addr().unwrap().port().to_string()).unwrap();
        let entries: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"id":"model-{i:02}:latest","name":"model-{i:02}:latest","object":"model","created":1715367049,"owned_by":"ollama","connection_type":"local","tags":[],"actions":[],"filters":[],"info":{{"meta":{{"description":"a local model"}}}}}}"#))
            .collect();
        let list = Bytes::from(format!(r#"{{"data":[{}]}}"#, entries.join(",")));
        let calls = Arc::new(AtomicU64::new(0));
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (list, calls) = (list.clone(), calls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (list, calls) = (list.clone(), calls.clone());
                    async move {
                        let path = req.uri().path();
                        let body = if path == "/calls" {
                            Bytes::from(calls.load(Ordering::SeqCst).to_string())
                        } else {
                            if path.starts_with("/slow/") {
                                calls.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(SLOW).await;
                            }
                            list
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

// --- processes ------------------------------------------------------------------------------

struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    /// CPU seconds of the process and its children (nginx workers).
    fn cpu(&self) -> f64 {
        let pid = self.child.id();
        let mut pids = vec![pid];
        if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            pids.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
        let ticks: u64 = pids
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .map(|s| {
                let f: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split(' ').collect();
                f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
            })
            .sum();
        ticks as f64 / 100.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.name == "nginx" {
            // The master stops its workers on QUIT; kill() would orphan them.
            let _ = Command::new("kill")
                .args(["-QUIT", &self.child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(pin: bool, prog: &Path) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

fn start_mock(cfg: Cfg, dir: &Path) -> (Proc, SocketAddr) {
    let portfile = dir.join("mock.port");
    let child = pinned(cfg.pin, &std::env::current_exe().unwrap())
        .arg("--mock")
        .arg(&portfile)
        .env(ENV_INNER, "1")
        .spawn()
        .unwrap();
    let mock = Proc {
        child,
        name: "mock",
    };
    for _ in 0..500 {
        let port = std::fs::read_to_string(&portfile)
            .ok()
            .and_then(|p| p.parse::<u16>().ok());
        if let Some(port) = port {
            return (mock, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("mock upstream did not start");
}

/// llmgate in front of `upstream_url`, access log off (as nginx's), `extra` appended.
fn start_llmgate(cfg: Cfg, dir: &Path, upstream_url: &str, extra: &str) -> (Proc, SocketAddr) {
    let path = dir.join(format!("llmgate-{}.toml", extra.len()));
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\naccess_log = false\n\
         [[upstreams]]\nname = \"openwebui\"\nurl = \"{upstream_url}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"openwebui\"\n{extra}\n"
    );
    std::fs::write(&path, text).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_llmgate"));
    let child = pinned(cfg.pin, &bin)
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut gate = Proc {
        child,
        name: "llmgate",
    };
    let mut lines = io::BufReader::new(gate.child.stdout.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("llmgate listening"))
        .expect("llmgate did not start");
    std::thread::spawn(move || lines.for_each(drop));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["listen"].as_str().unwrap().parse().unwrap();
    (gate, addr)
}

/// nginx with the settings of PEERS.md §6 (1 worker, upstream keepalive, no buffering, no
/// gzip, no access log, a static Bearer allow-list).
fn start_nginx(cfg: Cfg, dir: &Path, mock: SocketAddr) -> Option<(Proc, SocketAddr)> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let d = dir.join("nginx");
    std::fs::create_dir_all(&d).ok()?;
    let dd = d.display();
    let conf = format!(
        "worker_processes 1;\nworker_rlimit_nofile 65536;\npid {dd}/nginx.pid;\nerror_log {dd}/error.log warn;\n\
         events {{ worker_connections 30000; }}\nhttp {{\n access_log off;\n gzip off;\n tcp_nodelay on;\n\
         keepalive_requests 10000000;\n client_body_temp_path {dd}/cb;\n proxy_temp_path {dd}/px;\n\
         fastcgi_temp_path {dd}/fc;\n uwsgi_temp_path {dd}/uw;\n scgi_temp_path {dd}/sc;\n\
         map $http_authorization $allowed {{ default 0; \"Bearer sk-bench\" 1; }}\n\
         upstream mock {{ server {mock}; keepalive 64; keepalive_requests 10000000; }}\n\
         server {{\n  listen 127.0.0.1:{port} backlog=4096;\n  location / {{\n\
         if ($allowed = 0) {{ return 401; }}\n   proxy_pass http://mock;\n   proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n   proxy_buffering off;\n   proxy_request_buffering off;\n\
         proxy_buffer_size 16k;\n   proxy_buffers 4 16k;\n  }}\n }}\n}}\n"
    );
    std::fs::write(d.join("nginx.conf"), conf).ok()?;
    let child = pinned(cfg.pin, &bin)
        .arg("-p")
        .arg(&d)
        .arg("-e")
        .arg(d.join("error.log"))
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let nginx = Proc {
        child,
        name: "nginx",
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some((nginx, addr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

// --- the load generator ---------------------------------------------------------------------

/// A keep-alive HTTP/1.1 connection that reads responses with content-length or chunked bodies.
struct Conn {
    s: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self {
            s,
            buf: BytesMut::with_capacity(32 << 10),
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.s.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Sends `req` and reads the whole response; returns its status (and, with `keep`, its
    /// content-length body).
    async fn round_trip(&mut self, req: &[u8], keep: bool) -> io::Result<(u16, Vec<u8>)> {
        self.s.write_all(req).await?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(io::Error::other)?
            .to_ascii_lowercase();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        self.buf.advance(head_end);
        let mut body = Vec::new();
        match length {
            Some(n) => {
                while self.buf.len() < n {
                    self.fill().await?;
                }
                if keep {
                    body.extend_from_slice(&self.buf[..n]);
                }
                self.buf.advance(n);
            }
            None => loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..line_end])
                        .map_err(io::Error::other)?
                        .trim(),
                    16,
                )
                .map_err(io::Error::other)?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill().await?;
                }
                self.buf.advance(line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            },
        }
        Ok((status, body))
    }
}

#[derive(Default)]
struct Load {
    ok: u64,
    errors: u64,
    /// Latencies in microseconds.
    lat: Vec<u32>,
    elapsed: Duration,
}

/// `conns` connections for `secs`: closed loop (`gap` = None: next request when the last
/// answer is in), or each connection paced at one request per `gap`.
async fn load(
    addr: SocketAddr,
    req: &'static [u8],
    conns: usize,
    secs: Duration,
    gap: Option<Duration>,
) -> Load {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + secs;
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            tokio::spawn(async move {
                let mut out = Load::default();
                let Ok(mut c) = Conn::open(addr).await else {
                    out.errors += 1;
                    return out;
                };
                let mut next = tokio::time::Instant::now();
                if let Some(g) = gap {
                    next += g * i as u32 / conns as u32;
                }
                while tokio::time::Instant::now() < deadline {
                    if let Some(g) = gap {
                        tokio::time::sleep_until(next).await;
                        next += g;
                    }
                    let t = Instant::now();
                    match c.round_trip(req, false).await {
                        Ok((200, _)) => {
                            out.ok += 1;
                            out.lat
                                .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Ok(_) => out.errors += 1,
                        Err(_) => {
                            out.errors += 1;
                            match Conn::open(addr).await {
                                Ok(n) => c = n,
                                Err(_) => return out,
                            }
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut all = Load::default();
    for t in tasks {
        let o = t.await.unwrap();
        all.ok += o.ok;
        all.errors += o.errors;
        all.lat.extend(o.lat);
    }
    all.elapsed = start.elapsed();
    all.lat.sort_unstable();
    all
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

async fn upstream_calls(mock: SocketAddr) -> u64 {
    let mut c = Conn::open(mock).await.unwrap();
    let (_, body) = c
        .round_trip(b"GET /calls HTTP/1.1\r\nhost: mock\r\n\r\n", true)
        .await
        .unwrap();
    String::from_utf8_lossy(&body).parse().unwrap()
}

struct Row {
    label: String,
    load: Load,
    cpu: f64,
    /// CPU seconds the mock upstream spent meanwhile.
    upstream_cpu: f64,
    calls: Option<u64>,
}

impl Row {
    fn no_calls(mut self) -> Self {
        self.calls = None;
        self
    }

    fn print(&self) {
        let l = &self.load;
        let rps = l.ok as f64 / l.elapsed.as_secs_f64();
        let calls = self.calls.map_or("-".to_string(), |c| {
            format!(
                "{c} ({:.4} per 1000)",
                c as f64 * 1000.0 / l.ok.max(1) as f64
            )
        });
        let per_req = |cpu: f64| cpu * 1e6 / l.ok.max(1) as f64;
        println!(
            "{:<54} {:>8.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.1} {:>7.1} {:>6} {}",
            self.label,
            rps,
            pct(&l.lat, 0.5),
            pct(&l.lat, 0.99),
            pct(&l.lat, 0.999),
            l.lat.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
            per_req(self.cpu),
            per_req(self.upstream_cpu),
            l.errors,
            calls
        );
    }
}

struct Target<'a> {
    proxy: Option<&'a Proc>,
    addr: SocketAddr,
    mock: &'a Proc,
    mock_addr: SocketAddr,
    req: &'static [u8],
}

async fn measure(label: &str, t: &Target<'_>, cfg: Cfg, gap: Option<Duration>) -> Row {
    let cpu = || (t.proxy.map_or(0.0, Proc::cpu), t.mock.cpu());
    let before = (cpu(), upstream_calls(t.mock_addr).await);
    let load = load(t.addr, t.req, cfg.conns, cfg.secs, gap).await;
    let after = cpu();
    let calls = upstream_calls(t.mock_addr).await - before.1;
    Row {
        label: label.to_string(),
        load,
        cpu: after.0 - before.0 .0,
        upstream_cpu: after.1 - before.0 .1,
        calls: Some(calls),
    }
}

async fn run(cfg: Cfg) {
    let dir = tempfile::tempdir().unwrap();
    let (mock_proc, mock) = start_mock(cfg, dir.path());
    let slow_url = format!("http://{mock}/slow");
    let fast_url = format!("http://{mock}");
    println!(
        "models bench: {} connections, {} s per run, pinned: {}; the upstream's list takes {} s on /slow",
        cfg.conns,
        cfg.secs.as_secs(),
        cfg.pin,
        SLOW.as_secs()
    );
    let gap = Duration::from_secs_f64(cfg.conns as f64 / cfg.rate as f64);
    let mut rows = Vec::new();

    if cfg.wants("direct") {
        // The mock itself: what the load generator does against a fast server.
        let direct = Target {
            proxy: None,
            addr: mock,
            mock: &mock_proc,
            mock_addr: mock,
            req: REQ,
        };
        let _ = load(mock, REQ, cfg.conns, Duration::from_secs(1), None).await;
        rows.push(
            measure("mock upstream directly", &direct, cfg, None)
                .await
                .no_calls(),
        );
    }
    if cfg.wants("cached") {
        // llmgate, cached, in front of the 2 s upstream (default ttl 30s, stale_for 10m).
        let (gate, addr) = start_llmgate(cfg, dir.path(), &slow_url, "");
        let t = Instant::now();
        let mut warm = Conn::open(addr).await.unwrap();
        assert_eq!(warm.round_trip(REQ, false).await.unwrap().0, 200);
        println!(
            "first (uncached) /api/models through llmgate: {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let _ = load(addr, REQ, cfg.conns, Duration::from_secs(1), None).await;
        let cached = Target {
            proxy: Some(&gate),
            addr,
            mock: &mock_proc,
            mock_addr: mock,
            req: REQ,
        };
        rows.push(
            measure(
                "llmgate cached, upstream list 2 s, closed loop",
                &cached,
                cfg,
                None,
            )
            .await,
        );
        let label = format!("llmgate cached, paced {} req/s", cfg.rate);
        rows.push(measure(&label, &cached, cfg, Some(gap)).await);
        // The same clients with `Accept-Encoding: gzip`: the list is sent in its gzip form.
        let gz = Target {
            req: REQ_GZIP,
            ..cached
        };
        let label = "llmgate cached, client accepts gzip, closed loop";
        rows.push(measure(label, &gz, cfg, None).await);
        let label = format!(
            "llmgate cached, client accepts gzip, paced {} req/s",
            cfg.rate
        );
        rows.push(measure(&label, &gz, cfg, Some(gap)).await);
    }
    if cfg.wants("churn") {
        // ttl 1s: the list is stale most of the time and refreshed behind the answers.
        let extra = "[model_cache]\nttl = \"1s\"\n";
        let (gate, addr) = start_llmgate(cfg, dir.path(), &slow_url, extra);
        let mut warm = Conn::open(addr).await.unwrap();
        assert_eq!(warm.round_trip(REQ, false).await.unwrap().0, 200);
        let churn = Target {
            proxy: Some(&gate),
            addr,
            mock: &mock_proc,
            mock_addr: mock,
            req: REQ,
        };
        let label = "llmgate cached, ttl 1s (refresh churn), closed loop";
        rows.push(measure(label, &churn, cfg, None).await);
    }
    if cfg.wants("pass") {
        // Pass-through of the same request to a fast upstream (no list paths configured).
        let extra = "[model_cache]\npaths = []\n";
        let (gate, addr) = start_llmgate(cfg, dir.path(), &fast_url, extra);
        let _ = load(addr, REQ, cfg.conns, Duration::from_secs(1), None).await;
        let pass = Target {
            proxy: Some(&gate),
            addr,
            mock: &mock_proc,
            mock_addr: mock,
            req: REQ,
        };
        let label = "llmgate pass-through (no list paths), fast upstream";
        rows.push(measure(label, &pass, cfg, None).await.no_calls());
    }
    match cfg
        .wants("nginx")
        .then(|| start_nginx(cfg, dir.path(), mock))
        .flatten()
    {
        Some((nginx, addr)) => {
            let _ = load(addr, REQ, cfg.conns, Duration::from_secs(1), None).await;
            let t = Target {
                proxy: Some(&nginx),
                addr,
                mock: &mock_proc,
                mock_addr: mock,
                req: REQ,
            };
            rows.push(
                measure("nginx pass-through, fast upstream", &t, cfg, None)
                    .await
                    .no_calls(),
            );
            let label = format!("nginx pass-through, paced {} req/s", cfg.rate);
            rows.push(measure(&label, &t, cfg, Some(gap)).await.no_calls());
        }
        None if cfg.wants("nginx") => println!(
            "nginx not found or did not start: install nginx (apt-get install nginx) for its rows"
        ),
        None => {}
    }

    println!(
        "\n{:<54} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} upstream calls",
        "scenario", "req/s", "p50 ms", "p99 ms", "p999 ms", "max ms", "CPU µs", "up µs", "errors"
    );
    for r in &rows {
        r.print();
    }
    let rps = |label: &str| {
        rows.iter()
            .find(|r| r.label.starts_with(label))
            .map(|r| r.load.ok as f64 / r.load.elapsed.as_secs_f64())
    };
    if let (Some(cached), Some(nginx)) = (
        rps("llmgate cached, upstream list 2 s"),
        rps("nginx pass-through, fast"),
    ) {
        println!(
            "\ncached llmgate / nginx pass-through requests/s: {:.2}x",
            cached / nginx
        );
    }
    if let (Some(cached), Some(nginx)) = (
        rps("llmgate cached, client accepts gzip, closed"),
        rps("nginx pass-through, fast"),
    ) {
        println!(
            "cached llmgate (client accepts gzip) / nginx pass-through requests/s: {:.2}x",
            cached / nginx
        );
    }
    println!(
        "(CPU µs: the proxy's CPU time per request, from /proc/PID/stat, nginx master + worker;"
    );
    println!(
        " up µs: the mock upstream's; upstream calls: list requests that reached the 2 s upstream)"
    );
    drop(mock_proc);
    if cfg.keep {
        println!("kept {}", dir.keep().display());
    }
}
