//! Rate limits per identity over real sockets: llmgate keys from `[auth]`, each key's own
//! limits from its entry, 1000 concurrent requests against a limit of 100 admitting exactly
//! 100 (in one llmgate, and across two sharing a real Redis).

mod common;
use common::auth::*;
use common::redis::RedisServer;
use common::*;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// One upstream at `up` for every path, `[auth]` with the given key entries, and `limits`.
fn config(up: SocketAddr, keys: &str, limits: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"mock\"\nurl = \"http://{up}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"mock\"\n[rate_limit]\n{limits}\n[auth]\n{keys}\n"
    )
}

/// A fresh key for `id` and its inline entry with `overrides` appended.
fn key(id: &str, overrides: &str) -> (String, String) {
    let (key, entry) = new_key(id, "auth.keys");
    (key, format!("{entry}{overrides}\n"))
}

/// Opens `n` connections spread over `proxies`, then sends one request on each at once.
async fn at_once(proxies: &[SocketAddr], key: &str, n: usize) -> usize {
    let mut senders = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect(proxies[i % proxies.len()])
            .await
            .unwrap();
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        senders.push(tx);
    }
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut tx| {
            let (start, req) = (start.clone(), bearer_get("/api/v1/chats/", key));
            tokio::spawn(async move {
                start.wait().await;
                let resp = tx.send_request(req).await.unwrap();
                match resp.status().as_u16() {
                    200 => true,
                    429 => false,
                    other => panic!("unexpected status {other}"),
                }
            })
        })
        .collect();
    count_admitted(tasks).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_against_a_limit_of_100_admit_exactly_100() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (k, entry) = key("team-a", "");
    let proxy = Proxy::start(&config(mock.addr, &entry, HUNDRED)).await;
    assert_eq!(at_once(&[proxy.addr], &k, 1000).await, 100);
    assert_eq!(mock.hits(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_admit_a_key_limit_once() {
    let redis = RedisServer::start();
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (k, entry) = key("team-a", "");
    let limits = format!(
        "{HUNDRED}\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"5s\"",
        redis.url()
    );
    let a = Proxy::start(&config(mock.addr, &entry, &limits)).await;
    let b = Proxy::start(&config(mock.addr, &entry, &limits)).await;
    assert_eq!(at_once(&[a.addr, b.addr], &k, 1000).await, 100);
    assert_eq!(mock.hits(), 100);
}

#[tokio::test]
async fn per_key_overrides_replace_the_defaults() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (small, small_entry) = key("small", "requests_per_minute = 2\nburst = 0");
    let (plain, plain_entry) = key("plain", "");
    let (free, free_entry) = key("free", "requests_per_minute = 0");
    let proxy = Proxy::start(&config(
        mock.addr,
        &format!("{small_entry}{plain_entry}{free_entry}"),
        "requests_per_minute = 600\nburst = 50\nunauthenticated_per_ip_per_minute = 1",
    ))
    .await;

    for remaining in ["1", "0"] {
        let resp = send(proxy.addr, bearer_get("/v1/models", &small)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "2");
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], remaining);
    }
    let resp = send(proxy.addr, bearer_get("/v1/models", &small)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "30");
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("requests_per_minute is 2 (burst 0) for this identity"),
        "{msg}"
    );

    // Identities are limited by their key, not by the client address they share.
    let resp = send(proxy.addr, bearer_get("/v1/models", &plain)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "650");
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "649");
    for _ in 0..20 {
        let resp = send(proxy.addr, bearer_get("/v1/models", &free)).await;
        assert_eq!(resp.status(), 200);
        assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));
    }
}
