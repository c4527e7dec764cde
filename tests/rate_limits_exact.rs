//! Exactness of the limiter itself, for identities (the proxy-level tests use client IPs):
//! 1000 concurrent decisions against a limit of 100 admit exactly 100, in memory and across two
//! limiters sharing one real Redis; per-key overrides replace the defaults.

mod common;
use common::redis::RedisServer;
use common::{count_admitted, HUNDRED};
use llmgate::config::RateLimitConfig;
use llmgate::error::ProxyError;
use llmgate::identity::{Identity, KeyLimits, Source};
use llmgate::limits::{Admission, Limit, Limits};
use llmgate::metrics::Metrics;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

fn config(section: &str) -> RateLimitConfig {
    let text = format!(
        "[[upstreams]]\nname = \"m\"\nurl = \"http://127.0.0.1:1\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n[rate_limit]\n{section}\n"
    );
    llmgate::config::parse("test.toml", &text, &|_| None)
        .unwrap()
        .rate_limit
        .unwrap()
}

fn identity(id: &str, limits: Option<KeyLimits>) -> http::request::Parts {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.extensions.insert(Identity {
        id: id.into(),
        source: Source::Key,
        role: None,
        models: None,
        limits: limits.map(Arc::new),
    });
    parts
}

async fn admit(
    limits: &Limits,
    parts: &mut http::request::Parts,
    m: &Metrics,
) -> Result<Option<Admission>, ProxyError> {
    let body = &mut llmgate::body::RequestBody::empty();
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    limits.admit("/", parts, body, None, peer, m).await
}

/// Fires `n` decisions at once, spread over `limiters`, and counts the admitted ones.
async fn concurrently(limiters: &[Arc<Limits>], n: usize) -> usize {
    let metrics = Arc::new(Metrics::new());
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (limits, metrics, start) = (
                limiters[i % limiters.len()].clone(),
                metrics.clone(),
                start.clone(),
            );
            tokio::spawn(async move {
                let mut parts = identity("team-a", None);
                start.wait().await;
                match admit(&limits, &mut parts, &metrics).await {
                    Ok(Some(_)) => true,
                    Err(ProxyError::RateLimited(r)) => {
                        assert_eq!(r.limit, Limit::RequestsPerDay);
                        false
                    }
                    other => panic!("unexpected {:?}", other.map(|a| a.is_some())),
                }
            })
        })
        .collect();
    count_admitted(tasks).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_decisions_in_memory_admit_exactly_100() {
    let limits = Arc::new(Limits::new(&config(HUNDRED)).unwrap());
    assert_eq!(concurrently(&[limits], 1000).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_decisions_on_two_limiters_sharing_redis_admit_exactly_100() {
    let redis = RedisServer::start();
    let cfg = config(&format!(
        "{HUNDRED}\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"5s\"",
        redis.url()
    ));
    let a = Arc::new(Limits::new(&cfg).unwrap());
    let b = Arc::new(Limits::new(&cfg).unwrap());
    assert_eq!(concurrently(&[a, b], 1000).await, 100);
}

#[tokio::test]
async fn per_key_overrides_replace_the_defaults() {
    let limits = Limits::new(&config("requests_per_minute = 600\nburst = 50")).unwrap();
    let m = Metrics::new();
    let mut h = http::HeaderMap::new();

    // The default: 600 + 50 at once.
    admit(&limits, &mut identity("plain", None), &m)
        .await
        .unwrap()
        .unwrap()
        .write_headers(&mut h);
    assert_eq!(h["x-ratelimit-limit-requests"], "650");
    assert_eq!(h["x-ratelimit-remaining-requests"], "649");

    let small = KeyLimits {
        requests_per_minute: Some(2),
        burst: Some(0),
        ..KeyLimits::default()
    };
    let mut parts = identity("small", Some(small));
    for _ in 0..2 {
        assert!(admit(&limits, &mut parts, &m).await.unwrap().is_some());
    }
    match admit(&limits, &mut parts, &m).await {
        Err(ProxyError::RateLimited(r)) => {
            assert_eq!(r.limit, Limit::RequestsPerMinute);
            assert_eq!(r.retry_after, Some(30));
            assert!(
                r.to_string().contains("requests_per_minute is 2 (burst 0)"),
                "{r}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|a| a.is_some())),
    }

    // 0 lifts the limit for that key: nothing applies, no headers.
    let unlimited = KeyLimits {
        requests_per_minute: Some(0),
        ..KeyLimits::default()
    };
    let mut parts = identity("unlimited", Some(unlimited));
    for _ in 0..1000 {
        assert!(admit(&limits, &mut parts, &m).await.unwrap().is_none());
    }

    // A stream limit for one key: the slot is held by the admission until it is dropped.
    let one_stream = KeyLimits {
        max_concurrent_streams: Some(1),
        ..KeyLimits::default()
    };
    let mut parts = identity("one-stream", Some(one_stream));
    let held = admit(&limits, &mut parts, &m).await.unwrap().unwrap();
    match admit(&limits, &mut parts, &m).await {
        Err(ProxyError::RateLimited(r)) => assert_eq!(r.limit, Limit::ConcurrentStreams),
        other => panic!("expected a refusal, got {:?}", other.map(|a| a.is_some())),
    }
    drop(held);
    assert!(admit(&limits, &mut parts, &m).await.unwrap().is_some());
}
