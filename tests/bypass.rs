//! No spelling of a protected path gets through a public route. Each attempt is written as raw
//! bytes over TCP, so no client library normalises it first; every one must answer 400 or 401
//! and none may reach the upstream.

mod common;
use common::auth::*;
use common::*;

/// The routes of tests/common/guarded_routes.toml: public "/", "/static/", "/_app/" and
/// "/api/config"; everything else protected.
async fn guarded() -> (MockUpstream, Proxy) {
    let up = MockUpstream::start(|_| async { json(200, r#"{"leak":true}"#) }).await;
    let (_key, entry) = new_key("team-a", "auth.keys");
    let routes =
        include_str!("common/guarded_routes.toml").replace("UPSTREAM", &up.addr.to_string());
    let proxy = Proxy::start(&format!("{routes}{entry}")).await;
    (up, proxy)
}

/// (request target, extra header lines, expected status)
const ATTEMPTS: &[(&str, &str, u16)] = &[
    // Dot segments, plain and encoded, resolve to the protected path.
    ("/static/../api/models", "", 401),
    ("/static/%2e%2e/api/models", "", 401),
    ("/static/%2E%2E/api/models", "", 401),
    ("/static/.%2e/api/models", "", 401),
    ("/static/%2e./api/models", "", 401),
    ("/static/./../api/models", "", 401),
    ("/static/x/../../api/models", "", 401),
    ("/static//../api/models", "", 401),
    ("/_app/../ollama/api/tags", "", 401),
    ("/api/config/../models", "", 401),
    ("/api/config;/../models", "", 401),
    ("/./api/models", "", 401),
    // Double slashes and case.
    ("//api/models", "", 401),
    ("/static/..//api/models", "", 401),
    ("/STATIC/../api/models", "", 401),
    ("/Static/x", "", 401),
    ("/API/CONFIG", "", 401),
    ("/api/Config", "", 401),
    ("/api/config/", "", 401),
    ("/%61pi/models", "", 401),
    // Encoded separators, backslashes, double encoding.
    ("/static/..%2fapi/models", "", 400),
    ("/static%2F..%2Fapi%2Fmodels", "", 400),
    ("/api/config%2f..%2fmodels", "", 400),
    ("/static/..%5capi/models", "", 400),
    ("/static/..\\api/models", "", 400),
    ("/static\\..\\api\\models", "", 400),
    ("/static/%252e%252e/api/models", "", 400),
    ("/static/%25%32%65%25%32%65/api/models", "", 400),
    ("/static/%u002e%u002e/api/models", "", 400),
    // Overlong UTF-8 for '.' and '/', invalid UTF-8, NUL and control bytes.
    ("/static/%c0%ae%c0%ae/api/models", "", 400),
    ("/static/%e0%80%ae%e0%80%ae/api/models", "", 400),
    ("/static/..%c0%afapi/models", "", 400),
    ("/static/%ff/../../api/models", "", 400),
    ("/static/%00/../../api/models", "", 400),
    ("/static/..%00/api/models", "", 400),
    ("/static/..%09/api/models", "", 400),
    // Segments some servers read as "..": trailing dots and spaces, path parameters.
    ("/static/.../api/models", "", 400),
    ("/static/..;/api/models", "", 400),
    ("/static/..%3b/api/models", "", 400),
    ("/static/..%20/api/models", "", 400),
    ("/static./../api/models", "", 400),
    ("/api/config.", "", 400),
    ("/%2e%2e/api/models", "", 400),
    ("/static/../../api/models", "", 400),
    // Absolute-form targets and Host games never choose the route.
    ("http://127.0.0.1/static/../api/models", "", 401),
    ("http://evil.example/api/models", "", 401),
    ("http://evil.example/static/..%2fapi/models", "", 400),
    ("/api/models", "X-Original-URL: /static/x\r\nX-Rewrite-URL: /static/x\r\n", 401),
    ("/api/models", "X-Forwarded-Prefix: /static\r\n", 401),
    ("/api/models?/static/../", "", 401),
    ("/api/models?token=x", "", 401),
    ("/ws/socket.io/?EIO=4&transport=websocket", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", 401),
    ("/ollama/api/tags", "Authorization: Basic dXNlcjpwYXNz\r\n", 401),
    ("/ollama/api/tags", "Authorization: Bearer \r\n", 401),
    ("/ollama/api/tags", "Authorization: Bearer lg-0000000000000000000000000000000000000000000000000000000000000000\r\n", 401),
    ("/ollama/api/tags", "Cookie: token=\r\n", 401),
];

#[tokio::test]
async fn bypass_attempts_get_400_or_401_and_never_reach_the_upstream() {
    let (up, proxy) = guarded().await;
    assert!(ATTEMPTS.len() >= 30);
    let mut wrong = Vec::new();
    for (target, extra, want) in ATTEMPTS {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: llmgate.test\r\n{extra}Connection: close\r\n\r\n"
        );
        let resp = raw_request(proxy.addr, raw.as_bytes()).await;
        let got = raw_status(&resp);
        if got != *want {
            wrong.push(format!("{target} ({extra:?}): {got}, want {want}"));
        }
        assert!(!resp.contains("leak"), "{target} reached the upstream");
    }
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        up.hits(),
        0,
        "an attempt reached the upstream: {:?}",
        up.seen()
    );
}

#[tokio::test]
async fn malformed_request_lines_and_conflicting_hosts_never_reach_the_upstream() {
    let (up, proxy) = guarded().await;
    let raw: &[&[u8]] = &[
        b"GET /static/\x00/../api/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/\xc0\xae\xc0\xae/api/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/\xff/../../api/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/ /../api/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /static/\t/../api/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
        b"GET /api/models HTTP/1.1\r\nHost: x\r\nHost: static\r\n\r\n",
        b"GET /api/models HTTP/1.0\r\n\r\n",
        b"GET api/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/models#/static/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for r in raw {
        let resp = raw_request(proxy.addr, r).await;
        let text = String::from_utf8_lossy(r);
        let status = raw_status(&resp);
        assert!(status == 400 || status == 401, "{text:?} got {status}");
    }
    assert_eq!(up.hits(), 0, "{:?}", up.seen());
}

#[tokio::test]
async fn public_paths_still_pass_in_canonical_form() {
    let (up, proxy) = guarded().await;
    for (target, forwarded) in [
        ("/static/app.css", "/static/app.css"),
        ("/static/./a/../app.css", "/static/app.css"),
        ("/static//app.css", "/static/app.css"),
        ("/%73tatic/app.css", "/static/app.css"),
        ("/static/a%20b.css?v=1", "/static/a%20b.css?v=1"),
        ("/_app/version.json", "/_app/version.json"),
        ("/", "/"),
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = raw_request(proxy.addr, raw.as_bytes()).await;
        assert_eq!(raw_status(&resp), 200, "{target}");
        let seen = up.seen();
        assert_eq!(seen.last().unwrap().uri.to_string(), forwarded, "{target}");
    }
}

#[tokio::test]
async fn h2c_requests_are_normalised_the_same_way() {
    let (up, proxy) = guarded().await;
    let mut sender = h2c(proxy.addr).await;
    for (path, want) in [
        ("/static/../api/models", 401),
        ("/static/%2e%2e/api/models", 401),
        ("/static/..%2fapi/models", 400),
        ("/static/%c0%ae%c0%ae/api/models", 400),
        ("/static/app.css", 200),
    ] {
        let req = http::Request::builder()
            .uri(format!("http://{}{path}", proxy.addr))
            .body(full(""))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), want, "{path}");
    }
    assert_eq!(up.hits(), 1, "{:?}", up.seen());
    assert_eq!(up.seen()[0].uri.path(), "/static/app.css");
}
