//! What authentication costs on the hot path.
//!
//! 1. CPU per `Auth::authenticate` call, for each identity source: an llmgate key, an Open
//!    WebUI JWT verified locally, and an `sk-` key whose introspection answer is cached.
//! 2. Throughput and llmgate CPU per request through the real binary, for a public route
//!    (no authentication) and for each identity source, with 32 keep-alive connections.
//! 3. With `AUTH_BENCH_CALLGRIND=1`: instructions per request of the binary under callgrind,
//!    per mode. Unlike time, instruction counts do not change when other processes load the
//!    machine.
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
const ROUNDS: usize = 20;

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
        let config = format!("{routes}{auth_toml}");
        micro(&config, &key, &jwt).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("llmgate.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\nlevel = \"warn,llmgate=info\"\naccess_log = false\n{config}"),
        )
        .unwrap();
        let modes = modes(&key, &jwt);
        throughput(&path, &modes).await;
        if std::env::var_os("AUTH_BENCH_CALLGRIND").is_some() {
            instructions(&path, &modes).await;
        }
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
    // SHA-256 alone, the part every credential pays (valgrind hides SHA-NI, so part 3
    // counts the portable implementation instead).
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..200_000 {
            std::hint::black_box(llmgate::auth::keys::sha256(std::hint::black_box(jwt)));
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 200_000.0);
    }
    println!(
        "| (SHA-256 of the JWT alone, {} bytes) | {best:.0} |",
        jwt.len()
    );
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

/// (name, path, Authorization). Each credential goes once to a public route (nothing checked)
/// and once to an authenticated one, so the difference is what authentication adds.
type Mode = (String, &'static str, String);

fn modes(key: &str, jwt: &str) -> Vec<Mode> {
    let mut modes = Vec::new();
    for (name, cred) in [
        ("llmgate key", key),
        ("Open WebUI JWT (local HS256)", jwt),
        ("sk- key (cached introspection)", SK),
    ] {
        // Not a model-list path: those are answered from llmgate's cache, which would make the
        // authenticated side look cheaper than the public one.
        for (route, path) in [
            ("public", "/pub/api/v1/chats/"),
            ("authenticated", "/api/v1/chats/"),
        ] {
            modes.push((format!("{name}, {route}"), path, format!("Bearer {cred}")));
        }
    }
    modes
}

/// Part 2: the real binary, one mode at a time, rounds interleaved to spread machine noise.
async fn throughput(config: &std::path::Path, modes: &[Mode]) {
    // Short slices, many rounds, modes interleaved: load from other processes drifts slowly.
    let secs: u64 = std::env::var("AUTH_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (mut child, addr) = start_binary(Command::new(env!("CARGO_BIN_EXE_llmgate")), config);
    let mut results = vec![Vec::new(); modes.len()];
    for _round in 0..ROUNDS {
        for (i, (_, path, auth)) in modes.iter().enumerate() {
            let cpu0 = cpu_ticks(child.id());
            let n = load(addr, path, auth, Duration::from_secs(secs)).await;
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
    println!("| credential, route | requests/s | vs public | llmgate CPU µs/request | added µs |");
    println!("|---|---|---|---|---|");
    let mut base = (0.0, 0.0);
    for (i, (name, _, _)) in modes.iter().enumerate() {
        let rps = median(&mut results[i].iter().map(|r| r.0).collect());
        let cpu = median(&mut results[i].iter().map(|r| r.1).collect());
        if i % 2 == 0 {
            base = (rps, cpu);
            println!("| {name} | {rps:.0} | | {cpu:.1} | |");
        } else {
            println!(
                "| {name} | {rps:.0} | {:+.1}% | {cpu:.1} | {:+.1} |",
                (rps / base.0 - 1.0) * 100.0,
                cpu - base.1
            );
        }
    }
}

/// Runs `CONNECTIONS` clients for `dur`; returns the number of 200 answers.
async fn load(addr: SocketAddr, path: &str, auth: &str, dur: Duration) -> u64 {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (done, count) = (done.clone(), count.clone());
        let (path, auth) = (path.to_string(), auth.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !done.load(Ordering::Relaxed) {
                if tx.ready().await.is_err() {
                    break;
                }
                let req = Request::get(&path)
                    .header("host", "bench")
                    .header("authorization", &auth);
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

/// Part 3: the binary under callgrind; counters zeroed before and dumped after each mode.
async fn instructions(config: &std::path::Path, modes: &[Mode]) {
    const N: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cg.out");
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(env!("CARGO_BIN_EXE_llmgate"))
        .stderr(Stdio::null());
    let (mut child, addr) = start_binary(cmd, config);
    let pid = child.id().to_string();
    let control = |flag: &str| {
        let ok = Command::new("callgrind_control")
            .args([flag, pid.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "callgrind_control {flag} failed");
    };
    println!("\n## Instructions per request under callgrind ({N} sequential requests per mode, one connection; SHA-256 runs its portable code here)");
    println!("| credential, route | instructions per request | added by authentication |");
    println!("|---|---|---|");
    let mut base = 0.0;
    for (i, (name, path, auth)) in modes.iter().enumerate() {
        sequential(addr, path, auth, 100).await;
        control("-z");
        sequential(addr, path, auth, N).await;
        control("-d");
        let ir = newest_total(dir.path()) as f64 / N as f64;
        if i % 2 == 0 {
            base = ir;
            println!("| {name} | {ir:.0} | |");
        } else {
            println!(
                "| {name} | {ir:.0} | {:+.0} ({:+.1}%) |",
                ir - base,
                (ir / base - 1.0) * 100.0
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `n` requests one after another on one connection.
async fn sequential(addr: SocketAddr, path: &str, auth: &str, n: u64) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..n {
        tx.ready().await.unwrap();
        let req = Request::get(path)
            .header("host", "bench")
            .header("authorization", auth)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.into_body().collect().await.unwrap();
    }
}

/// The instruction total of the newest callgrind dump in `dir`.
fn newest_total(dir: &std::path::Path) -> u64 {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("no callgrind dump");
    let text = std::fs::read_to_string(newest.path()).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("no totals line in the callgrind dump")
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

fn start_binary(mut cmd: Command, config: &std::path::Path) -> (Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
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
