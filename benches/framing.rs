//! What the hostile-input checks cost per request: the raw-head watcher (`src/framing.rs`)
//! reading keep-alive request streams and large bodies, against plain reads of the same bytes,
//! and `Guard::check` on a typical browser request head.
//!
//! `cargo bench --bench framing` (optional argument: rounds, default 5; the best is printed).

use llmgate::config::ServerConfig;
use llmgate::framing::{Heads, Watched};
use llmgate::guard::Guard;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

const HEAD: &str = "POST /api/chat/completions HTTP/1.1\r\nHost: chat.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n\
Accept: */*\r\nAccept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n\
Content-Type: application/json\r\nOrigin: https://chat.example.org\r\nReferer: https://chat.example.org/c/1\r\n\
Cookie: token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjBiNmUifQ.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6IjBiNmUifQ.c2lnbmF0dXJlc2lnbmF0dXJl\r\n";

fn keep_alive_stream(requests: usize, body: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..requests {
        out.extend_from_slice(HEAD.as_bytes());
        out.extend_from_slice(format!("Content-Length: {body}\r\n\r\n").as_bytes());
        out.resize(out.len() + body, b'x');
    }
    out
}

fn chunked_upload(total: usize, chunk: usize) -> Vec<u8> {
    let mut out = HEAD.as_bytes().to_vec();
    out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    for _ in 0..total / chunk {
        out.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        out.resize(out.len() + chunk, b'x');
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Reads `io` to the end in 16 KiB reads (hyper's usual size) and returns the time taken.
async fn read_all(mut io: impl AsyncRead + Unpin) -> Duration {
    let mut buf = vec![0u8; 16 << 10];
    let t = Instant::now();
    while io.read(&mut buf).await.unwrap() > 0 {
        black_box(&buf);
    }
    t.elapsed()
}

async fn best_of(rounds: usize, data: &[u8], watched: bool) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let took = if watched {
            read_all(Watched::new(data, Heads::default(), 128 << 10)).await
        } else {
            read_all(data).await
        };
        best = best.min(took);
    }
    best
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    println!("framing watcher, best of {rounds} rounds, 16 KiB reads from memory");
    println!("| input | plain read | watched read | watcher cost |");
    println!("|---|---|---|---|");
    let cases = [
        (
            "10 000 requests, 1 KiB bodies",
            keep_alive_stream(10_000, 1024),
            10_000,
        ),
        (
            "10 000 requests, no body",
            keep_alive_stream(10_000, 0),
            10_000,
        ),
        (
            "64 MiB Content-Length upload",
            keep_alive_stream(1, 64 << 20),
            0,
        ),
        (
            "64 MiB chunked upload, 16 KiB chunks",
            chunked_upload(64 << 20, 16 << 10),
            0,
        ),
    ];
    for (name, data, requests) in cases {
        let plain = best_of(rounds, &data, false).await;
        let watched = best_of(rounds, &data, true).await;
        let extra = watched.saturating_sub(plain);
        let cost = if requests > 0 {
            format!(
                "{:.0} ns per request",
                extra.as_nanos() as f64 / requests as f64
            )
        } else {
            let gib_s = data.len() as f64 / watched.as_secs_f64() / (1u64 << 30) as f64;
            format!("{gib_s:.1} GiB/s watched")
        };
        println!("| {name} | {plain:.2?} | {watched:.2?} | {cost} |");
    }

    let guard = Guard::new(&ServerConfig::default());
    let mut req = http::Request::builder()
        .method("POST")
        .uri("/api/chat/completions");
    for line in HEAD.lines().skip(1).filter(|l| !l.is_empty()) {
        let (n, v) = line.split_once(": ").unwrap();
        req = req.header(n, v);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    const N: u32 = 1_000_000;
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..N {
            black_box(guard.check(black_box(&parts))).unwrap();
        }
        best = best.min(t.elapsed());
    }
    println!(
        "\nGuard::check on that head ({} headers): {:.1} ns per request",
        parts.headers.len(),
        best.as_nanos() as f64 / f64::from(N)
    );
}
