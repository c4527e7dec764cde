//! Routing by the model a request body names: read from a bounded prefix, the body forwarded
//! unchanged and unbuffered, relays reached with their own credential and path, over https.

mod common;
use bytes::Bytes;
use common::*;
use http::Response;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;

/// An upstream that says who it is and what body it got (length and hash), as JSON or SSE.
async fn echo(name: &'static str) -> MockUpstream {
    MockUpstream::start(move |req| echo_handler(name, req)).await
}

async fn echo_handler(
    name: &'static str,
    req: http::Request<hyper::body::Incoming>,
) -> Response<MockBody> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = json!({
        "from": name,
        "model": v["model"],
        "len": body.len(),
        "sha": hex(&body),
    })
    .to_string();
    if v["stream"] == true {
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(stream_of(vec![sse(&answer), sse("[DONE]")]))
            .unwrap();
    }
    json(200, &answer)
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `server` holds `[server]` keys; `extra_relay` more keys of the relay upstream. Chat
/// completions go to the relay for its models, under `/api` and `/v1`.
fn config(
    server: &str,
    web: SocketAddr,
    relay_url: &str,
    extra_relay: &str,
    extra: &str,
) -> String {
    let relay_routes: String = ["/api/chat/completions", "/v1/chat/completions"]
        .iter()
        .map(|p| {
            format!(
                "[[routes]]\npath_prefix = \"{p}\"\nmodels = [\"gpt-*\", \"claude-*\"]\nupstream = \"relay\"\nrewrite_prefix = \"/chat/completions\"\n"
            )
        })
        .collect();
    format!(
        "{server}\n{}",
        web_and_relay(
            web,
            relay_url,
            extra_relay,
            &format!("{relay_routes}{extra}")
        )
    )
}

async fn setup(server: &str, extra: &str) -> (MockUpstream, MockUpstream, Proxy) {
    let web = echo("web").await;
    let relay = echo("relay").await;
    let proxy = Proxy::start(&config(
        server,
        web.addr,
        &format!("http://{}/v1", relay.addr),
        "",
        extra,
    ))
    .await;
    (web, relay, proxy)
}

async fn post(proxy: &Proxy, path: &str, body: MockBody) -> Response<hyper::body::Incoming> {
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "llmgate.test")
        .header("content-type", "application/json")
        .header("authorization", "Bearer user-key")
        .header("cookie", "theme=dark; token=user-jwt")
        .body(body)
        .unwrap();
    send(proxy.addr, req).await
}

async fn answer(resp: Response<hyper::body::Incoming>) -> Value {
    assert_eq!(resp.status(), 200);
    let text = body_string(resp.into_body()).await;
    let text = text
        .strip_prefix("data: ")
        .map_or(text.as_str(), |t| t.split("\n\n").next().unwrap());
    serde_json::from_str(text).unwrap()
}

fn chat(model: &str, stream: bool, filler: usize) -> Bytes {
    // Content that looks like JSON and names other models, to mislead a naive scanner.
    let content = "say \\\"model\\\": \\\"llama3\\\" {[".repeat(filler / 24 + 1);
    Bytes::from(format!(
        r#"{{"messages":[{{"role":"user","content":"{content}","model":"nested"}}],"stream":{stream},"model":"{model}"}}"#
    ))
}

#[tokio::test]
async fn relay_models_reach_the_relay_with_its_credential_and_path() {
    let (web, relay, proxy) = setup("", "").await;
    let body = chat("gpt-4o", false, 100);
    let v = answer(post(&proxy, "/api/chat/completions", full(body.clone())).await).await;
    assert_eq!(v["from"], "relay");
    assert_eq!(v["sha"], hex(&body), "body changed on the way");
    let seen = &relay.seen()[0];
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer relay-secret");
    assert!(seen
        .headers
        .get("cookie")
        .is_none_or(|c| !c.to_str().unwrap().contains("token")));

    // Any other model goes to the route without `models`, with the client's own credential.
    let body = chat("llama3", false, 100);
    let v = answer(post(&proxy, "/api/chat/completions", full(body.clone())).await).await;
    assert_eq!(v["from"], "web");
    assert_eq!(v["sha"], hex(&body));
    let seen = &web.seen()[0];
    assert_eq!(seen.uri.path(), "/api/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer user-key");
}

#[tokio::test]
async fn sse_streams_are_routed_by_model() {
    let (_web, _relay, proxy) = setup("", "").await;
    for (model, from) in [("claude-3-5-sonnet", "relay"), ("llama3", "web")] {
        let resp = post(&proxy, "/api/chat/completions", full(chat(model, true, 10))).await;
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let text = body_string(resp.into_body()).await;
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let first: Value = serde_json::from_str(
            text.strip_prefix("data: ")
                .unwrap()
                .split("\n\n")
                .next()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(first["from"], from, "{model}");
    }
}

#[tokio::test]
async fn openai_sdk_paths_under_v1_reach_the_right_upstream() {
    let (web, relay, proxy) = setup("", "").await;
    let v = answer(
        post(
            &proxy,
            "/v1/chat/completions",
            full(chat("gpt-4o-mini", false, 10)),
        )
        .await,
    )
    .await;
    assert_eq!(v["from"], "relay");
    assert_eq!(relay.seen()[0].uri.path(), "/v1/chat/completions");
    let v = answer(
        post(
            &proxy,
            "/v1/chat/completions",
            full(chat("llama3", false, 10)),
        )
        .await,
    )
    .await;
    assert_eq!(v["from"], "web");
    assert_eq!(web.seen()[0].uri.path(), "/api/chat/completions");
}

#[tokio::test]
async fn model_after_a_large_messages_array_is_found_within_the_window() {
    let (_web, _relay, proxy) = setup("", "[model_routing]\npeek_window = \"1MiB\"").await;
    let body = chat("gpt-4o", false, 600 << 10);
    assert!(body.len() > 600 << 10);
    // Sent in uneven small frames, so keys, escapes and the model value straddle frames.
    let chunks: Vec<Bytes> = body.chunks(4093).map(Bytes::copy_from_slice).collect();
    let v = answer(post(&proxy, "/api/chat/completions", stream_of(chunks)).await).await;
    assert_eq!(v["from"], "relay");
    assert_eq!(v["len"], body.len());
    assert_eq!(v["sha"], hex(&body));
}

#[tokio::test]
async fn model_beyond_the_window_goes_to_the_route_without_models() {
    let (_web, _relay, proxy) = setup("", "").await;
    let body = chat("gpt-4o", false, 200 << 10);
    let v = answer(post(&proxy, "/api/chat/completions", full(body.clone())).await).await;
    assert_eq!(v["from"], "web");
    assert_eq!(v["sha"], hex(&body), "the body must arrive whole");
    let m = proxy.metrics().await;
    assert_eq!(
        metric(&m, "llmgate_bytes_total{direction=\"in\"}"),
        Some(body.len() as f64),
        "read-ahead bytes must be counted once"
    );
}

#[tokio::test]
async fn the_body_after_the_model_is_streamed_not_buffered() {
    let (_web, relay, proxy) = setup("", "").await;
    let (tx, body) = channel_body();
    let resp = tokio::spawn({
        let addr = proxy.addr;
        async move {
            let req = http::Request::builder()
                .method("POST")
                .uri("/api/chat/completions")
                .header("host", "llmgate.test")
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
            send(addr, req).await
        }
    });
    let (head, tail) = (&br#"{"model":"gpt-4o","messages":["#[..], &b"\"end\"]}"[..]);
    tx.send(Ok(Bytes::from_static(head))).await.unwrap();
    // The relay gets the request while most of the body is still to come.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while relay.hits() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay never got the request head"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let piece = Bytes::from(format!("\"{}\",", "x".repeat(1 << 20)));
    for _ in 0..5 {
        tx.send(Ok(piece.clone())).await.unwrap();
    }
    tx.send(Ok(Bytes::from_static(tail))).await.unwrap();
    drop(tx);
    let v = answer(resp.await.unwrap()).await;
    assert_eq!(v["from"], "relay");
    assert_eq!(v["len"], head.len() + 5 * piece.len() + tail.len());
}

#[tokio::test]
async fn size_limit_still_applies_to_read_ahead_bodies() {
    let (_web, relay, proxy) = setup("max_request_body = \"16KiB\"", "").await;
    let body = chat("gpt-4o", false, 64 << 10);
    let chunks = body.chunks(1000).map(Bytes::copy_from_slice).collect();
    let resp = post(&proxy, "/api/chat/completions", stream_of(chunks)).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(
        relay.hits(),
        0,
        "read ahead past the limit must not reach an upstream"
    );
}

#[tokio::test]
async fn a_model_no_route_serves_gets_404_model_not_found() {
    let relay = echo("relay").await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstreams]]
name = "relay"
url = "http://{}"
[[routes]]
path_prefix = "/v1/chat/completions"
models = ["gpt-*"]
upstream = "relay"
"#,
        relay.addr
    ))
    .await;
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        full(chat("llama3", false, 1)),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        full(chat("gpt-4o", false, 1)),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn https_relay_is_verified_against_ca_file() {
    let web = echo("web").await;
    let (relay, ca) = MockUpstream::start_tls(|req| echo_handler("relay", req)).await;
    let url = format!("https://{}/v1", relay.addr);
    let ca_line = format!("ca_file = {:?}", ca.pem_path.display().to_string());
    let proxy = Proxy::start(&config("", web.addr, &url, &ca_line, "")).await;
    let v = answer(
        post(
            &proxy,
            "/api/chat/completions",
            full(chat("gpt-4o", false, 10)),
        )
        .await,
    )
    .await;
    assert_eq!(v["from"], "relay");
    let seen = &relay.seen()[0];
    assert_eq!(seen.uri.path(), "/v1/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer relay-secret");

    // Without the CA the relay's certificate is not trusted: fail closed with 502.
    let untrusted = Proxy::start(&config("", web.addr, &url, "", "")).await;
    let resp = post(
        &untrusted,
        "/api/chat/completions",
        full(chat("gpt-4o", false, 10)),
    )
    .await;
    assert_eq!(resp.status(), 502);
    assert_eq!(relay.hits(), 1);
}
