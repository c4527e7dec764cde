//! Rate limits shared through a real `redis-server` (one per test, on a free loopback port):
//! replicas enforce one limit together, and a Redis outage follows `on_backend_error`.

mod common;
use common::redis::RedisServer;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn shared(redis: &RedisServer, extra: &str) -> String {
    format!(
        "[rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"300ms\"\n{extra}\n",
        redis.url()
    )
}

#[tokio::test]
async fn two_instances_sharing_redis_admit_the_limit_once() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let cfg = shared(&redis, "unauthenticated_per_ip_per_minute = 5");
    let a = Proxy::to(mock.addr, &cfg).await;
    let b = Proxy::to(mock.addr, &cfg).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            tokio::spawn(async move { get(addr, "/api/v1/chats/").await.status().as_u16() })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        admitted, 5,
        "the limit holds once across both instances, not once each"
    );
    assert_eq!(mock.hits(), 5);
}

/// A Redis, a mock upstream answering `{}`, and one llmgate limiting through that Redis.
async fn one_instance(extra: &str) -> (RedisServer, MockUpstream, Proxy) {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::to(mock.addr, &shared(&redis, extra)).await;
    (redis, mock, proxy)
}

#[tokio::test]
async fn redis_outage_denies_with_503_then_recovers_on_the_same_port() {
    let (mut redis, mock, proxy) =
        one_instance("unauthenticated_per_ip_per_minute = 1000\non_backend_error = \"deny\"").await;
    let resp = get(proxy.addr, "/x").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "999");

    redis.kill();
    let resp = get(proxy.addr, "/x").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_unavailable");
    let hits_during_outage = mock.hits();
    assert_eq!(
        hits_during_outage, 1,
        "nothing reached the upstream unchecked"
    );
    assert!(backend_errors(&proxy, "deny").await >= 1.0);
    redis.restart();
    assert!(
        checked_again(&proxy).await,
        "llmgate did not recover after Redis came back"
    );
}

async fn backend_errors(proxy: &Proxy, action: &str) -> f64 {
    let series = format!("llmgate_ratelimit_backend_errors_total{{action=\"{action}\"}}");
    metric(&proxy.metrics().await, &series).unwrap_or(0.0)
}

/// True once a request is decided by Redis again (it carries the headers), within 15 s.
async fn checked_again(proxy: &Proxy) -> bool {
    eventually(Duration::from_secs(15), || async {
        let resp = get(proxy.addr, "/x").await;
        resp.headers()
            .contains_key("x-ratelimit-remaining-requests")
    })
    .await
}

#[tokio::test]
async fn redis_outage_allows_unchecked_then_enforces_again() {
    let (mut redis, _mock, proxy) =
        one_instance("unauthenticated_per_ip_per_minute = 2\non_backend_error = \"allow\"").await;
    assert_eq!(get(proxy.addr, "/x").await.status(), 200);
    redis.kill();
    for _ in 0..4 {
        let resp = get(proxy.addr, "/x").await;
        assert_eq!(resp.status(), 200, "let through while Redis is down");
        assert!(!resp
            .headers()
            .contains_key("x-ratelimit-remaining-requests"));
    }
    assert!(backend_errors(&proxy, "allow").await >= 4.0);
    redis.restart();
    // Back to enforcing: the restarted Redis is empty, so two more fit, then 429.
    assert!(
        checked_again(&proxy).await,
        "llmgate did not recover after Redis came back"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(proxy.addr, "/x").await.status() == 429
        })
        .await,
        "limits were not enforced again"
    );
}

#[tokio::test]
async fn concurrent_streams_are_counted_across_instances() {
    let redis = RedisServer::start();
    let (mock, held) = hold_upstream().await;
    let cfg = shared(
        &redis,
        "unauthenticated_per_ip_per_minute = 0\nmax_concurrent_streams = 1",
    );
    let a = Proxy::to(mock.addr, &cfg).await;
    let b = Proxy::to(mock.addr, &cfg).await;
    let stream = get(a.addr, "/hold").await;
    assert_eq!(stream.status(), 200);
    let refused = get(b.addr, "/quick").await;
    assert_eq!(
        refused.status(),
        429,
        "the other instance sees the open stream"
    );
    assert_eq!(refused.headers()["retry-after"], "1");
    // The lease is a member of the key's set in Redis.
    assert!(redis
        .command(&["ZCARD", "llmgate:{ip:127.0.0.1}:s"])
        .starts_with(":1"));
    held.lock().unwrap().clear();
    body_string(stream.into_body()).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(b.addr, "/quick").await.status() == 200
        })
        .await,
        "the ended stream's lease was never released"
    );
}
