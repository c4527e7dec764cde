//! Protocol abuse over raw sockets: each shape gets a clean error or a closed connection,
//! never a panic and never an upstream request it should not cause.

mod common;
use common::raw::{count_header, exchange, RawReply, RawUpstream};
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

async fn counting_upstream() -> MockUpstream {
    MockUpstream::start(|_| async { json(200, "{}") }).await
}

/// After an attack, an ordinary request on a fresh connection is still served.
async fn still_serves(proxy: &Proxy) {
    let r = exchange(
        proxy.addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_and_closed() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    // Both orders; each hides a second request in what Content-Length calls the body.
    for head in [
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ] {
        let attack = format!("{head}0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = exchange(proxy.addr, attack.as_bytes(), WAIT).await;
        assert_eq!(r.status(), 400, "{}", r.text);
        assert_eq!(r.code(), "ambiguous_framing");
        assert!(r.head().contains("connection: close"), "{}", r.text);
        assert!(r.closed, "connection left open");
        assert_eq!(
            r.responses(),
            1,
            "the smuggled request was answered: {}",
            r.text
        );
    }
    assert_eq!(mock.hits(), 0);
    still_serves(&proxy).await;
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_requests_total{code="400",method="POST",route="none",upstream="none"}"#
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn repeated_content_length_is_refused() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    // Equal values: hyper would merge them; llmgate refuses.
    let r = exchange(
        proxy.addr,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        WAIT,
    )
    .await;
    assert_eq!((r.status(), r.code().as_str()), (400, "ambiguous_framing"));
    assert!(r.closed);
    // Different values: hyper refuses them itself, before llmgate sees a request.
    let r = exchange(
        proxy.addr,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n{}",
        WAIT,
    )
    .await;
    assert_eq!(r.status(), 400, "{}", r.text);
    assert!(r.closed);
    assert_eq!(mock.hits(), 0);
    still_serves(&proxy).await;
}

#[tokio::test]
async fn http11_needs_exactly_one_valid_host() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    for (req, why) in [
        ("GET /a HTTP/1.1\r\n\r\n", "missing"),
        ("GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "two"),
        ("GET /a HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", "two equal"),
        ("GET /a HTTP/1.1\r\nHost: me@evil\r\n\r\n", "userinfo"),
        (
            "GET /a HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n",
            "two, HTTP/1.0",
        ),
    ] {
        let r = exchange(proxy.addr, req.as_bytes(), WAIT).await;
        assert_eq!(r.status(), 400, "{why}: {}", r.text);
        assert_eq!(r.code(), "invalid_host", "{why}");
    }
    assert_eq!(mock.hits(), 0);
    // HTTP/1.0 may omit Host.
    let r = exchange(proxy.addr, b"GET /a HTTP/1.0\r\n\r\n", WAIT).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn malformed_header_lines_are_refused_without_upstream_hit() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    for (req, why) in [
        (
            &b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n"[..],
            "obs-fold",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n",
            "space in name",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
            "space before colon",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            "NUL in value",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            "bare CR",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "negative length",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "not chunked",
        ),
        (
            b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "TE in 1.0",
        ),
    ] {
        // Whether hyper or llmgate refused it, the answer is OpenAI-shaped JSON.
        let r = exchange(proxy.addr, req, WAIT).await;
        let v = json_refusal(&r, 400, why);
        assert!(
            v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{why}: {v}"
        );
    }
    assert_eq!(mock.hits(), 0);
    still_serves(&proxy).await;
}

#[tokio::test]
async fn control_bytes_and_invalid_utf8_in_paths_are_refused() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    for path in [
        &b"/a\x01b"[..],
        b"/a\x7fb",
        b"/\xff\xfe",
        b"/a%00b",
        b"/a%0d%0aX-Injected:%201",
        b"/%ff%fe",
        b"/%c0%af",
        b"/a/..%2f..%2fetc",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(path);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = exchange(proxy.addr, &req, WAIT).await;
        let shown = String::from_utf8_lossy(path);
        assert_eq!(r.status(), 400, "{shown}: {}", r.text);
    }
    assert_eq!(mock.hits(), 0);
    still_serves(&proxy).await;
}

#[tokio::test]
async fn upstream_sees_one_framing_and_one_host() {
    let up = RawUpstream::start().await;
    let proxy = Proxy::to(up.addr, "").await;
    for req in [
        &b"POST /a HTTP/1.1\r\nHost: client\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"[..],
        b"POST /b HTTP/1.1\r\nHost: client\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"GET /c HTTP/1.1\r\nHost: client\r\nConnection: close\r\n\r\n",
        b"GET /d HTTP/1.0\r\n\r\n",
    ] {
        let r = exchange(proxy.addr, req, WAIT).await;
        assert_eq!(r.status(), 200, "{}", r.text);
    }
    let heads = up.heads();
    assert_eq!(heads.len(), 4);
    for head in &heads {
        assert_eq!(count_header(head, "host"), 1, "{head}");
        let framing =
            count_header(head, "content-length") + count_header(head, "transfer-encoding");
        assert!(framing <= 1, "two framings upstream: {head}");
    }
    assert_eq!(count_header(&heads[0], "content-length"), 1);
    assert_eq!(count_header(&heads[1], "transfer-encoding"), 1);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let mock = counting_upstream().await;
    let proxy =
        Proxy::with_server("max_header_bytes = \"8KiB\"\nmax_headers = 20", mock.addr).await;
    let big = |bytes: usize| {
        format!(
            "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(bytes)
        )
    };
    let many = |n: usize| {
        let lines: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
        format!("GET /a HTTP/1.1\r\nHost: x\r\n{lines}\r\n")
    };
    // Over llmgate's limit: a JSON 431, and the connection closes.
    for req in [big(10 << 10), many(25)] {
        let r = exchange(proxy.addr, req.as_bytes(), WAIT).await;
        assert_eq!((r.status(), r.code().as_str()), (431, "headers_too_large"));
        assert!(r.closed);
    }
    // Far over it: hyper stops reading and answers 431 itself; its bare answer gets the same
    // JSON body on the way out.
    for req in [big(64 << 10), many(500)] {
        let r = exchange(proxy.addr, req.as_bytes(), WAIT).await;
        let v = json_refusal(&r, 431, "far over the limits");
        assert_eq!(v["error"]["code"], "headers_too_large");
    }
    assert_eq!(mock.hits(), 0);
    // Within the limits all is well.
    let r = exchange(proxy.addr, big(4 << 10).as_bytes(), WAIT).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn websocket_upgrade_off_websocket_paths_is_refused_and_h2c_is_ignored() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    let url = format!("ws://{}/api/chat/completions", proxy.addr);
    match tokio_tungstenite::connect_async(url).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 400);
            let body = String::from_utf8(resp.into_body().unwrap_or_default()).unwrap();
            assert!(body.contains("upgrade_not_allowed"), "{body}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(mock.hits(), 0);
    // `curl --http2` on http:// asks for h2c: served as plain HTTP/1.1, without the upgrade.
    let r = exchange(
        proxy.addr,
        b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].headers.contains_key("upgrade"));
    assert!(!seen[0].headers.contains_key("http2-settings"));
}

/// Requests hyper cannot parse at all are answered by hyper before llmgate's service runs;
/// the answer still carries an OpenAI-shaped JSON error, and nothing reaches the upstream.
#[tokio::test]
async fn unparsable_requests_get_json_errors_too() {
    let mock = counting_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    for (req, why) in [
        (&b"GARBAGE\r\n\r\n"[..], "no request line"),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", "unknown version"),
        (
            b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
            "control byte in target",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            "header without colon",
        ),
    ] {
        let r = exchange(proxy.addr, req, WAIT).await;
        let v = json_refusal(&r, 400, why);
        assert_eq!(v["error"]["type"], "invalid_request_error", "{why}");
        assert_eq!(v["error"]["code"], "bad_request", "{why}");
    }
    assert_eq!(mock.hits(), 0);
    still_serves(&proxy).await;
}

/// Checks a refusal read off a raw connection: `status`, a JSON body whose length matches
/// `content-length`, and a closed connection; returns the body.
fn json_refusal(r: &RawReply, status: u16, why: &str) -> serde_json::Value {
    assert_eq!(r.status(), status, "{why}: {}", r.text);
    assert!(
        r.head().contains("content-type: application/json"),
        "{why}: {}",
        r.text
    );
    let body = r.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let len: Option<usize> = r
        .head()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok());
    assert_eq!(len, Some(body.len()), "{why}: {}", r.text);
    assert!(r.closed, "{why}: connection left open");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{why}: {e}: {body}"))
}
