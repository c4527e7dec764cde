//! Cost of rate limiting: the in-process limiter's decision, one Redis decision (one round
//! trip), and requests/s through llmgate with no limits, memory limits and Redis limits.
//!
//! Run: `cargo bench --bench limits` (about a minute; `-- --quick` for about 15 s).
//! Needs `redis-server` on PATH (tests/setup.sh installs it) for the Redis figures; it is
//! started on a free loopback port without persistence and killed at the end. Everything runs
//! in this process on loopback: a mock upstream answering `{}`, llmgate, and a closed-loop
//! load generator over keep-alive connections. Runs of the three set-ups alternate, and the
//! median of each is reported, so a busy machine skews them alike.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use llmgate::limits::{Ask, Key, Limits, Memory, Plan, UsageStrip, Window, MINUTE_NS, TOK_MINUTE};
use llmgate::models::ReadAhead;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# llmgate rate limit benchmark ({})",
        if quick { "quick" } else { "full" }
    );
    decisions(quick);
    token_budget(quick);
    let redis = RedisServer::start();
    rt.block_on(async {
        round_trips(redis.as_ref(), quick).await;
        throughput(redis.as_ref(), quick).await;
    });
}

/// Nanoseconds per decision of the in-process limiter, without the proxy around it.
fn decisions(quick: bool) {
    let n: u32 = if quick { 200_000 } else { 2_000_000 };
    let mem = Memory::new();
    let mut plan = Plan::default();
    plan.slots[0] = Window::per(MINUTE_NS, u64::from(u32::MAX), 0).map(|w| (w, 1));
    let hot = Key::Id("team-a".into());
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(mem.decide(&hot, &plan, 0, mem.now()));
    }
    let one_key = t.elapsed().as_nanos() as f64 / f64::from(n);
    let t = Instant::now();
    for i in 0..n {
        let key = Key::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
        std::hint::black_box(mem.decide(&key, &plan, 0, mem.now()));
    }
    let new_keys = t.elapsed().as_nanos() as f64 / f64::from(n);
    let t = Instant::now();
    let evicted = mem.evict(u64::MAX);
    let evict = t.elapsed();
    let contended = std::thread::scope(|s| {
        let t = Instant::now();
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n / 2 {
                    std::hint::black_box(mem.decide(&hot, &plan, 1_000_000, mem.now()));
                    mem.release(&hot);
                }
            });
        }
        t
    })
    .elapsed()
    .as_nanos() as f64
        / f64::from(n);
    println!("memory decision, one key:                 {one_key:8.0} ns");
    println!("memory decision, a new key each time:     {new_keys:8.0} ns");
    println!("memory decision + stream release, 2 threads on one key: {contended:8.0} ns");
    println!("evicting {evicted} idle keys:             {evict:?}");
}

/// A token budget's per-request cost on the in-process limiter: reading the reservation from
/// the fields the model scanner found, the decision with a token window, and the settlement;
/// plus the per-frame cost of taking the usage chunk out of a stream.
fn token_budget(quick: bool) {
    let n: u32 = if quick { 200_000 } else { 2_000_000 };
    let body = Bytes::from_static(
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello in five languages"}],"max_tokens":200,"stream":true}"#,
    );
    let frames: VecDeque<_> = [http_body::Frame::data(body.clone())].into();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ReadAhead::facts_of(std::iter::once(&body[..])));
    }
    let scan = t.elapsed().as_nanos() as f64 / f64::from(n);
    let facts = ReadAhead::facts_of(std::iter::once(&body[..]));
    let mem = Memory::new();
    let key = Key::Id("team-a".into());
    let w = Window::per(MINUTE_NS, u64::from(u32::MAX), 0).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let ask = Ask::of(&facts, &frames, Some(body.len() as u64), 256).unwrap();
        let mut plan = Plan::default();
        plan.slots[TOK_MINUTE] = Some((w, ask.cost()));
        std::hint::black_box(mem.decide(&key, &plan, 0, mem.now()));
        // Settled with a real usage of 40 tokens.
        let delta = 40 - ask.cost() as i64;
        mem.adjust(&key, TOK_MINUTE, w, delta, mem.now());
    }
    let reserve_settle = t.elapsed().as_nanos() as f64 / f64::from(n);
    let chunk = Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n",
    );
    let mut strip = UsageStrip::default();
    let t = Instant::now();
    for _ in 0..n {
        assert!(strip.frame(std::hint::black_box(&chunk)).is_none());
    }
    let per_frame = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!(
        "token budget, scan of a {} B body:        {scan:8.0} ns",
        body.len()
    );
    println!("token budget, reserve + settle (memory):  {reserve_settle:8.0} ns");
    println!(
        "usage chunk strip, per {} B SSE chunk:     {per_frame:8.0} ns",
        chunk.len()
    );
}

/// One admission decision end to end, sequentially: memory vs Redis (one round trip).
async fn round_trips(redis: Option<&RedisServer>, quick: bool) {
    let n = if quick { 2_000 } else { 20_000 };
    let metrics = llmgate::metrics::Metrics::new();
    let mut parts = Request::new(()).into_parts().0;
    let mut body = llmgate::body::RequestBody::empty();
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut setups = vec![("memory", limits_config("memory", ""))];
    if let Some(r) = redis {
        setups.push(("redis", limits_config("redis", &r.url())));
    }
    for (name, cfg) in setups {
        let limits = Limits::new(&cfg).unwrap();
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let a = limits
                .admit("bench", &mut parts, &mut body, None, peer, &metrics)
                .await;
            lat.push(t.elapsed());
            assert!(matches!(a, Ok(Some(_))), "{name}: not admitted");
        }
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "admission decision, {name:6}: p50 {:?}  p99 {:?}  ({n} sequential)",
            p(0.5),
            p(0.99)
        );
    }
}

fn limits_config(backend: &str, url: &str) -> llmgate::config::RateLimitConfig {
    let mut text = format!(
        "[rate_limit]\nunauthenticated_per_ip_per_minute = 4000000000\nbackend = \"{backend}\"\n"
    );
    if !url.is_empty() {
        text.push_str(&format!("redis_url = \"{url}\"\n"));
    }
    let text = format!("{text}[[upstreams]]\nname = \"m\"\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n");
    llmgate::config::parse("bench.toml", &text, &|_| None)
        .unwrap()
        .rate_limit
        .unwrap()
}

/// Requests/s through llmgate: closed loop, `CONNS` keep-alive connections, all from one
/// client address (so every request hits the same limiter key: the worst case for locking).
async fn throughput(redis: Option<&RedisServer>, quick: bool) {
    const CONNS: usize = 32;
    let secs = if quick { 2 } else { 4 };
    let rounds = if quick { 1 } else { 3 };
    let up = mock_upstream().await;
    let base = format!(
        "[log]\naccess_log = false\nlevel = \"warn\"\n[[upstreams]]\nname = \"m\"\nurl = \"http://{up}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n"
    );
    let mut setups = vec![
        ("no limits", base.clone()),
        (
            "memory",
            format!("{base}[rate_limit]\nunauthenticated_per_ip_per_minute = 4000000000\n"),
        ),
    ];
    if let Some(r) = redis {
        setups.push((
            "redis",
            format!(
                "{base}[rate_limit]\nunauthenticated_per_ip_per_minute = 4000000000\nbackend = \"redis\"\nredis_url = \"{}\"\n",
                r.url()
            ),
        ));
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for _ in 0..rounds {
        for (i, (_, cfg)) in setups.iter().enumerate() {
            results[i].push(run_load(cfg, CONNS, Duration::from_secs(secs)).await);
        }
    }
    for ((name, _), mut r) in setups.iter().zip(results) {
        r.sort_by(f64::total_cmp);
        println!(
            "through llmgate, {name:9}: {:8.0} requests/s (median of {rounds}: {:?})",
            r[r.len() / 2],
            r.iter().map(|v| v.round()).collect::<Vec<_>>()
        );
    }
}

async fn run_load(config: &str, conns: usize, for_: Duration) -> f64 {
    let text =
        format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{config}");
    let cfg = llmgate::config::parse("bench.toml", &text, &|_| None).unwrap();
    let server = llmgate::Server::bind(&cfg).await.unwrap();
    let addr = server.proxy_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + for_;
    let clients: Vec<_> = (0..conns)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                let s = TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                // Bounded by the deadline and by a request count.
                for _ in 0..5_000_000u32 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let req = Request::get("/v1/models")
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let resp = tx.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t = Instant::now();
    for c in clients {
        c.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let _ = task.await;
    rate
}

async fn mock_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(b"{}")))
                            .unwrap(),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// `redis-server` on a free loopback port, no persistence; `None` (and a note) when absent.
struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            println!("redis-server not found: Redis figures skipped (tests/setup.sh installs it)");
            return None;
        };
        let server = Self { port, child };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("redis-server did not start: Redis figures skipped");
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
