//! Token budgets shared through a real `redis-server`: replicas reserve atomically, so
//! concurrent streams cannot overshoot together, and each settlement (one reconcile script)
//! is seen by every replica.

mod common;
use bytes::Bytes;
use common::redis::RedisServer;
use common::tokens::*;
use common::*;

fn shared(redis: &RedisServer, tokens: &str) -> String {
    format!(
        "{}backend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"5s\"\n",
        budget(tokens),
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_two_instances_cannot_overshoot_a_shared_budget() {
    let redis = RedisServer::start();
    let (mock, held) = hold_upstream().await;
    let cfg = shared(&redis, "tokens_per_day = 1000");
    let a = Proxy::to(mock.addr, &cfg).await;
    let b = Proxy::to(mock.addr, &cfg).await;
    let body = r#"{"model":"m","max_tokens":70,"stream":true}"#;
    let fits = 1000 / cost(70, body);
    let admitted = concurrently(&[a.addr, b.addr], "/v1/chat/completions", body, 40).await;
    assert_eq!(
        admitted, fits,
        "one budget across both instances, not one each"
    );
    assert_eq!(mock.hits(), fits);
    held.lock().unwrap().clear();
}

#[tokio::test]
async fn redis_reconcile_replaces_the_reservation_for_every_instance() {
    let redis = RedisServer::start();
    let answer = r#"{"id":"x","object":"chat.completion","model":"m","choices":[],"usage":{"prompt_tokens":30,"completion_tokens":12}}"#;
    let (mock, _) = recording(JSON, vec![Bytes::from(answer)]).await;
    let cfg = shared(&redis, "tokens_per_day = 1000");
    let a = Proxy::to(mock.addr, &cfg).await;
    let b = Proxy::to(mock.addr, &cfg).await;
    let req = r#"{"model":"m","max_tokens":500}"#;
    let resp = post_json(a.addr, "/v1/chat/completions", req).await;
    let reserved = cost_of(req);
    assert_eq!(
        resp.headers()["x-ratelimit-remaining-tokens"],
        (1000 - reserved).to_string().as_str()
    );
    body_string(resp.into_body()).await;
    assert!(charged(&a, "reported", 42).await);
    // The settlement is a spawned script run; `b` sees it once it has landed.
    let settled = eventually(std::time::Duration::from_secs(5), || async {
        let tat = first_value(&redis.command(&["HGET", "llmgate:{ip:127.0.0.1}:w", "3"]));
        let now = first_value(&redis.command(&["TIME"])) * 1e6;
        // 86.4 s (86.4e6 µs) per token: under 100 tokens ahead, the reservation came back.
        tat > 0.0 && (tat - now) / 86.4e6 < 100.0
    })
    .await;
    assert!(settled, "reconcile did not reach Redis");
    assert_eq!(next_remaining(&b).await, 1000 - 42 - cost_of(NEXT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_redis_cannot_take_is_counted_as_unsettled() {
    let mut redis = RedisServer::start();
    let (mock, held) = hold_upstream().await;
    let proxy = Proxy::to(mock.addr, &shared(&redis, "tokens_per_day = 1000")).await;
    let body = r#"{"model":"m","max_tokens":70,"stream":true}"#;
    let resp = post_json(proxy.addr, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    let mut answer = resp.into_body();
    next_chunk(&mut answer).await.expect("first event");
    // Redis goes away while the stream flows; its settlement has nowhere to go.
    redis.kill();
    held.lock().unwrap().clear();
    while next_chunk(&mut answer).await.is_some() {}
    let series = r#"llmgate_ratelimit_backend_errors_total{action="unsettled"}"#;
    let counted = eventually(std::time::Duration::from_secs(10), || async {
        metric(&proxy.metrics().await, series) == Some(1.0)
    })
    .await;
    assert!(
        counted,
        "{series} = {:?}",
        metric(&proxy.metrics().await, series)
    );
}

/// The first scalar of a raw RESP reply (a bulk string's value, or an array's first).
fn first_value(reply: &str) -> f64 {
    reply
        .lines()
        .map(str::trim)
        .find(|l| !l.starts_with('*') && !l.starts_with('$'))
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0)
}
