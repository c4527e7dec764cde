//! Token budget helpers: a config with only a token budget, request costs as llmgate
//! reserves them, and a mock that records what reached the upstream.

use super::*;

pub const SSE: &str = "text/event-stream";
pub const NDJSON: &str = "application/x-ndjson";
pub const JSON: &str = "application/json";
/// The probe request `next_remaining` sends.
pub const NEXT: &str = r#"{"max_tokens":10}"#;

/// `[rate_limit]` with no request limits, only `tokens` (e.g. "tokens_per_day = 1000").
pub fn budget(tokens: &str) -> String {
    format!(
        "[rate_limit]\nrequests_per_minute = 0\nunauthenticated_per_ip_per_minute = 0\n{tokens}\n"
    )
}

/// What llmgate reserves: `max_tokens` plus body bytes / 4.
pub fn cost(max_tokens: usize, body: &str) -> usize {
    max_tokens + body.len().div_ceil(4)
}

/// `cost` with the completion reservation read from the body as llmgate reads it.
pub fn cost_of(body: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let completion = v["max_completion_tokens"]
        .as_u64()
        .or(v["max_tokens"].as_u64())
        .or(v["options"]["num_predict"].as_u64())
        .unwrap_or(256);
    completion + (body.len() as u64).div_ceil(4)
}

pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Response<Incoming> {
    send(addr, request("POST", path, full(body.to_string()))).await
}

/// Headers and body of every request the mock received, in order.
pub type Recorded = Arc<Mutex<Vec<(http::HeaderMap, String)>>>;

/// A mock that records each request and answers every one with `frames` as `content_type`.
pub async fn recording(content_type: &'static str, frames: Vec<Bytes>) -> (MockUpstream, Recorded) {
    let seen = Recorded::default();
    let keep = seen.clone();
    let mock = MockUpstream::start(move |req| {
        let (keep, frames) = (keep.clone(), frames.clone());
        async move {
            let (parts, body) = req.into_parts();
            let text = body_string(body).await;
            keep.lock().unwrap().push((parts.headers, text));
            Response::builder()
                .header("content-type", content_type)
                .body(stream_of(frames))
                .unwrap()
        }
    })
    .await;
    (mock, seen)
}

/// Waits until `llmgate_ratelimit_tokens_total{source}` reads `n`.
pub async fn charged(proxy: &Proxy, source: &str, n: u64) -> bool {
    let series = format!("llmgate_ratelimit_tokens_total{{source=\"{source}\"}}");
    let ok = eventually(Duration::from_secs(5), || async {
        metric(&proxy.metrics().await, &series) == Some(n as f64)
    })
    .await;
    if !ok {
        eprintln!(
            "{series} is {:?}, want {n}",
            metric(&proxy.metrics().await, &series)
        );
    }
    ok
}

/// `x-ratelimit-remaining-tokens` after one more request (`NEXT`).
pub async fn next_remaining(proxy: &Proxy) -> u64 {
    let resp = post_json(proxy.addr, "/v1/chat/completions", NEXT).await;
    assert_eq!(resp.status(), 200);
    let v = resp.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap();
    v.parse().unwrap()
}

/// Sends `n` copies of a request at once, each on its own connection, keeping every
/// admitted response open until all are answered; returns how many were admitted.
pub async fn concurrently(addrs: &[SocketAddr], path: &str, body: &str, n: usize) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (start, addr) = (start.clone(), addrs[i % addrs.len()]);
            let req = request("POST", path, full(body.to_string()));
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                start.wait().await;
                let resp = tx.send_request(req).await.unwrap();
                match resp.status().as_u16() {
                    200 => Some((tx, resp)),
                    429 => None,
                    other => panic!("unexpected status {other}"),
                }
            })
        })
        .collect();
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.unwrap());
    }
    open.iter().filter(|o| o.is_some()).count()
}
