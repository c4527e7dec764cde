//! Routing, rewriting, header hygiene and llmgate's own error answers.

mod common;
use common::*;
use http::Response;
use http_body_util::BodyExt;
use serde_json::Value;

async fn error_json(resp: Response<hyper::body::Incoming>) -> Value {
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    for field in ["message", "type", "code"] {
        assert!(
            v["error"][field].is_string(),
            "error.{field} missing in {v}"
        );
    }
    v
}

#[tokio::test]
async fn longest_prefix_wins_and_rewrite_keeps_query() {
    let web = MockUpstream::start(|_| async { json(200, r#"{"from":"web"}"#) }).await;
    let ollama = MockUpstream::start(|_| async { json(200, r#"{"from":"ollama"}"#) }).await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstreams]]
name = "web"
url = "http://{}"
[[upstreams]]
name = "ollama"
url = "http://{}/base/"
host_header = "localhost:11434"
[[routes]]
path_prefix = "/"
upstream = "web"
[[routes]]
path_prefix = "/direct/"
upstream = "ollama"
rewrite_prefix = "/"
"#,
        web.addr, ollama.addr
    ))
    .await;
    let resp = get(proxy.addr, "/direct/api/tags?x=1&y=%20z").await;
    assert_eq!(body_string(resp.into_body()).await, r#"{"from":"ollama"}"#);
    let seen = &ollama.seen()[0];
    assert_eq!(seen.uri.to_string(), "/base/api/tags?x=1&y=%20z");
    assert_eq!(seen.headers["host"], "localhost:11434");
    let resp = get(proxy.addr, "/directx").await;
    assert_eq!(body_string(resp.into_body()).await, r#"{"from":"web"}"#);
    assert_eq!(web.seen()[0].uri.to_string(), "/directx");
    assert_eq!(web.seen()[0].headers["host"], web.addr.to_string());
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let mock = MockUpstream::start(|_| async {
        Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-kept", "yes")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    let req = http::Request::builder()
        .uri("/api/models")
        .header("host", "gate.example")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("proxy-connection", "keep-alive")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-end-to-end", "kept")
        .body(full(""))
        .unwrap();
    let resp = send(proxy.addr, req).await;
    for h in ["x-internal", "keep-alive", "proxy-authenticate"] {
        assert!(!resp.headers().contains_key(h), "{h} leaked to the client");
    }
    assert_eq!(resp.headers()["x-kept"], "yes");
    let seen = &mock.seen()[0].headers;
    for h in [
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!seen.contains_key(h), "{h} leaked to the upstream");
    }
    assert_eq!(seen["x-end-to-end"], "kept");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "a client cannot forge its address"
    );
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "gate.example");
}

#[tokio::test]
async fn request_id_is_kept_or_generated_and_returned() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::to(mock.addr, "").await;
    let mut req = request("GET", "/api/models", full(""));
    req.headers_mut()
        .insert("x-request-id", "client-chose-this".parse().unwrap());
    let resp = send(proxy.addr, req).await;
    assert_eq!(resp.headers()["x-request-id"], "client-chose-this");
    assert_eq!(mock.seen()[0].headers["x-request-id"], "client-chose-this");
    let resp = get(proxy.addr, "/api/models").await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(mock.seen()[1].headers["x-request-id"], id.as_str());
}

#[tokio::test]
async fn upstream_errors_pass_through_untouched() {
    let mock =
        MockUpstream::start(|_| async { json(400, r#"{"detail":"Model not found"}"#) }).await;
    let proxy = Proxy::to(mock.addr, "").await;
    let resp = send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        body_string(resp.into_body()).await,
        r#"{"detail":"Model not found"}"#
    );
}

#[tokio::test]
async fn unknown_path_gets_404_no_route() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/api\"\nupstream = \"m\"\n",
        mock.addr
    ))
    .await;
    let resp = get(proxy.addr, "/nothing/here").await;
    assert_eq!(resp.status(), 404);
    let v = error_json(resp).await;
    assert_eq!(v["error"]["code"], "no_route");
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let mock = MockUpstream::start(|req| async move {
        drain_body(req.into_body()).await;
        json(200, "{}")
    })
    .await;
    // Proxy::start opens the [server] table, so the first line lands in it.
    let proxy = Proxy::start(&format!(
        "max_request_body = \"1KiB\"\n[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ))
    .await;
    // Declared too large: refused before any upstream call.
    let resp = send(
        proxy.addr,
        request("POST", "/api/v1/files/", full(vec![b'x'; 2048])),
    )
    .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(error_json(resp).await["error"]["code"], "request_too_large");
    assert_eq!(mock.hits(), 0);
    // Chunked, no length: cut off while streaming.
    let (tx, body) = channel_body();
    let pending = tokio::spawn(send(proxy.addr, request("POST", "/api/v1/files/", body)));
    for _ in 0..4 {
        if tx.send(Ok(vec![b'x'; 512].into())).await.is_err() {
            break;
        }
    }
    drop(tx);
    let resp = pending.await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(error_json(resp).await["error"]["code"], "request_too_large");
    // Within the limit: passes.
    let resp = send(
        proxy.addr,
        request("POST", "/api/v1/files/", full(vec![b'x'; 1024])),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn upstream_down_gets_502() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let proxy = Proxy::to(addr, "").await;
    let resp = get(proxy.addr, "/api/models").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        error_json(resp).await["error"]["code"],
        "upstream_unavailable"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_upstream_errors_total{kind="connect",upstream="mock"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn h2c_clients_reach_http1_upstreams() {
    let mock = MockUpstream::start(|req| async move {
        let n = drain_body(req.into_body()).await;
        json(200, &format!(r#"{{"got":{n}}}"#))
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    let mut sender = h2c(proxy.addr).await;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}/api/chat/completions", proxy.addr))
        .body(full("hello"))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"got":5}"#);
    assert_eq!(mock.seen()[0].uri.path(), "/api/chat/completions");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_code() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::to(mock.addr, "").await;
    for _ in 0..3 {
        get(proxy.addr, "/api/models")
            .await
            .into_body()
            .collect()
            .await
            .unwrap();
    }
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_requests_total{code="200",method="GET",route="/",upstream="mock"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert!(m.contains("llmgate_build_info{version=\""));
    assert!(m.contains("process_resident_memory_bytes"));
}

#[tokio::test]
async fn relay_gets_its_own_credential_never_the_clients() {
    let relay = MockUpstream::start(|_| async { json(200, "{}") }).await;
    std::env::set_var("LLMGATE_TEST_RELAY_KEY", "relay-secret");
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"relay\"\nurl = \"http://{}/v1\"\nbearer = \"${{LLMGATE_TEST_RELAY_KEY}}\"\n[[routes]]\npath_prefix = \"/relay\"\nupstream = \"relay\"\nrewrite_prefix = \"/\"\n",
        relay.addr
    ))
    .await;
    let mut req = request("POST", "/relay/chat/completions", full("{}"));
    req.headers_mut().insert(
        "authorization",
        "Bearer sk-client0123456789abcdef0123456789ab"
            .parse()
            .unwrap(),
    );
    req.headers_mut()
        .insert("x-api-key", "client-key".parse().unwrap());
    req.headers_mut()
        .insert("cookie", "theme=dark; token=eyJclient".parse().unwrap());
    assert_eq!(send(proxy.addr, req).await.status(), 200);
    let seen = &relay.seen()[0];
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer relay-secret");
    assert!(!seen.headers.contains_key("x-api-key"));
    assert_eq!(seen.headers["cookie"], "theme=dark");
}
