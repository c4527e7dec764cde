//! What authentication costs on the hot path.
//!
//! 1. CPU per `Auth::authenticate` call, for each identity source: an llmgate key, an Open
//!    WebUI JWT verified locally, and an `sk-` key whose introspection answer is cached.
//! 2. Throughput and llmgate CPU per request through the real binary, for a public route
//!    (no authentication) and for each identity source, with 32 keep-alive connections.
//!
//! `cargo bench --bench auth` (env `AUTH_BENCH_SECS` sets seconds per throughput slice, 1).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "bench-secret-0123456789abcdef";
const SK: &str = "sk-0123456789abcdef0123456789abcdef";
const CONNECTIONS: usize = 32;
const ROUNDS: usize = 10;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let upstream = mock_upstream().await;
        let key = llmgate::auth::keys::generate();
        let jwt = jwt();
        let auth_toml = format!(
            "[auth]\nopenwebui_jwt_secret = \"{SECRET}\"\nintrospect_upstream = \"up\"\n[[auth.keys]]\nid = \"bench\"\nsha256 = \"{}\"\n",
            hex::encode(llmgate::auth::keys::sha256(&key))
        );
        let routes = format!(
            "[[upstreams]]\nname = \"up\"\nurl = \"http://{upstream}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"up\"\n[[routes]]\npath_prefix = \"/pub/\"\nupstream = \"up\"\npublic = true\n"
        );
        println!("# llmgate auth benchmark");
        println!("machine: {} cores; other builds may be running (load average {})", num_cpus(), loadavg());
        micro(&format!("{routes}{auth_toml}"), &key, &jwt).await;
        throughput(&format!("{routes}{auth_toml}"), &key, &jwt).await;
    });
}

/// Part 1: `Auth::authenticate` in a loop, per identity source.
async fn micro(config: &str, key: &str, jwt: &str) {
    let cfg = llmgate::config::parse("bench.toml", config, &|_| None).unwrap();
    let auth = llmgate::auth::Auth::new(cfg.auth.as_ref().unwrap(), &cfg.upstreams);
    let peer = "10.1.2.3".parse().unwrap();
    println!("\n## CPU per authenticate() call (single thread; best of 5 runs of 200k)");
    println!("| identity source | ns per request |");
    println!("|---|---|");
    // Distinct tokens, so each is verified in full (HS256, base64, JSON) rather than remembered.
    let fresh: Vec<http::HeaderMap> = (0..20_000)
        .map(|i| {
            let mut h = http::HeaderMap::new();
            h.insert(
                "authorization",
                format!("Bearer {}", jwt_for(&format!("u{i}")))
                    .parse()
                    .unwrap(),
            );
            h
        })
        .collect();
    let t = Instant::now();
    for h in &fresh {
        std::hint::black_box(
            auth.authenticate(h, "/api/models", None, peer)
                .await
                .unwrap(),
        );
    }
    let first = t.elapsed().as_nanos() as f64 / fresh.len() as f64;
    println!("| Open WebUI JWT, first sight (full HS256 verification) | {first:.0} |");
    for (name, cred) in [
        ("llmgate key (sha256 + constant-time lookup)", key),
        ("Open WebUI JWT, seen before (remembered until exp)", jwt),
        ("sk- key, cached introspection", SK),
    ] {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {cred}").parse().unwrap());
        // The first call fills the introspection cache.
        auth.authenticate(&headers, "/api/models", None, peer)
            .await
            .unwrap();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let n = 200_000;
            let t = Instant::now();
            for _ in 0..n {
                let id = auth
                    .authenticate(&headers, "/api/models", None, peer)
                    .await
                    .unwrap();
                std::hint::black_box(id);
            }
            best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
        }
        println!("| {name} | {best:.0} |");
    }
}

/// Part 2: the real binary, one mode at a time, rounds interleaved to spread machine noise.
async fn throughput(config: &str, key: &str, jwt: &str) {
    let secs: u64 = std::env::var("AUTH_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmgate.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"warn,llmgate=info\"\naccess_log = false\n{config}"),
    )
    .unwrap();
    let (mut child, addr) = start_binary(&path);
    let modes: [(&str, &str, Option<String>); 4] = [
        // The same Authorization header as the JWT mode, so only authentication differs.
        (
            "public route, no authentication",
            "/pub/v1/models",
            Some(format!("Bearer {jwt}")),
        ),
        ("llmgate key", "/v1/models", Some(format!("Bearer {key}"))),
        (
            "Open WebUI JWT (local HS256)",
            "/v1/models",
            Some(format!("Bearer {jwt}")),
        ),
        (
            "sk- key (cached introspection)",
            "/v1/models",
            Some(format!("Bearer {SK}")),
        ),
    ];
    let mut results = vec![Vec::new(); modes.len()];
    for _round in 0..ROUNDS {
        for (i, (_, path, auth)) in modes.iter().enumerate() {
            let cpu0 = cpu_ticks(child.id());
            let n = load(addr, path, auth.as_deref(), Duration::from_secs(secs)).await;
            let cpu = cpu_ticks(child.id()) - cpu0;
            results[i].push((n as f64 / secs as f64, cpu as f64 * 10_000.0 / n as f64));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!("\n## Through the binary: {CONNECTIONS} keep-alive connections, {secs} s x {ROUNDS} rounds, medians");
    println!("| mode | requests/s | vs public | llmgate CPU µs/request |");
    println!("|---|---|---|---|");
    let base = median(&mut results[0].iter().map(|r| r.0).collect());
    for (i, (name, _, _)) in modes.iter().enumerate() {
        let rps = median(&mut results[i].iter().map(|r| r.0).collect());
        let cpu = median(&mut results[i].iter().map(|r| r.1).collect());
        println!(
            "| {name} | {rps:.0} | {:+.1}% | {cpu:.1} |",
            (rps / base - 1.0) * 100.0
        );
    }
}

/// Runs `CONNECTIONS` clients for `dur`; returns the number of 200 answers.
async fn load(addr: SocketAddr, path: &str, auth: Option<&str>, dur: Duration) -> u64 {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (done, count) = (done.clone(), count.clone());
        let (path, auth) = (path.to_string(), auth.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !done.load(Ordering::Relaxed) {
                let mut req = Request::get(&path).header("host", "bench");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                let resp = tx
                    .send_request(req.body(Empty::<Bytes>::new()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{path}");
                resp.into_body().collect().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(dur).await;
    let n = count.load(Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    n
}

/// The upstream: a small models list, and the user for `SK` on Open WebUI's status path.
async fn mock_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = if req.uri().path() == "/api/v1/users/user/status" {
                        r#"{"id":"u1","role":"user"}"#
                    } else {
                        r#"{"object":"list","data":[{"id":"llama3.2:latest","object":"model"}]}"#
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        body.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn start_binary(config: &std::path::Path) -> (Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmgate"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("llmgate listening")))
        .expect("llmgate did not start")
        .unwrap();
    std::thread::spawn(move || for _ in lines {});
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    (child, v["listen"].as_str().unwrap().parse().unwrap())
}

fn jwt() -> String {
    jwt_for("u7")
}

fn jwt_for(id: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"id": id, "exp": exp, "jti": "j", "typ": "session"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// utime + stime of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
