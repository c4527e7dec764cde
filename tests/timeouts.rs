//! Each timeout maps to its answer: connect → 502, response head → 504, idle body → abort,
//! slow client headers → connection dropped.

mod common;
use common::*;
use http::Response;
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn error_code(resp: Response<hyper::body::Incoming>) -> String {
    let v: serde_json::Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn response_timeout_gives_504() {
    let mock = MockUpstream::start(|_| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        json(200, "{}")
    })
    .await;
    let proxy = Proxy::to(mock.addr, "response_timeout = \"200ms\"").await;
    let t = Instant::now();
    let resp = get(proxy.addr, "/api/models").await;
    assert_eq!(resp.status(), 504);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(error_code(resp).await, "upstream_timeout");
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_upstream_errors_total{kind="timeout",upstream="mock"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn connect_timeout_gives_502() {
    // A listener that never accepts, with its accept queue filled: further SYNs go unanswered,
    // so a connect hangs instead of being refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    let mut hangs = false;
    for _ in 0..64 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("unexpected connect error {e}"),
            Err(_) => {
                hangs = true;
                break;
            }
        }
    }
    assert!(hangs, "could not make a connect hang on this machine");
    let proxy = Proxy::to(addr, "connect_timeout = \"250ms\"").await;
    let t = Instant::now();
    let resp = get(proxy.addr, "/api/models").await;
    assert_eq!(resp.status(), 502);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "gave up before connect_timeout"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(error_code(resp).await, "upstream_unavailable");
}

#[tokio::test]
async fn idle_stream_is_aborted_but_slow_steady_stream_is_not() {
    let mock = MockUpstream::start(|req| async move {
        let steady = req.uri().path() == "/steady";
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            for i in 0..6 {
                if tx.send(Ok(sse(&i.to_string()))).await.is_err() {
                    return;
                }
                let gap = if steady { 100 } else { 5_000 };
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    })
    .await;
    let proxy = Proxy::to(mock.addr, "idle_timeout = \"300ms\"").await;

    // Gaps of 100 ms under a 300 ms idle timeout: the whole stream arrives.
    let resp = get(proxy.addr, "/steady").await;
    let all = resp
        .into_body()
        .collect()
        .await
        .expect("steady stream completes")
        .to_bytes();
    assert_eq!(all.len(), 6 * "data: 0\n\n".len());

    // One chunk, then silence: the client sees the chunk, then an aborted body.
    let t = Instant::now();
    let resp = get(proxy.addr, "/stall").await;
    let mut body = resp.into_body();
    assert_eq!(next_chunk(&mut body).await.unwrap(), "data: 0\n\n");
    let end = body.frame().await;
    assert!(
        matches!(end, Some(Err(_)) | None),
        "stream went on after the idle timeout"
    );
    assert!(
        matches!(end, Some(Err(_))),
        "idle stream ended cleanly instead of aborting"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_stream_ended_total{reason="idle_timeout",upstream="mock"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn slow_client_headers_are_dropped() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::start(&format!(
        "header_read_timeout = \"300ms\"\n[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /api/models HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("connection was not closed");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(mock.hits(), 0);
}
