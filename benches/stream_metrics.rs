//! What full LLM metrics cost on the streaming hot path.
//!
//! 1. SSE chunks/s through llmgate with `[metrics] llm = true` (model, TTFT, inter-token,
//!    tokens, cost) against `llm = false`, both proxies in this process, measured in
//!    alternating rounds so background load hits both alike.
//! 2. The observer alone: nanoseconds per frame for SSE, NDJSON and JSON bodies.
//!
//! `cargo bench --bench stream_metrics` (optional args: chunks per stream, rounds).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use llmgate::observe::{Format, UsageObserver};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};

const CONCURRENT_STREAMS: usize = 4;

/// One round's (chunks per second, CPU ns per chunk).
type Round = (f64, f64);

fn sse_chunks(n: usize) -> Vec<Bytes> {
    let chunk = |delta: &str, usage: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-8d1f\",\"object\":\"chat.completion.chunk\",\"created\":1767225600,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{delta}],\"usage\":{usage}}}\n\n"
        ))
    };
    let mut out = vec![chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}"#,
        "null",
    )];
    let words = [
        " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dogs",
    ];
    out.extend((0..n).map(|i| {
        let delta = format!(
            r#"{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,"finish_reason":null}}"#,
            words[i % words.len()]
        );
        chunk(&delta, "null")
    }));
    out.push(chunk(
        "",
        &format!(
            r#"{{"prompt_tokens":42,"completion_tokens":{n},"total_tokens":{}}}"#,
            n + 42
        ),
    ));
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// An upstream that answers every request with the same SSE stream, one chunk per frame,
/// as fast as the proxy takes them.
async fn upstream(chunks: Vec<Bytes>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let chunks = chunks.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let frames = chunks
                        .clone()
                        .into_iter()
                        .map(|c| Ok::<_, Infallible>(Frame::data(c)));
                    let body = StreamBody::new(futures_util::stream::iter(frames));
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(body)
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(up: SocketAddr, llm: bool) -> SocketAddr {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[log]\naccess_log = false\n[metrics]\nllm = {llm}\n[[upstreams]]\nname = \"up\"\nurl = \"http://{up}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"up\"\n[[pricing]]\nmodel = \"gpt-4o*\"\ninput_per_million = 0.15\noutput_per_million = 0.6\n"
    );
    let config = llmgate::config::parse("bench.toml", &text, &|_| None).unwrap();
    let server = llmgate::Server::bind(&config).await.unwrap();
    let addr = server.proxy_addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

/// Reads one whole stream through `addr`; returns its size in bytes.
async fn one_stream(addr: SocketAddr) -> usize {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/v1/chat/completions")
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let mut bytes = 0;
    while let Some(f) = body.frame().await {
        bytes += f.unwrap().data_ref().map_or(0, Bytes::len);
    }
    bytes
}

/// CPU time this process's threads have used, in ns. Read from /proc, so load from other
/// processes does not count, as it does in wall-clock figures.
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One round of concurrent streams: (chunks per second, CPU ns per chunk for the whole
/// process: upstream, llmgate and client).
async fn round(addr: SocketAddr, chunks_per_stream: usize) -> Round {
    let (t, cpu) = (Instant::now(), cpu_ns());
    let tasks: Vec<_> = (0..CONCURRENT_STREAMS)
        .map(|_| tokio::spawn(one_stream(addr)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let chunks = (CONCURRENT_STREAMS * chunks_per_stream) as f64;
    (
        chunks / t.elapsed().as_secs_f64(),
        (cpu_ns() - cpu) as f64 / chunks,
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Nanoseconds per frame of the observer alone over `frames`: the best of 7 trials of
/// `reps` passes (the minimum is what the code costs; slower trials met other load).
fn observer_ns(format: Format, frames: &[Bytes], reps: usize) -> f64 {
    let start = tokio::time::Instant::now();
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                let mut obs = UsageObserver::new(format, start);
                for f in frames {
                    std::hint::black_box(obs.on_frame(f, start));
                }
                std::hint::black_box(obs.finish(100));
            }
            t.elapsed().as_nanos() as f64 / (reps * frames.len()) as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let chunks_per_stream = args.first().copied().unwrap_or(5_000);
    let rounds = args.get(1).copied().unwrap_or(40);

    let chunks = sse_chunks(chunks_per_stream);
    let ndjson: Vec<Bytes> = (0..1000)
        .map(|i| Bytes::from(format!("{{\"model\":\"llama3.2:latest\",\"created_at\":\"2026-01-01T00:00:00.{i:06}Z\",\"message\":{{\"role\":\"assistant\",\"content\":\" word\"}},\"done\":false}}\n")))
        .collect();
    let json = vec![Bytes::from(format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":11,"completion_tokens":700,"total_tokens":711}}}}"#,
        "word ".repeat(700)
    ))];
    println!("observer alone (ns per frame, best of 7 trials):");
    println!(
        "  SSE chat chunk ({} B): {:.0} ns",
        chunks[1].len(),
        observer_ns(Format::Sse, &chunks[..1003.min(chunks.len())], 500)
    );
    println!(
        "  NDJSON line ({} B):     {:.0} ns",
        ndjson[0].len(),
        observer_ns(Format::Ndjson, &ndjson, 500)
    );
    println!(
        "  JSON answer ({} B):   {:.0} ns",
        json[0].len(),
        observer_ns(Format::Json, &json, 50_000)
    );
    // The worst case for the usage search: a completion with no usage anywhere in its tail.
    let no_usage = vec![Bytes::from(format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}]}}"#,
        "word ".repeat(2400)
    ))];
    println!(
        "  JSON answer without usage ({} B): {:.0} ns",
        no_usage[0].len(),
        observer_ns(Format::Json, &no_usage, 20_000)
    );
    if std::env::args().any(|a| a == "--observer-only") {
        return;
    }

    // One thread first: upstream, llmgate and client share it, so CPU per chunk is free of
    // cross-thread wake-ups and of other processes' load. Then the usual multi-thread runtime.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    single.block_on(compare(
        "1 thread",
        chunks.clone(),
        chunks_per_stream,
        rounds,
    ));
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(compare("2 threads", chunks, chunks_per_stream, rounds));
}

/// Streams through llmgate with LLM metrics on and off, in alternating rounds.
async fn compare(runtime: &str, chunks: Vec<Bytes>, chunks_per_stream: usize, rounds: usize) {
    let stream_bytes: usize = chunks.iter().map(Bytes::len).sum();
    let up = upstream(chunks).await;
    let on = proxy(up, true).await;
    let off = proxy(up, false).await;
    assert_eq!(one_stream(on).await, stream_bytes, "every byte arrives");
    round(on, chunks_per_stream).await; // warm-up
    round(off, chunks_per_stream).await;
    let (mut with, mut without) = (Vec::<Round>::new(), Vec::<Round>::new());
    for r in 0..rounds {
        // Alternate the order so neither variant always runs first.
        if r % 2 == 0 {
            with.push(round(on, chunks_per_stream).await);
            without.push(round(off, chunks_per_stream).await);
        } else {
            without.push(round(off, chunks_per_stream).await);
            with.push(round(on, chunks_per_stream).await);
        }
    }
    println!(
        "SSE through llmgate ({runtime}), {CONCURRENT_STREAMS} concurrent streams x {chunks_per_stream} chunks, {rounds} paired rounds (medians):"
    );
    let med = |v: &[Round], f: fn(&Round) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
    for (name, v) in [
        ("on  (llm = true) ", &with),
        ("off (llm = false)", &without),
    ] {
        println!(
            "  metrics {name}: {:>8.0} chunks/s, {:>6.0} ns CPU per chunk",
            med(v, |x| x.0),
            med(v, |x| x.1)
        );
    }
    let paired = |f: fn(&Round) -> f64| {
        let mut r: Vec<f64> = with
            .iter()
            .zip(&without)
            .map(|(w, wo)| f(w) / f(wo))
            .collect();
        let m = median(&mut r);
        (r[r.len() / 4], m, r[r.len() * 3 / 4])
    };
    for (name, f) in [
        ("throughput   ", (|x: &Round| x.0) as fn(&Round) -> f64),
        ("CPU per chunk", |x: &Round| x.1),
    ] {
        let (lo, mid, hi) = paired(f);
        println!(
            "  {name} on/off: {:.1}% (interquartile {:.1}%..{:.1}%)",
            100.0 * mid,
            100.0 * lo,
            100.0 * hi
        );
    }
}
