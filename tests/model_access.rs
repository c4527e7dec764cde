//! Model allowlists with real llmgate keys: lists filtered and cached per identity, 403
//! `model_not_allowed` for any other model (body, query, duplicate or disguised keys, past the
//! read-ahead window), and `?refresh=true` for administrators only.

mod common;
use bytes::Bytes;
use common::auth::*;
use common::*;
use http::Response;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Open WebUI: a list of three models, and a chat endpoint that says who answered. `bodies`
/// counts chat bodies that arrived whole.
async fn upstream(name: &'static str, bodies: Arc<AtomicUsize>) -> MockUpstream {
    MockUpstream::start(move |req| {
        let bodies = bodies.clone();
        async move {
            let path = req.uri().path().to_string();
            if path.ends_with("/models") {
                return json(
                    200,
                    r#"{"data":[{"id":"llama3"},{"id":"gpt-4o"},{"id":"claude-3-opus"}]}"#,
                );
            }
            let Ok(body) = req.into_body().collect().await else {
                return json(400, r#"{"detail":"body broke off"}"#);
            };
            bodies.fetch_add(1, Ordering::SeqCst);
            let v: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
            json(
                200,
                &format!(r#"{{"from":"{name}","model":{}}}"#, v["model"]),
            )
        }
    })
    .await
}

struct Setup {
    proxy: Proxy,
    web: MockUpstream,
    relay: MockUpstream,
    bodies: Arc<AtomicUsize>,
    restricted: String,
    open: String,
    admin: String,
}

async fn setup() -> Setup {
    let bodies = Arc::new(AtomicUsize::new(0));
    let web = upstream("web", bodies.clone()).await;
    let relay = upstream("relay", bodies.clone()).await;
    let (restricted, r) = new_key("restricted", "auth.keys");
    let (open, o) = new_key("open", "auth.keys");
    let (admin, a) = new_key("boss", "auth.keys");
    let keys = format!("[auth]\n{r}models = [\"gpt-*\"]\n{o}{a}role = \"admin\"\n");
    let routes = "[[routes]]\npath_prefix = \"/api/chat/completions\"\nmodels = [\"gpt-*\", \"claude-*\"]\nupstream = \"relay\"\nrewrite_prefix = \"/chat/completions\"\n";
    let relay_url = format!("http://{}/v1", relay.addr);
    let proxy = Proxy::start(&format!(
        "{}\n{keys}",
        web_and_relay(web.addr, &relay_url, "", routes)
    ))
    .await;
    Setup {
        proxy,
        web,
        relay,
        bodies,
        restricted,
        open,
        admin,
    }
}

async fn list(addr: SocketAddr, path: &str, key: &str) -> (String, Vec<String>) {
    let resp = send(addr, bearer_get(path, key)).await;
    assert_eq!(resp.status(), 200, "{path}");
    let cache = resp.headers()["x-llmgate-cache"]
        .to_str()
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    let ids = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    (cache, ids)
}

async fn chat(
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: impl Into<Bytes>,
) -> Response<hyper::body::Incoming> {
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "llmgate.test")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(full(body.into()))
        .unwrap();
    send(addr, req).await
}

async fn refused(resp: Response<hyper::body::Incoming>) {
    assert_eq!(resp.status(), 403);
    let v: Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    assert_eq!(v["error"]["code"], "model_not_allowed");
}

#[tokio::test]
async fn lists_are_filtered_and_cached_per_identity() {
    let s = setup().await;
    for round in ["miss", "hit"] {
        let (cache, ids) = list(s.proxy.addr, "/api/models", &s.restricted).await;
        assert_eq!((cache.as_str(), ids), (round, vec!["gpt-4o".to_string()]));
        let (cache, ids) = list(s.proxy.addr, "/api/models", &s.open).await;
        assert_eq!(cache, round);
        assert_eq!(ids, ["llama3", "gpt-4o", "claude-3-opus"]);
    }
    let (_, ids) = list(s.proxy.addr, "/v1/models", &s.restricted).await;
    assert_eq!(ids, ["gpt-4o"]);
    // The upstream saw no llmgate key, so its lists could not tell the users apart: the
    // cache did, by identity.
    assert!(s
        .web
        .seen()
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
}

#[tokio::test]
async fn other_models_are_refused_before_any_upstream_call() {
    let s = setup().await;
    for model in ["llama3", "claude-3-opus"] {
        let body = format!(r#"{{"messages":[],"model":"{model}"}}"#);
        refused(chat(s.proxy.addr, "/api/chat/completions", &s.restricted, body).await).await;
    }
    assert_eq!(s.web.hits() + s.relay.hits(), 0);
    let resp = chat(
        s.proxy.addr,
        "/api/chat/completions",
        &s.restricted,
        r#"{"model":"gpt-4o"}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Without an allowlist, any model.
    let resp = chat(
        s.proxy.addr,
        "/api/chat/completions",
        &s.open,
        r#"{"model":"llama3"}"#,
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_model_in_the_query_string_is_checked_too() {
    let s = setup().await;
    let resp = send(
        s.proxy.addr,
        bearer_get("/api/v1/models/model?model=llama3", &s.restricted),
    )
    .await;
    refused(resp).await;
    let resp = send(
        s.proxy.addr,
        bearer_get("/ollama/api/show?MODEL=llam%61%33", &s.restricted),
    )
    .await;
    refused(resp).await;
    let path = "/api/chat/completions?model=llama3";
    refused(chat(s.proxy.addr, path, &s.restricted, r#"{"model":"gpt-4o"}"#).await).await;
    assert_eq!(s.web.hits() + s.relay.hits(), 0);
    let resp = send(
        s.proxy.addr,
        bearer_get("/api/x?model=gpt-4o", &s.restricted),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn duplicate_and_disguised_model_keys_are_refused() {
    let s = setup().await;
    for body in [
        r#"{"model":"gpt-4o","model":"llama3"}"#,
        r#"{"model":"gpt-4o","Model":"llama3"}"#,
        r#"{"model":"gpt-4o","mod\u0065l":"llama3"}"#,
        r#"{"model":["llama3"]}"#,
        r#"{"model":"gpt-4o","messages":[{"content":"x"}] , "MODEL" : "llama3"}"#,
        "\u{feff}{\"model\":\"llama3\"}",
    ] {
        refused(chat(s.proxy.addr, "/api/chat/completions", &s.restricted, body).await).await;
    }
    // UTF-16, which Python's json.loads would decode: not readable here, so refused.
    let utf16: Vec<u8> =
        r#"{"model":"llama3"}"#.encode_utf16().flat_map(u16::to_le_bytes).collect();
    refused(chat(s.proxy.addr, "/api/chat/completions", &s.restricted, utf16).await).await;
    assert_eq!(s.web.hits() + s.relay.hits(), 0);
}

#[tokio::test]
async fn a_model_named_past_the_window_cuts_the_body_off() {
    let s = setup().await;
    let filler = "x".repeat(200 << 10);
    // Allowed model first, a forbidden one after 200 KiB: the upstream never gets the whole
    // body, and the client gets 403.
    let body = format!(r#"{{"model":"gpt-4o","messages":["{filler}"],"model":"llama3"}}"#);
    refused(chat(s.proxy.addr, "/api/chat/completions", &s.restricted, body).await).await;
    // Only a forbidden model, after the window.
    let body = format!(r#"{{"messages":["{filler}"],"model":"llama3"}}"#);
    refused(chat(s.proxy.addr, "/api/chat/completions", &s.restricted, body).await).await;
    assert_eq!(
        s.bodies.load(Ordering::SeqCst),
        0,
        "an upstream got a whole body"
    );
    // An allowed model after the window streams through.
    let body = format!(r#"{{"messages":["{filler}"],"model":"gpt-4o"}}"#);
    let resp = chat(s.proxy.addr, "/api/chat/completions", &s.restricted, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.bodies.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refresh_true_refetches_for_administrators_only() {
    let s = setup().await;
    let lists_fetched = |m: &MockUpstream| {
        m.seen()
            .iter()
            .filter(|r| r.uri.path() == "/api/models")
            .count()
    };
    let steps = [
        (&s.admin, "/api/models", "miss", 1),
        (&s.admin, "/api/models", "hit", 1),
        (&s.admin, "/api/models?refresh=true", "miss", 2),
        (&s.open, "/api/models", "miss", 3),
        (&s.open, "/api/models?refresh=true", "hit", 3),
    ];
    for (key, path, cache, fetched) in steps {
        assert_eq!(list(s.proxy.addr, path, key).await.0, cache, "{path}");
        assert_eq!(lists_fetched(&s.web), fetched, "{path}");
    }
}
