//! Rate limits with the in-process backend: 429 answers and their headers, client addresses
//! behind trusted proxies, exempt routes, and concurrent streams held until bodies end.

mod common;
use common::*;
use http::Response;
use hyper::body::Incoming;
use serde_json::Value;
use std::time::{Duration, Instant};

fn header<'a>(r: &'a Response<Incoming>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
}

async fn status_of(proxy: &Proxy, req: http::Request<MockBody>) -> u16 {
    let resp = send(proxy.addr, req).await;
    let status = resp.status().as_u16();
    body_string(resp.into_body()).await;
    status
}

fn from(ip: &str) -> http::Request<MockBody> {
    let mut req = request("GET", "/v1/files", full(""));
    req.headers_mut()
        .insert("x-forwarded-for", ip.parse().unwrap());
    req
}

#[tokio::test]
async fn refusal_is_429_naming_the_limit_with_retry_after_and_headers() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::to(
        mock.addr,
        "[rate_limit]\nunauthenticated_per_ip_per_minute = 3\n",
    )
    .await;
    let first = Instant::now();
    for (remaining, reset) in [("2", "20s"), ("1", "40s"), ("0", "1m0s")] {
        let resp = get(proxy.addr, "/v1/files").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), remaining);
        assert_eq!(header(&resp, "x-ratelimit-reset-requests"), reset);
    }
    let resp = get(proxy.addr, "/v1/files").await;
    let elapsed = first.elapsed();
    assert_eq!(resp.status(), 429);
    assert_eq!(
        mock.hits(),
        3,
        "the refused request never reached the upstream"
    );
    // One request comes back every 20 s, counted from the first one.
    let retry: u64 = header(&resp, "retry-after").parse().unwrap();
    assert!(
        retry <= 20 && retry >= 20 - elapsed.as_secs_f64().ceil() as u64,
        "Retry-After {retry} after {elapsed:?}"
    );
    assert_eq!(header(&resp, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&resp, "content-type"), "application/json");
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("unauthenticated_per_ip_per_minute is 3") && msg.contains("retry after"),
        "{msg}"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            "llmgate_ratelimited_total{limit=\"unauthenticated_per_ip_per_minute\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "llmgate_requests_total{code=\"429\",method=\"GET\",route=\"/\",upstream=\"mock\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn upstream_errors_on_limited_routes_still_carry_the_headers() {
    let mock = MockUpstream::start(|_| async { json(500, r#"{"detail":"boom"}"#) }).await;
    let proxy = Proxy::to(
        mock.addr,
        "[rate_limit]\nunauthenticated_per_ip_per_minute = 5\n",
    )
    .await;
    let resp = get(proxy.addr, "/x").await;
    assert_eq!(resp.status(), 500);
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "4");
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let trusted = Proxy::to(
        mock.addr,
        "[rate_limit]\nunauthenticated_per_ip_per_minute = 1\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    )
    .await;
    assert_eq!(status_of(&trusted, from("198.51.100.1")).await, 200);
    assert_eq!(status_of(&trusted, from("198.51.100.1")).await, 429);
    assert_eq!(status_of(&trusted, from("198.51.100.2")).await, 200);
    // A client cannot pick a fresh address by prepending one: the rightmost untrusted hop counts.
    assert_eq!(
        status_of(&trusted, from("9.9.9.9, 198.51.100.2")).await,
        429
    );

    let untrusted = Proxy::to(
        mock.addr,
        "[rate_limit]\nunauthenticated_per_ip_per_minute = 1\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    )
    .await;
    assert_eq!(status_of(&untrusted, from("198.51.100.1")).await, 200);
    assert_eq!(
        status_of(&untrusted, from("198.51.100.2")).await,
        429,
        "from an untrusted peer the header is ignored: both requests are the peer's"
    );
}

#[tokio::test]
async fn exempt_routes_are_not_limited() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstreams]]
name = "mock"
url = "http://{}"
[[routes]]
path_prefix = "/"
upstream = "mock"
[[routes]]
name = "assets"
path_prefix = "/_app/"
upstream = "mock"
[rate_limit]
unauthenticated_per_ip_per_minute = 1
exempt_routes = ["assets"]
"#,
        mock.addr
    ))
    .await;
    for _ in 0..5 {
        let resp = get(proxy.addr, "/_app/immutable/x.js").await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-ratelimit-limit-requests").is_none());
    }
    assert_eq!(get(proxy.addr, "/api/x").await.status(), 200);
    assert_eq!(get(proxy.addr, "/api/x").await.status(), 429);
}

/// Retries a quick request until it is admitted: a stream slot is given back when the
/// previous body ends on llmgate's side, just after the client read its last byte.
async fn admitted_within(proxy: &Proxy, within: Duration) -> bool {
    eventually(within, || async {
        status_of(proxy, request("GET", "/quick", full(""))).await == 200
    })
    .await
}

#[tokio::test]
async fn concurrent_streams_are_held_until_the_body_ends_or_is_dropped() {
    let (mock, held) = hold_upstream().await;
    let proxy = Proxy::to(
        mock.addr,
        "[rate_limit]\nunauthenticated_per_ip_per_minute = 0\nmax_concurrent_streams = 1\n",
    )
    .await;

    // A stream that ends: its slot comes back.
    let resp = get(proxy.addr, "/hold").await;
    assert_eq!(resp.status(), 200);
    let refused = get(proxy.addr, "/quick").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "1");
    let v: Value = serde_json::from_str(&body_string(refused.into_body()).await).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("max_concurrent_streams is 1"), "{msg}");
    held.lock().unwrap().clear();
    body_string(resp.into_body()).await;
    assert!(
        admitted_within(&proxy, Duration::from_secs(5)).await,
        "the slot of an ended stream never came back"
    );

    // A stream the client walks away from: its slot comes back too.
    let resp = get(proxy.addr, "/hold").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(get(proxy.addr, "/quick").await.status(), 429);
    drop(resp);
    assert!(
        admitted_within(&proxy, Duration::from_secs(5)).await,
        "the slot of a dropped stream never came back"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            "llmgate_ratelimited_total{limit=\"max_concurrent_streams\"}"
        ),
        Some(2.0)
    );
}
