//! Which routes need an identity, and what upstreams get to see: the shipped public routes for
//! the browser UI, exact paths over prefixes, route allowlists (403), the relay credential
//! swap with auth on, and the Socket.IO upgrade.

mod common;
use common::auth::*;
use common::*;
use std::time::Duration;

/// The shipped config with Open WebUI at `owui` and Ollama at `ollama`, on free ports.
fn shipped(owui: std::net::SocketAddr, ollama: std::net::SocketAddr) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/llmgate.toml"))
        .unwrap();
    text.replace("127.0.0.1:8080", &owui.to_string())
        .replace("127.0.0.1:11434", &ollama.to_string())
        .replace("127.0.0.1:8000", "127.0.0.1:0")
        .replace("127.0.0.1:9100", "127.0.0.1:0")
}

async fn start_shipped(owui: &MockUpstream, ollama: &MockUpstream) -> Proxy {
    let text = shipped(owui.addr, ollama.addr);
    // Proxy::start writes its own [server] table; drop the shipped one.
    let text = text.replace("[server]", "[server_shipped]");
    let body = text
        .lines()
        .skip_while(|l| !l.starts_with("[log]"))
        .collect::<Vec<_>>()
        .join("\n");
    Proxy::start(&body).await
}

#[tokio::test]
async fn shipped_config_lets_the_ui_load_before_sign_in_and_guards_the_rest() {
    let owui = open_webui(Duration::ZERO).await;
    let ollama = MockUpstream::start(|_| async { json(200, r#"{"models":[]}"#) }).await;
    let proxy = start_shipped(&owui, &ollama).await;
    for path in [
        "/",
        "/auth",
        "/_app/version.json",
        "/_app/immutable/chunks/x.js",
        "/static/favicon.png",
        "/assets/fonts/Inter.woff2",
        "/manifest.json",
        "/favicon.png",
        "/api/config",
        "/api/version",
        "/oauth/google/login",
        "/health",
    ] {
        assert_eq!(
            get(proxy.addr, path).await.status(),
            200,
            "{path} should be public"
        );
    }
    let signin = send(
        proxy.addr,
        request("POST", "/api/v1/auths/signin", full("{}")),
    )
    .await;
    assert_eq!(signin.status(), 200);
    let public_hits = forwarded(&owui).len();
    for path in [
        "/api/models",
        "/api/v1/auths/",
        "/api/chat/completions",
        "/ollama/api/tags",
        "/ollama-direct/api/tags",
        "/openai/models",
        "/ws/socket.io/?EIO=4&transport=polling",
        "/c/0b6e",
        "/_app",
        "/api/config/",
        "/static",
        "/cache/image.png",
    ] {
        let (status, body) = status_body(get(proxy.addr, path).await).await;
        assert_eq!(status, 401, "{path} must need a credential: {body}");
    }
    assert_eq!(forwarded(&owui).len(), public_hits);
    assert_eq!(ollama.hits(), 0);
    // The default [auth] asks Open WebUI about sk- keys.
    assert_eq!(bearer_status(proxy.addr, "/api/models", SK_GOOD).await, 200);
    assert_eq!(
        bearer_status(proxy.addr, "/ollama-direct/api/tags", SK_GOOD).await,
        200
    );
    assert_eq!(ollama.hits(), 1);
}

#[tokio::test]
async fn exact_path_beats_prefix_and_matches_only_itself() {
    let up = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (key, entry) = new_key("k", "auth.keys");
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"u\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/api/\"\nupstream = \"u\"\n[[routes]]\npath = \"/api/config\"\nupstream = \"u\"\npublic = true\nname = \"cfg\"\n[auth]\n{entry}",
        up.addr
    ))
    .await;
    assert_eq!(get(proxy.addr, "/api/config").await.status(), 200);
    for path in [
        "/api/config/",
        "/api/config/x",
        "/api/configx",
        "/api/models",
    ] {
        assert_eq!(get(proxy.addr, path).await.status(), 401, "{path}");
    }
    assert_eq!(bearer_status(proxy.addr, "/api/config/x", &key).await, 200);
    // A public route checks nothing, but still keeps llmgate keys from the upstream, and
    // passes other credentials on (Open WebUI's /api/config reads them).
    assert_eq!(bearer_status(proxy.addr, "/api/config", &key).await, 200);
    assert!(!up
        .seen()
        .last()
        .unwrap()
        .headers
        .contains_key("authorization"));
    assert_eq!(bearer_status(proxy.addr, "/api/config", "sk-x").await, 200);
    assert_eq!(
        up.seen().last().unwrap().headers["authorization"],
        "Bearer sk-x"
    );
    let m = proxy.metrics().await;
    assert!(m.contains(r#"route="cfg""#), "{m}");
}

#[tokio::test]
async fn route_allowlists_answer_403_permission_denied() {
    let owui = open_webui(Duration::ZERO).await;
    let (team_key, team) = new_key("team-a", "auth.keys");
    let (other_key, other) = new_key("other", "auth.keys");
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"owui\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"owui\"\n[[routes]]\npath_prefix = \"/admin/\"\nupstream = \"owui\"\nroles = [\"admin\"]\n[[routes]]\npath_prefix = \"/teams/\"\nupstream = \"owui\"\nidentities = [\"team-*\", \"user:boss\"]\n[auth]\nintrospect_upstream = \"owui\"\n{team}{other}",
        owui.addr
    ))
    .await;
    let cases = [
        ("/admin/x", SK_ADMIN, 200),
        ("/admin/x", SK_GOOD, 403),
        ("/admin/x", team_key.as_str(), 403),
        ("/teams/x", team_key.as_str(), 200),
        ("/teams/x", SK_ADMIN, 200),
        ("/teams/x", other_key.as_str(), 403),
        ("/teams/x", SK_GOOD, 403),
        ("/anything", other_key.as_str(), 200),
    ];
    for (path, cred, want) in cases {
        let (status, body) = status_body(send(proxy.addr, bearer_get(path, cred)).await).await;
        assert_eq!(status, want, "{path}: {body}");
        if want == 403 {
            assert!(body.contains("permission_denied"), "{body}");
        }
    }
    assert_eq!(auth_failures(&proxy, "forbidden").await, Some(4.0));
}

#[tokio::test]
async fn relay_never_sees_the_client_credential_with_auth_on() {
    let owui = open_webui(Duration::ZERO).await;
    let relay = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (key, entry) = new_key("team-a", "auth.keys");
    std::env::set_var("LLMGATE_TEST_AUTH_RELAY_KEY", "relay-secret");
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"owui\"\nurl = \"http://{}\"\n[[upstreams]]\nname = \"relay\"\nurl = \"http://{}/v1\"\nbearer = \"${{LLMGATE_TEST_AUTH_RELAY_KEY}}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"owui\"\n[[routes]]\npath_prefix = \"/relay/\"\nupstream = \"relay\"\nrewrite_prefix = \"/\"\n[auth]\nintrospect_upstream = \"owui\"\nopenwebui_jwt_secret = \"{JWT_SECRET}\"\n{entry}",
        owui.addr, relay.addr
    ))
    .await;
    let token = jwt(JWT_SECRET, "u1", 600);
    let creds: [(&str, String); 4] = [
        ("authorization", format!("Bearer {key}")),
        ("authorization", format!("Bearer {SK_GOOD}")),
        ("cookie", format!("lang=en; token={token}")),
        ("x-api-key", SK_GOOD.to_string()),
    ];
    for (header, value) in &creds {
        let mut req = request("POST", "/relay/chat/completions", full("{}"));
        req.headers_mut().insert(*header, value.parse().unwrap());
        // Authorization wins over a token cookie, as in Open WebUI.
        let extra = if *header == "authorization" {
            "token=also-here; theme=dark"
        } else {
            "theme=dark"
        };
        req.headers_mut().append("cookie", extra.parse().unwrap());
        assert_eq!(send(proxy.addr, req).await.status(), 200, "{header}");
    }
    let seen = relay.seen();
    assert_eq!(seen.len(), creds.len());
    for s in &seen {
        assert_eq!(s.uri.path(), "/v1/chat/completions");
        assert_eq!(s.headers["authorization"], "Bearer relay-secret");
        assert!(!s.headers.contains_key("x-api-key"));
        let cookies: Vec<_> = s.headers.get_all("cookie").iter().collect();
        assert!(
            cookies
                .iter()
                .all(|c| !c.to_str().unwrap().contains("token=")),
            "token cookie reached the relay"
        );
        assert!(
            cookies
                .iter()
                .any(|c| c.to_str().unwrap().contains("theme=dark")),
            "other cookies are kept"
        );
        let all = format!("{:?}", s.headers);
        for secret in [key.as_str(), SK_GOOD, token.as_str()] {
            assert!(!all.contains(secret), "client credential reached the relay");
        }
    }
    // Open WebUI (no bearer) gets the client's own credential, but never an llmgate key.
    assert_eq!(bearer_status(proxy.addr, "/api/models", SK_GOOD).await, 200);
    assert_eq!(bearer_status(proxy.addr, "/api/models", &key).await, 200);
    let seen = forwarded(&owui);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {SK_GOOD}").as_str()
    );
    assert!(!seen[1].headers.contains_key("authorization"));
}

#[tokio::test]
async fn socket_io_upgrade_needs_a_credential() {
    let owui = MockUpstream::start(|mut req| async move {
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let _ = on_upgrade.await;
        });
        http::Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header(
                "sec-websocket-accept",
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
            )
            .body(full(""))
            .unwrap()
    })
    .await;
    let proxy = Proxy::start(&format!(
        "[[upstreams]]\nname = \"owui\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"owui\"\n[auth]\nopenwebui_jwt_secret = \"{JWT_SECRET}\"\n",
        owui.addr
    ))
    .await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "ws://{}/ws/socket.io/?EIO=4&transport=websocket",
        proxy.addr
    );
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("anonymous socket was not refused: {:?}", other.map(|r| r.1)),
    }
    let expired = jwt(JWT_SECRET, "u1", -1);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", format!("token={expired}").parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    assert_eq!(owui.hits(), 0);

    let token = jwt(JWT_SECRET, "u1", 600);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", format!("token={token}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let _ = ws.close(None).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("{url}&token={token}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let _ = ws.close(None).await;
    assert_eq!(owui.hits(), 2);
}
