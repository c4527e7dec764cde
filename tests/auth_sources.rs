//! Each identity source, valid and invalid: llmgate keys (inline and keys file), Open WebUI
//! JWTs verified locally, `sk-` keys and JWTs by cached introspection, and how failures answer.

mod common;
use common::auth::*;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// One upstream `owui` at `up` serving every path, and `[auth]` with `auth` in it.
fn config(up: SocketAddr, auth: &str) -> String {
    format!(
        "[[upstreams]]\nname = \"owui\"\nurl = \"http://{up}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"owui\"\n[auth]\n{auth}\n"
    )
}

fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn llmgate_keys_from_config_and_keys_file() {
    let up = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let dir = tempfile::tempdir().unwrap();
    let (inline_key, inline) = new_key("inline-team", "auth.keys");
    let (file_key, file_entry) = new_key("file-team", "keys");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, file_entry).unwrap();
    let proxy = Proxy::start(&config(
        up.addr,
        &format!("keys_file = \"{}\"\n{inline}", keys.display()),
    ))
    .await;

    for key in [&inline_key, &file_key] {
        let (status, _) = status_body(send(proxy.addr, bearer_get("/api/models", key)).await).await;
        assert_eq!(status, 200);
    }
    let mut req = request("GET", "/api/models", full(""));
    req.headers_mut()
        .insert("x-api-key", file_key.parse().unwrap());
    assert_eq!(send(proxy.addr, req).await.status(), 200);
    assert_eq!(up.hits(), 3);
    for seen in up.seen() {
        assert!(
            !seen.headers.contains_key("authorization") && !seen.headers.contains_key("x-api-key"),
            "an llmgate key reached the upstream"
        );
    }

    // A wrong key, and a key whose last character differs.
    let mut near = file_key.clone();
    near.pop();
    near.push('x');
    for bad in ["lg-0000", near.as_str()] {
        let resp = send(proxy.addr, bearer_get("/api/models", bad)).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        let (_, body) = status_body(resp).await;
        assert_eq!(code(&body), "invalid_api_key");
        assert!(!body.contains(bad), "the credential was echoed: {body}");
    }
    let resp = get(proxy.addr, "/api/models").await;
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (status, body) = status_body(resp).await;
    assert_eq!((status, code(&body).as_str()), (401, "missing_api_key"));
    assert_eq!(up.hits(), 3, "refused requests reached the upstream");

    assert_eq!(auth_failures(&proxy, "invalid").await, Some(2.0));
    assert_eq!(auth_failures(&proxy, "missing").await, Some(1.0));
}

#[tokio::test]
async fn jwts_verified_locally_valid_expired_wrong_secret_and_alg_none() {
    let owui = open_webui(Duration::ZERO).await;
    let proxy = Proxy::start(&config(
        owui.addr,
        &format!("openwebui_jwt_secret = \"{JWT_SECRET}\"\nintrospect_upstream = \"owui\""),
    ))
    .await;
    let good = jwt(JWT_SECRET, "u7", 3600);
    let resp = send(proxy.addr, bearer_get("/api/models", &good)).await;
    assert_eq!(resp.status(), 200);
    // The browser UI sends the JWT as the `token` cookie.
    let mut req = request("GET", "/api/v1/chats/", full(""));
    req.headers_mut().insert(
        "cookie",
        format!("theme=dark; token={good}").parse().unwrap(),
    );
    assert_eq!(send(proxy.addr, req).await.status(), 200);
    let seen = forwarded(&owui);
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {good}").as_str(),
        "Open WebUI needs the client's own credential"
    );
    assert!(seen[1].headers["cookie"].to_str().unwrap().contains(&good));

    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"id":"u7","exp":{}}}"#, now() + 3600))
    );
    for bad in [
        jwt(JWT_SECRET, "u7", -5),
        jwt("some-other-secret-0123456789", "u7", 3600),
        alg_none,
        format!("{}x", &good[..good.len() - 1]),
    ] {
        let (status, body) =
            status_body(send(proxy.addr, bearer_get("/api/models", &bad)).await).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (401, "invalid_api_key"),
            "{bad}"
        );
    }
    assert_eq!(
        introspections(&owui),
        0,
        "a configured secret makes local checks final"
    );
    assert_eq!(auth_failures(&proxy, "expired").await, Some(1.0));
}

#[tokio::test]
async fn sk_keys_and_jwts_by_introspection() {
    let owui = open_webui(Duration::ZERO).await;
    let proxy = Proxy::start(&config(owui.addr, "introspect_upstream = \"owui\"")).await;
    let token = jwt(JWT_SECRET, "u9", 3600);
    for cred in [SK_GOOD, token.as_str()] {
        let (status, body) =
            status_body(send(proxy.addr, bearer_get("/api/models", cred)).await).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(introspections(&owui), 2);
    let seen = forwarded(&owui);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {SK_GOOD}").as_str()
    );
    for bad in [
        "sk-ffffffffffffffffffffffffffffffff",
        &jwt("wrong-secret-0123456789abc", "u9", 60),
    ] {
        let (status, body) =
            status_body(send(proxy.addr, bearer_get("/api/models", bad)).await).await;
        assert_eq!((status, code(&body).as_str()), (401, "invalid_api_key"));
    }
    // Neither an sk- key nor a JWT: not worth asking about.
    let (status, _) =
        status_body(send(proxy.addr, bearer_get("/api/models", "hunter2")).await).await;
    assert_eq!(status, 401);
    assert_eq!(introspections(&owui), 4);
    assert_eq!(forwarded(&owui).len(), 2);
}

#[tokio::test]
async fn concurrent_requests_for_one_credential_cause_one_introspection() {
    let owui = open_webui(Duration::from_millis(300)).await;
    let proxy = Proxy::start(&config(owui.addr, "introspect_upstream = \"owui\"")).await;
    let tasks: Vec<_> = (0..20)
        // Not a model-list path: those are answered from llmgate's cache.
        .map(|_| tokio::spawn(send(proxy.addr, bearer_get("/api/chats", SK_GOOD))))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status(), 200);
    }
    assert_eq!(introspections(&owui), 1);
    assert_eq!(forwarded(&owui).len(), 20);
}

#[tokio::test]
async fn introspection_answers_expire_after_their_ttl() {
    let owui = open_webui(Duration::ZERO).await;
    let proxy = Proxy::start(&config(
        owui.addr,
        "introspect_upstream = \"owui\"\nintrospect_ttl = \"400ms\"\nintrospect_negative_ttl = \"400ms\"",
    ))
    .await;
    let bad = "sk-99999999999999999999999999999999";
    for _ in 0..3 {
        assert_eq!(bearer_status(proxy.addr, "/x", SK_GOOD).await, 200);
        assert_eq!(bearer_status(proxy.addr, "/x", bad).await, 401);
    }
    assert_eq!(
        introspections(&owui),
        2,
        "answers are cached, valid and invalid"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(bearer_status(proxy.addr, "/x", SK_GOOD).await, 200);
    assert_eq!(bearer_status(proxy.addr, "/x", bad).await, 401);
    assert_eq!(
        introspections(&owui),
        4,
        "expired answers are asked for again"
    );
}

#[tokio::test]
async fn introspection_failures_fail_closed_with_503_and_are_not_cached() {
    for status in [500u16, 403, 502] {
        let owui = MockUpstream::start(move |req| async move {
            if req.uri().path() == "/api/v1/users/user/status" {
                json(status, r#"{"detail":"nope"}"#)
            } else {
                json(200, "{}")
            }
        })
        .await;
        let proxy = Proxy::start(&config(owui.addr, "introspect_upstream = \"owui\"")).await;
        for _ in 0..2 {
            let (st, body) =
                status_body(send(proxy.addr, bearer_get("/api/models", SK_GOOD)).await).await;
            assert_eq!(
                (st, code(&body).as_str()),
                (503, "auth_unavailable"),
                "upstream {status}"
            );
        }
        assert_eq!(
            introspections(&owui),
            2,
            "a failure is never cached (upstream {status})"
        );
        assert_eq!(forwarded(&owui).len(), 0);
    }

    // Down, and too slow.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let slow = open_webui(Duration::from_secs(5)).await;
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"dead\"\nurl = \"http://{dead_addr}\"\n[[upstreams]]\nname = \"slow\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"slow\"\n[auth]\nintrospect_upstream = \"dead\"\n",
        slow.addr
    ))
    .await;
    let (st, _) = status_body(send(proxy.addr, bearer_get("/api/models", SK_GOOD)).await).await;
    assert_eq!(st, 503);
    let proxy = Proxy::start(
        &config(
            slow.addr,
            "introspect_upstream = \"owui\"\nintrospect_timeout = \"200ms\"",
        )
        .replace("\"owui\"", "\"slow\""),
    )
    .await;
    let started = std::time::Instant::now();
    let (st, _) = status_body(send(proxy.addr, bearer_get("/api/models", SK_GOOD)).await).await;
    assert_eq!(st, 503);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(auth_failures(&proxy, "unavailable").await, Some(1.0));
}

#[tokio::test]
async fn repeated_failures_from_one_address_get_429_before_an_upstream_call() {
    let owui = open_webui(Duration::ZERO).await;
    let proxy = Proxy::start(&config(
        owui.addr,
        "introspect_upstream = \"owui\"\nmax_failures_per_ip = 3\nfailure_window = \"1m\"",
    ))
    .await;
    for i in 0..3 {
        let bad = format!("sk-{i:032}");
        assert_eq!(bearer_status(proxy.addr, "/api/models", &bad).await, 401);
    }
    assert_eq!(introspections(&owui), 3);
    // Even a good credential waits now, and costs no upstream call.
    let resp = send(proxy.addr, bearer_get("/api/models", SK_GOOD)).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    let (_, body) = status_body(resp).await;
    assert_eq!(code(&body), "rate_limit_exceeded");
    assert_eq!(introspections(&owui), 3);
    assert_eq!(forwarded(&owui).len(), 0);
    assert_eq!(auth_failures(&proxy, "throttled").await, Some(1.0));
}
