//! Resource footprint of the real llmgate binary, for sizing containers (deploy/README.md):
//! idle RSS, then RSS and CPU under a bounded load through llmgate to an in-process mock
//! upstream on 127.0.0.1 — short requests at fixed concurrency, then many held SSE streams.
//!
//!   cargo bench --bench footprint
//!
//! Sizes: FOOTPRINT_REQUESTS (default 20000), FOOTPRINT_CONCURRENCY (32), FOOTPRINT_STREAMS (200).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, Infallible>;

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today? This answer is about as long as a short chat reply."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}"#;
/// Chunks per held stream and the gap between them: 40 × 50 ms ≈ a 2 s generation.
const STREAM_CHUNKS: usize = 40;
const CHUNK_GAP: Duration = Duration::from_millis(50);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body: Body = if req.uri().path() == "/stream" {
                        let chunks = futures_util::stream::unfold(0, |i| async move {
                            if i == STREAM_CHUNKS {
                                return None;
                            }
                            tokio::time::sleep(CHUNK_GAP).await;
                            let data = Bytes::from(format!(
                                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"token {i} \"}}}}]}}\n\n"
                            ));
                            Some((Ok::<_, Infallible>(Frame::data(data)), i + 1))
                        });
                        StreamBody::new(chunks).boxed()
                    } else {
                        Full::new(Bytes::from_static(COMPLETION.as_bytes())).boxed()
                    };
                    let ctype = if req.uri().path() == "/stream" {
                        "text/event-stream"
                    } else {
                        "application/json"
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", ctype)
                            .body(body)
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The release binary, started with a config that forwards everything to `up`.
fn start_llmgate(up: SocketAddr, dir: &std::path::Path) -> (Child, SocketAddr, SocketAddr) {
    let path = dir.join("llmgate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\naccess_log = false\n[[upstreams]]\nname = \"mock\"\nurl = \"http://{up}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"mock\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmgate"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("llmgate listening"))
        .expect("llmgate did not start");
    std::thread::spawn(move || lines.for_each(drop));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = |k: &str| v[k].as_str().unwrap().parse().unwrap();
    (child, addr("listen"), addr("admin"))
}

/// (VmRSS, VmHWM) in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of the process so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f[11] + f[12];
    let hz: u64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_micros(ticks * 1_000_000 / hz)
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn request(path: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "llmgate.bench")
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from_static(
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .boxed(),
        )
        .unwrap()
}

#[tokio::main]
async fn main() {
    let total = env_usize("FOOTPRINT_REQUESTS", 20000);
    let conc = env_usize("FOOTPRINT_CONCURRENCY", 32).max(1);
    let streams = env_usize("FOOTPRINT_STREAMS", 200);
    let dir = tempfile::tempdir().unwrap();
    let up = upstream().await;
    let (mut child, addr, _admin) = start_llmgate(up, dir.path());
    let pid = child.id();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = rss(pid);

    let (cpu0, t0) = (cpu(pid), Instant::now());
    let workers: Vec<_> = (0..conc)
        .map(|w| {
            let n = total / conc + usize::from(w < total % conc);
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                for _ in 0..n {
                    sender.ready().await.unwrap();
                    let resp = sender
                        .send_request(request("/api/chat/completions"))
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (wall, used) = (t0.elapsed(), cpu(pid) - cpu0);
    let (after_requests, hwm_requests) = rss(pid);

    let (cpu1, t1) = (cpu(pid), Instant::now());
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        for _ in 0..40 {
            peak = peak.max(rss(pid).0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak
    });
    let held: Vec<_> = (0..streams)
        .map(|_| {
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let resp = sender.send_request(request("/stream")).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(
                    body.iter().filter(|&&b| b == b'\n').count(),
                    2 * STREAM_CHUNKS
                );
            })
        })
        .collect();
    for h in held {
        h.await.unwrap();
    }
    let (stream_wall, stream_cpu) = (t1.elapsed(), cpu(pid) - cpu1);
    let stream_peak = sampler.await.unwrap();
    let (_, hwm) = rss(pid);
    let _ = child.kill();
    let _ = child.wait();

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("llmgate footprint (release binary, mock upstream on loopback)");
    println!("  idle RSS:                          {:6.1} MiB", mib(idle));
    println!(
        "  {total} requests, {conc} connections:  {:.0} req/s, {:.2} s wall, CPU {:.0} ms ({:.1} ms per 1k requests, {:.2} cores busy)",
        total as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        used.as_secs_f64() * 1e3,
        used.as_secs_f64() * 1e6 / total as f64,
        used.as_secs_f64() / wall.as_secs_f64(),
    );
    println!(
        "  RSS after requests:                {:6.1} MiB (peak {:.1} MiB)",
        mib(after_requests),
        mib(hwm_requests)
    );
    println!(
        "  {streams} SSE streams held ~{:.1} s:     RSS peak {:.1} MiB, CPU {:.0} ms ({:.2} cores busy)",
        stream_wall.as_secs_f64(),
        mib(stream_peak.max(hwm)),
        stream_cpu.as_secs_f64() * 1e3,
        stream_cpu.as_secs_f64() / stream_wall.as_secs_f64(),
    );
    println!("  peak RSS over the run (VmHWM):     {:6.1} MiB", mib(hwm));
}
