//! The merged catalogue: the default upstream's list plus the relays' models, in the shape of
//! each list path, each id once.

mod common;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Open WebUI's lists: two models, one of which the relay also serves.
async fn webui() -> MockUpstream {
    MockUpstream::start(|req| async move {
        match req.uri().path() {
            "/api/models" | "/api/v1/models" => json(
                200,
                r#"{"data":[{"id":"llama3","object":"model","owned_by":"ollama"},{"id":"gpt-4o","object":"model","owned_by":"openai","connection_type":"external"}]}"#,
            ),
            "/ollama/api/tags" => json(200, r#"{"models":[{"name":"llama3:latest","model":"llama3:latest"}]}"#),
            _ => json(404, r#"{"detail":"Not Found"}"#),
        }
    })
    .await
}

/// A relay with its own key and four models, one outside the globs llmgate routes to it.
async fn relay() -> MockUpstream {
    MockUpstream::start(|req| async move {
        if req.headers().get("authorization").is_none_or(|a| a != "Bearer relay-secret") {
            return json(401, r#"{"error":{"message":"bad key"}}"#);
        }
        match req.uri().path() {
            "/v1/models" => json(
                200,
                r#"{"object":"list","data":[{"id":"gpt-4o","created":10,"owned_by":"openai"},{"id":"gpt-4o-mini","created":11,"owned_by":"openai"},{"id":"dall-e-3","created":12,"owned_by":"openai"},{"id":"claude-3-opus","created":13,"owned_by":"anthropic"}]}"#,
            ),
            _ => json(404, r#"{"error":{"message":"no such path"}}"#),
        }
    })
    .await
}

fn config(web: SocketAddr, relay: &str, relay_extra: &str) -> String {
    web_and_relay(web, &format!("http://{relay}/v1"), relay_extra, "")
}

async fn list(proxy: &Proxy, path: &str, auth: &str) -> Value {
    let mut req = request("GET", path, full(""));
    req.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let resp = send(proxy.addr, req).await;
    assert_eq!(resp.status(), 200, "{path}");
    serde_json::from_str(&body_string(resp.into_body()).await).unwrap()
}

fn ids(v: &Value, key: &str, id: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[id].as_str().unwrap().to_string())
        .collect()
}

const MERGED: [&str; 4] = ["llama3", "gpt-4o", "gpt-4o-mini", "claude-3-opus"];

#[tokio::test]
async fn api_models_adds_relay_models_in_open_webui_shape() {
    let (web, relay) = (webui().await, relay().await);
    let proxy = Proxy::start(&config(web.addr, &relay.addr.to_string(), "")).await;
    for path in ["/api/models", "/api/v1/models"] {
        let v = list(&proxy, path, "Bearer user-a").await;
        assert_eq!(ids(&v, "data", "id"), MERGED, "{path}");
        let added = &v["data"][2];
        assert_eq!(added["name"], "gpt-4o-mini");
        assert_eq!(added["object"], "model");
        assert_eq!(added["owned_by"], "openai");
        assert_eq!(added["connection_type"], "external");
        // Open WebUI's own entry for a shared id wins.
        assert_eq!(v["data"][1]["owned_by"], "openai");
        assert!(v.get("object").is_none());
    }
    // The relay was asked with its own key, never the user's, and only once for both users.
    list(&proxy, "/api/models", "Bearer user-b").await;
    let asked: Vec<_> = relay.seen();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].uri.path(), "/v1/models");
    assert_eq!(asked[0].headers["authorization"], "Bearer relay-secret");
}

#[tokio::test]
async fn v1_models_is_an_openai_list() {
    let (web, relay) = (webui().await, relay().await);
    let proxy = Proxy::start(&config(web.addr, &relay.addr.to_string(), "")).await;
    let v = list(&proxy, "/v1/models", "Bearer sk-any").await;
    assert_eq!(v["object"], "list");
    assert_eq!(ids(&v, "data", "id"), MERGED);
    let added = &v["data"][3];
    assert_eq!(added["object"], "model");
    assert_eq!(added["created"], 13);
    assert_eq!(added["owned_by"], "anthropic");
    assert!(added.get("connection_type").is_none());
    assert_eq!(web.seen()[0].uri.path(), "/api/models");
}

#[tokio::test]
async fn a_static_model_list_is_used_without_asking_the_relay() {
    let (web, relay) = (webui().await, relay().await);
    let proxy = Proxy::start(&config(
        web.addr,
        &relay.addr.to_string(),
        r#"model_list = ["gpt-4o", "o3"]"#,
    ))
    .await;
    let v = list(&proxy, "/v1/models", "Bearer sk-any").await;
    assert_eq!(ids(&v, "data", "id"), ["llama3", "gpt-4o", "o3"]);
    assert_eq!(v["data"][2]["owned_by"], "relay");
    assert_eq!(relay.hits(), 0);
}

#[tokio::test]
async fn a_hanging_relay_is_left_out_and_asked_again_behind_the_list() {
    let web = webui().await;
    let up = Arc::new(AtomicBool::new(false));
    let relay_up = up.clone();
    let relay = MockUpstream::start(move |_req| {
        let up = relay_up.clone();
        async move {
            if !up.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            json(200, r#"{"data":[{"id":"gpt-4o-mini"}]}"#)
        }
    })
    .await;
    let proxy = Proxy::start(&format!(
        "{}\n[model_cache]\nttl = \"1s\"\nfetch_timeout = \"300ms\"\n",
        config(web.addr, &relay.addr.to_string(), "")
    ))
    .await;
    // The list comes without the relay's models once fetch_timeout is over, not after the
    // relay's response_timeout.
    let v = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        list(&proxy, "/api/models", "Bearer user-a"),
    )
    .await
    .expect("a hanging relay held the list");
    assert_eq!(ids(&v, "data", "id"), ["llama3", "gpt-4o"]);
    // Once the relay answers, the incomplete list is refreshed (after the retry pause, here
    // the 1 s ttl) behind the next answers.
    up.store(true, Ordering::SeqCst);
    let mut merged = false;
    for _ in 0..100 {
        let v = list(&proxy, "/api/models", "Bearer user-a").await;
        if ids(&v, "data", "id").contains(&"gpt-4o-mini".to_string()) {
            merged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(merged, "the relay's models never joined the list");
}

#[tokio::test]
async fn ollama_tags_keep_their_shape_and_get_no_relay_models() {
    let (web, relay) = (webui().await, relay().await);
    let proxy = Proxy::start(&config(web.addr, &relay.addr.to_string(), "")).await;
    let v = list(&proxy, "/ollama/api/tags", "Bearer user-a").await;
    assert_eq!(ids(&v, "models", "name"), ["llama3:latest"]);
    assert_eq!(relay.hits(), 0);
}
