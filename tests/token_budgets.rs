//! Token budgets over real sockets (in-process limiter): reservations that concurrent
//! streams cannot overshoot, settlement from SSE, NDJSON and JSON usage, the one body edit
//! (`include_usage`) and the usage chunk taken out again, cancelled streams charged, the
//! `-tokens` headers, `Retry-After`, and per-key overrides.

mod common;
use bytes::Bytes;
use common::auth::*;
use common::llm::openai_stream;
use common::tokens::*;
use common::*;
use serde_json::Value;

/// A day window: nothing refills while a test runs (86.4 s per token at 1000 a day).
const DAY_1000: &str = "tokens_per_day = 1000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_with_max_tokens_cannot_overshoot_the_budget() {
    let (mock, held) = hold_upstream().await;
    let proxy = Proxy::to(mock.addr, &budget(DAY_1000)).await;
    let body = r#"{"model":"m","max_tokens":90,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let fits = 1000 / cost(90, body);
    let admitted = concurrently(&[proxy.addr], "/v1/chat/completions", body, 30).await;
    assert_eq!(admitted, fits, "each held stream keeps its reservation");
    assert_eq!(mock.hits(), fits);
    held.lock().unwrap().clear();
}

#[tokio::test]
async fn usage_is_counted_from_sse_with_a_split_usage_chunk() {
    let mut frames = openai_stream("m", &["a", "b"], Some((7, 5)));
    let usage = frames.remove(frames.len() - 2);
    let (a, b) = usage.split_at(usage.len() / 2);
    frames.insert(frames.len() - 1, Bytes::copy_from_slice(b));
    frames.insert(frames.len() - 2, Bytes::copy_from_slice(a));
    let req = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    settles_to(SSE, frames, "/v1/chat/completions", req, 12).await;
}

#[tokio::test]
async fn usage_is_counted_from_ollama_ndjson() {
    let frames = common::llm::ollama_stream("m", &["a", "b", "c"], 11, 4);
    let req = r#"{"model":"m","options":{"num_predict":40}}"#;
    settles_to(NDJSON, frames, "/api/chat", req, 15).await;
}

#[tokio::test]
async fn usage_is_counted_from_non_stream_json() {
    let answer = r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":20,"completion_tokens":3,"total_tokens":23}}"#;
    let req = r#"{"model":"m","max_tokens":300}"#;
    settles_to(
        JSON,
        vec![Bytes::from(answer)],
        "/v1/chat/completions",
        req,
        23,
    )
    .await;
}

/// One request whose answer reports `used` tokens; the reservation is replaced by exactly
/// that, as the next request's `x-ratelimit-remaining-tokens` shows.
async fn settles_to(ct: &'static str, frames: Vec<Bytes>, path: &str, req: &str, used: u64) {
    let (mock, _) = recording(ct, frames).await;
    let proxy = Proxy::to(mock.addr, &budget(DAY_1000)).await;
    let resp = post_json(proxy.addr, path, req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit-tokens"], "1000");
    let remaining = 1000 - cost_of(req);
    assert_eq!(
        resp.headers()["x-ratelimit-remaining-tokens"],
        remaining.to_string().as_str()
    );
    body_string(resp.into_body()).await;
    assert!(charged(&proxy, "reported", used).await);
    assert_eq!(next_remaining(&proxy).await, 1000 - used - cost_of(NEXT));
}

#[tokio::test]
async fn include_usage_is_added_and_its_chunk_removed_for_a_client_that_did_not_ask() {
    let frames = openai_stream("m", &["Hel", "lo"], Some((9, 2)));
    let (mock, seen) = recording(SSE, frames.clone()).await;
    let proxy = Proxy::to(mock.addr, &budget(DAY_1000)).await;
    let req = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = post_json(proxy.addr, "/v1/chat/completions", req).await;
    let got = body_string(resp.into_body()).await;

    let usage_chunk = &frames[frames.len() - 2];
    let want: Vec<u8> = frames
        .iter()
        .filter(|f| *f != usage_chunk)
        .flat_map(|f| f.to_vec())
        .collect();
    assert_eq!(
        got.as_bytes(),
        want,
        "exactly the stream the client asked for"
    );
    let (headers, upstream_body) = seen.lock().unwrap()[0].clone();
    assert_eq!(
        upstream_body,
        r#"{"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(
        headers["content-length"],
        upstream_body.len().to_string().as_str()
    );
    assert_eq!(headers["accept-encoding"], "identity");
    assert!(charged(&proxy, "reported", 11).await);
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_its_chunk_and_an_unchanged_body() {
    let frames = openai_stream("m", &["Hel", "lo"], Some((9, 2)));
    let (mock, seen) = recording(SSE, frames.clone()).await;
    let proxy = Proxy::to(mock.addr, &budget(DAY_1000)).await;
    let req = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let resp = post_json(proxy.addr, "/v1/chat/completions", req).await;
    let got = body_string(resp.into_body()).await;
    let want: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    assert_eq!(got.as_bytes(), want);
    assert_eq!(seen.lock().unwrap()[0].1, req);
    assert!(charged(&proxy, "reported", 11).await);
}

#[tokio::test]
async fn a_cancelled_stream_is_charged_its_delivered_events_and_prompt() {
    let (mock, tx) = fed_upstream(SSE).await;
    let proxy = Proxy::to(mock.addr, &budget(DAY_1000)).await;
    let req =
        r#"{"model":"m","max_tokens":200,"stream":true,"stream_options":{"include_usage":true}}"#;
    let resp = post_json(proxy.addr, "/v1/chat/completions", req).await;
    assert_eq!(resp.status(), 200);
    let tx = tx.await.unwrap();
    let mut body = resp.into_body();
    for piece in ["a", "b", "c"] {
        let chunk = format!(
            r#"{{"object":"chat.completion.chunk","model":"m","choices":[{{"index":0,"delta":{{"content":"{piece}"}}}}]}}"#
        );
        tx.send(Ok(sse(&chunk))).await.unwrap();
        assert!(next_chunk(&mut body).await.unwrap().contains(piece));
    }
    drop(body); // the client goes away before usage arrives
    let charge = 3 + (req.len() as u64).div_ceil(4);
    assert!(charged(&proxy, "estimated", charge).await);
    assert_eq!(next_remaining(&proxy).await, 1000 - charge - cost_of(NEXT));
    drop(tx);
}

#[tokio::test]
async fn token_headers_and_retry_after_follow_the_reservation() {
    let (mock, held) = hold_upstream().await;
    let proxy = Proxy::to(mock.addr, &budget("tokens_per_minute = 600")).await;
    let req = r#"{"model":"m","max_tokens":404,"stream":true}"#;
    let c = cost(404, req) as u64;
    let resp = post_json(proxy.addr, "/v1/chat/completions", req).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["x-ratelimit-limit-tokens"], "600");
    assert_eq!(
        h["x-ratelimit-remaining-tokens"],
        (600 - c).to_string().as_str()
    );
    // One token comes back every 100 ms: the reservation is full again after c / 10 s.
    assert_eq!(
        h["x-ratelimit-reset-tokens"],
        format!("{}s", c.div_ceil(10)).as_str()
    );
    assert!(
        h.get("x-ratelimit-limit-requests").is_none(),
        "no request limit set"
    );

    let resp = post_json(proxy.addr, "/v1/chat/completions", req).await;
    assert_eq!(resp.status(), 429);
    // Two reservations need 2c tokens; 600 fit per minute: 2c / 10 - 60 seconds to wait.
    assert_eq!(
        resp.headers()["retry-after"],
        (2 * c).div_ceil(10).saturating_sub(60).to_string().as_str()
    );
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("tokens_per_minute is 600"), "{msg}");
    assert!(msg.contains(&format!("reserves {c} tokens")), "{msg}");
    assert_eq!(
        mock.hits(),
        1,
        "the refused request never reached the upstream"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_ratelimited_total{limit="tokens_per_minute"}"#
        ),
        Some(1.0)
    );
    held.lock().unwrap().clear();
}

#[tokio::test]
async fn per_key_token_overrides_replace_the_default_budget() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (small, small_entry) = new_key("small", "auth.keys");
    let (plain, plain_entry) = new_key("plain", "auth.keys");
    let (free, free_entry) = new_key("free", "auth.keys");
    let cfg = format!(
        "{}\n[auth]\n{small_entry}tokens_per_day = 50\n{plain_entry}\n{free_entry}tokens_per_day = 0\n",
        budget(DAY_1000)
    );
    let proxy = Proxy::to(mock.addr, &cfg).await;
    let req = r#"{"model":"m","max_tokens":100}"#;
    let send_as = |key: &str| {
        let r = http::Request::builder()
            .method("POST")
            .uri("/v1/chat/completions")
            .header("host", "llmgate.test")
            .header("authorization", format!("Bearer {key}"))
            .body(full(req.to_string()))
            .unwrap();
        send(proxy.addr, r)
    };
    let resp = send_as(&small).await;
    assert_eq!(resp.status(), 429);
    assert!(
        resp.headers().get("retry-after").is_none(),
        "waiting cannot help"
    );
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("more than tokens_per_day (50) allows"),
        "{msg}"
    );

    let resp = send_as(&plain).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit-tokens"], "1000");
    let resp = send_as(&free).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-ratelimit-limit-tokens").is_none());
    assert_eq!(mock.hits(), 2);
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_charged_the_prompt() {
    // The first request is never answered; later ones are.
    let first = std::sync::atomic::AtomicBool::new(true);
    let mock = MockUpstream::start(move |_| {
        let hang = first.swap(false, std::sync::atomic::Ordering::Relaxed);
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            json(200, "{}")
        }
    })
    .await;
    let proxy = Proxy::to(mock.addr, &budget(DAY_1000)).await;
    let req = r#"{"model":"m","max_tokens":300,"messages":[{"role":"user","content":"a long question"}]}"#;
    let wait = post_json(proxy.addr, "/v1/chat/completions", req);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), wait)
            .await
            .is_err()
    );
    let prompt = (req.len() as u64).div_ceil(4);
    assert!(charged(&proxy, "estimated", prompt).await);
    assert_eq!(next_remaining(&proxy).await, 1000 - prompt - cost_of(NEXT));
}
