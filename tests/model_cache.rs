//! The model-list cache: hit, miss and stale answers, single flight, stale lists while the
//! upstream is down or hanging, per-credential entries, errors never cached, purge.

mod common;
use common::*;
use http::Response;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const OK: u8 = 0;
const DOWN: u8 = 1;
const HANG: u8 = 2;

/// An Open WebUI stand-in whose `/api/models` lists the caller's credential, numbered by call;
/// `mode` makes it answer, fail with 500, or never answer.
struct Lists {
    mock: MockUpstream,
    calls: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
}

async fn lists(delay: Duration) -> Lists {
    let calls = Arc::new(AtomicUsize::new(0));
    let mode = Arc::new(AtomicU8::new(OK));
    let (c, m) = (calls.clone(), mode.clone());
    let mock = MockUpstream::start(move |req| {
        let (c, m) = (c.clone(), m.clone());
        async move {
            let who = req
                .headers()
                .get("authorization")
                .or(req.headers().get("x-api-key"))
                .or(req.headers().get("cookie"))
                .map(|v| v.to_str().unwrap().to_string());
            let Some(who) = who else {
                return json(401, r#"{"detail":"Not authenticated"}"#);
            };
            if req.uri().path() == "/v1/models" {
                // An SPA fallback: 200, but HTML.
                return Response::builder()
                    .header("content-type", "text/html")
                    .body(full("<html></html>"))
                    .unwrap();
            }
            match m.load(Ordering::SeqCst) {
                HANG => std::future::pending::<()>().await,
                DOWN => return json(500, r#"{"detail":"backend down"}"#),
                _ => {}
            }
            let n = c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            json(
                200,
                &format!(r#"{{"data":[{{"id":"for {who}","object":"model","n":{n}}}]}}"#),
            )
        }
    })
    .await;
    Lists { mock, calls, mode }
}

async fn list(proxy: &Proxy, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut req = request("GET", path, full(""));
    if let Some(a) = auth {
        let (name, value) = a.split_once(": ").unwrap();
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    req.headers_mut()
        .insert("accept-encoding", "gzip, br".parse().unwrap());
    let resp = send(proxy.addr, req).await;
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-llmgate-cache")
        .map_or("-".into(), |v| v.to_str().unwrap().to_string());
    (status, cache, body_string(resp.into_body()).await)
}

const A: Option<&str> = Some("authorization: Bearer user-a");
const B: Option<&str> = Some("authorization: Bearer user-b");

fn cache(ttl: &str, stale_for: &str) -> String {
    format!(
        "response_timeout = \"1s\"\n[model_cache]\nttl = \"{ttl}\"\nstale_for = \"{stale_for}\"\n"
    )
}

#[tokio::test]
async fn miss_then_hit_then_stale_then_refreshed() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, &cache("1s", "10m")).await;
    let (s, c, first) = list(&proxy, "/api/models", A).await;
    assert_eq!((s, c.as_str()), (200, "miss"));
    assert!(first.contains(r#""n":0"#), "{first}");
    let (_, c, body) = list(&proxy, "/api/models", A).await;
    assert_eq!((c.as_str(), &body), ("hit", &first));
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    // The upstream never saw the client's Accept-Encoding: the list is read whole.
    assert!(up.mock.seen()[0].headers.get("accept-encoding").is_none());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, c, body) = list(&proxy, "/api/models", A).await;
    assert_eq!((c.as_str(), &body), ("stale", &first));
    // One background refresh replaces the list.
    let refreshed = wait_for(|| async {
        let (_, c, body) = list(&proxy, "/api/models", A).await;
        (c == "hit" && body.contains(r#""n":1"#)).then_some(())
    })
    .await;
    assert!(refreshed.is_some(), "the stale list was never refreshed");
    assert_eq!(up.calls.load(Ordering::SeqCst), 2);
    let m = proxy.metrics().await;
    for result in ["hit", "miss", "stale"] {
        let n = metric(
            &m,
            &format!("llmgate_model_cache_total{{result=\"{result}\"}}"),
        );
        assert!(n.unwrap_or(0.0) >= 1.0, "{result}: {m}");
    }
}

async fn wait_for<F, Fut, T>(mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(t) = f().await {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_call() {
    let up = lists(Duration::from_millis(500)).await;
    let proxy = Arc::new(Proxy::to(up.mock.addr, &cache("1m", "10m")).await);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let proxy = proxy.clone();
            tokio::spawn(async move { list(&proxy, "/api/models", A).await })
        })
        .collect();
    let mut bodies = std::collections::HashSet::new();
    let mut misses = 0;
    for t in tasks {
        let (status, cache, body) = t.await.unwrap();
        assert_eq!(status, 200);
        // Those that arrive after the fetch finished are hits.
        assert!(cache == "miss" || cache == "hit", "{cache}");
        misses += usize::from(cache == "miss");
        bodies.insert(body);
    }
    assert!(misses >= 10, "only {misses} requests overlapped the fetch");
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    assert_eq!(bodies.len(), 1);
}

#[tokio::test]
async fn stale_list_is_served_while_the_upstream_hangs_or_fails() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, &cache("200ms", "2s")).await;
    let (_, _, first) = list(&proxy, "/api/models", A).await;
    tokio::time::sleep(Duration::from_millis(250)).await;

    // Hanging: the stale list comes back at once, not after the upstream's timeout.
    up.mode.store(HANG, Ordering::SeqCst);
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_millis(500), list(&proxy, "/api/models", A))
            .await
            .expect("a stale list must not wait for a hanging upstream");
        assert_eq!((got.1.as_str(), &got.2), ("stale", &first));
    }
    // Failing: still the stale list, never the error.
    up.mode.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, c, body) = list(&proxy, "/api/models", A).await;
    assert_eq!((s, c.as_str(), &body), (200, "stale", &first));

    // Past stale_for the error passes through, and is not cached.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, c, body) = list(&proxy, "/api/models", A).await;
    assert_eq!((s, c.as_str()), (500, "miss"), "{body}");
    assert!(body.contains("backend down"));
    up.mode.store(OK, Ordering::SeqCst);
    let (s, c, _) = list(&proxy, "/api/models", A).await;
    assert_eq!((s, c.as_str()), (200, "miss"));
}

#[tokio::test]
async fn each_credential_gets_its_own_list() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, &cache("1m", "10m")).await;
    let creds = [
        A,
        B,
        Some("x-api-key: sk-c"),
        Some("cookie: theme=dark; token=jwt-d"),
        Some("cookie: token=jwt-e; theme=dark"),
    ];
    for round in 0..2 {
        for cred in creds {
            let (s, c, body) = list(&proxy, "/api/models", cred).await;
            let value = cred.unwrap().split_once(": ").unwrap().1;
            assert_eq!(s, 200);
            assert!(
                body.contains(&format!("for {value}")),
                "{cred:?} got {body}"
            );
            assert_eq!(c, if round == 0 { "miss" } else { "hit" });
        }
    }
    // Other cookies do not split an entry; the token does.
    let (_, c, body) = list(&proxy, "/api/models", Some("cookie: token=jwt-e; lang=fr")).await;
    assert_eq!(c, "hit");
    assert!(body.contains("token=jwt-e; theme=dark"));
    // No credential: Open WebUI's 401 passes through and is never cached.
    for _ in 0..2 {
        let (s, c, _) = list(&proxy, "/api/models", None).await;
        assert_eq!((s, c.as_str()), (401, "miss"));
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), creds.len());
}

#[tokio::test]
async fn a_revoked_credential_loses_its_stale_list() {
    let revoked = Arc::new(AtomicU8::new(0));
    let r = revoked.clone();
    let mock = MockUpstream::start(move |_req| {
        let r = r.clone();
        async move {
            if r.load(Ordering::SeqCst) == 1 {
                json(401, r#"{"detail":"401 Unauthorized"}"#)
            } else {
                json(200, r#"{"data":[{"id":"m"}]}"#)
            }
        }
    })
    .await;
    let proxy = Proxy::to(mock.addr, &cache("100ms", "10m")).await;
    assert_eq!(list(&proxy, "/api/models", A).await.0, 200);
    revoked.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The refresh behind this stale answer gets 401, which drops the entry at once rather
    // than serving the list to a credential the upstream no longer accepts.
    let (s, c, _) = list(&proxy, "/api/models", A).await;
    assert_eq!((s, c.as_str()), (200, "stale"));
    let dropped = wait_for(|| async {
        let (s, c, _) = list(&proxy, "/api/models", A).await;
        (s == 401 && c == "miss").then_some(())
    })
    .await;
    assert!(dropped.is_some(), "the revoked credential kept its list");
}

#[tokio::test]
async fn answers_that_are_not_lists_pass_through_uncached() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, &cache("1m", "10m")).await;
    for _ in 0..2 {
        let (s, c, body) = list(&proxy, "/v1/models", A).await;
        assert_eq!(
            (s, c.as_str(), body.as_str()),
            (200, "miss", "<html></html>")
        );
    }
    let v1 = up
        .mock
        .seen()
        .iter()
        .filter(|s| s.uri.path() == "/v1/models")
        .count();
    assert_eq!(v1, 2);
}

#[tokio::test]
async fn purge_on_the_admin_listener_empties_the_cache() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, &cache("1m", "10m")).await;
    assert_eq!(list(&proxy, "/api/models", A).await.1, "miss");
    assert_eq!(list(&proxy, "/api/models", A).await.1, "hit");
    let resp = get(proxy.admin, "/cache/purge").await;
    assert_eq!(resp.status(), 405);
    let resp = send(proxy.admin, request("POST", "/cache/purge", full(""))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(list(&proxy, "/api/models", A).await.1, "miss");
    assert_eq!(up.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn with_the_cache_off_every_list_is_fetched() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, "[model_cache]\nenabled = false\n").await;
    for _ in 0..3 {
        assert_eq!(list(&proxy, "/api/models", A).await.1, "miss");
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn query_strings_do_not_multiply_entries() {
    let up = lists(Duration::ZERO).await;
    let proxy = Proxy::to(up.mock.addr, &cache("1m", "10m")).await;
    assert_eq!(list(&proxy, "/api/models", A).await.1, "miss");
    for q in ["?x=1", "?x=2&y", "?refresh=true"] {
        let path = format!("/api/models{q}");
        assert_eq!(list(&proxy, &path, A).await.1, "hit", "{q}");
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn large_lists_are_sent_gzipped_to_clients_that_accept_gzip() {
    let entries: Vec<String> = (0..80)
        .map(|i| format!(r#"{{"id":"model-{i}:latest","object":"model","owned_by":"ollama"}}"#))
        .collect();
    let body = format!(r#"{{"data":[{}]}}"#, entries.join(","));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let mock = MockUpstream::start(move |_req| {
        c.fetch_add(1, Ordering::SeqCst);
        let body = body.clone();
        async move { json(200, &body) }
    })
    .await;
    let proxy = Proxy::to(mock.addr, &cache("1m", "10m")).await;
    let get = |accept: Option<&'static str>| {
        let mut req = request("GET", "/api/models", full(""));
        req.headers_mut()
            .insert("authorization", "Bearer sk-a".parse().unwrap());
        if let Some(a) = accept {
            req.headers_mut()
                .insert("accept-encoding", a.parse().unwrap());
        }
        send(proxy.addr, req)
    };

    let plain = get(None).await;
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = collect_bytes(plain.into_body()).await;
    let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 80);

    for accept in ["gzip, deflate", "br;q=1.0, gzip;q=0.8, *;q=0.1"] {
        let resp = get(Some(accept)).await;
        assert_eq!(resp.headers()["content-encoding"], "gzip", "{accept}");
        assert_eq!(resp.headers()["vary"], "accept-encoding");
        assert_eq!(resp.headers()["x-llmgate-cache"], "hit");
        let gz = collect_bytes(resp.into_body()).await;
        assert!(
            gz.len() * 4 < plain.len(),
            "{} vs {}",
            gz.len(),
            plain.len()
        );
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain, "{accept}");
    }
    for accept in ["identity", "gzip;q=0, *", "br"] {
        let resp = get(Some(accept)).await;
        assert!(resp.headers().get("content-encoding").is_none(), "{accept}");
        assert_eq!(collect_bytes(resp.into_body()).await, plain, "{accept}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

async fn collect_bytes(body: hyper::body::Incoming) -> Vec<u8> {
    use http_body_util::BodyExt;
    body.collect().await.unwrap().to_bytes().to_vec()
}
