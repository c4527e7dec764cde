//! Upstream faults the other suites do not cover — malformed HTTP, a connection reset or a
//! closed connection mid-answer, a huge body — and SIGTERM during a thousand streams. For each:
//! what the client sees, what `/metrics` says, and that other traffic is still served.
//! (Refused connects are in `proxy_basics.rs`, stalls in `timeouts.rs`, a body aborted by the
//! upstream in `streaming.rs`, broken keys files in `reload.rs`.)

mod common;
use common::binary::Binary;
use common::raw::scripted;
use common::*;
use http_body_util::BodyExt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An upstream that runs `script` on the raw connection after each request head, except for
/// `GET /ok`, which gets `200 {}`.
async fn faulty<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    scripted(move |mut s, head| {
        let script = script.clone();
        async move {
            if head.starts_with("GET /ok ") {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
            } else {
                script(s).await;
            }
        }
    })
    .await
}

/// How a response body ended: the bytes that came, and whether it broke off.
async fn read_all(resp: http::Response<hyper::body::Incoming>) -> (usize, bool) {
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len()),
            Err(_) => return (n, true),
        }
    }
    (n, false)
}

async fn error_code(resp: http::Response<hyper::body::Incoming>) -> String {
    let v: serde_json::Value = serde_json::from_str(&body_string(resp.into_body()).await).unwrap();
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// The sample of `llmgate_upstream_errors_total` or `llmgate_stream_ended_total` for `mock`.
async fn count(proxy: &Proxy, series: &str, label: &str, value: &str) -> Option<f64> {
    let m = proxy.metrics().await;
    metric(
        &m,
        &format!("{series}{{{label}=\"{value}\",upstream=\"mock\"}}"),
    )
}

async fn still_serves(proxy: &Proxy) {
    assert_eq!(get(proxy.addr, "/ok").await.status(), 200);
}

#[tokio::test]
async fn malformed_upstream_response_gets_502_protocol() {
    let up = faulty(|mut s| async move {
        let _ = s.write_all(b"HELLO THERE\r\n\r\n").await;
    })
    .await;
    let proxy = Proxy::to(up, "").await;
    let resp = get(proxy.addr, "/v1/chat/completions").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(error_code(resp).await, "upstream_unavailable");
    let errors = "llmgate_upstream_errors_total";
    assert_eq!(count(&proxy, errors, "kind", "protocol").await, Some(1.0));
    still_serves(&proxy).await;
}

#[tokio::test]
async fn upstream_closing_before_answering_gets_502_reset() {
    let up = faulty(|s| async move { drop(s) }).await;
    let proxy = Proxy::to(up, "").await;
    let resp = get(proxy.addr, "/v1/chat/completions").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(error_code(resp).await, "upstream_unavailable");
    let errors = "llmgate_upstream_errors_total";
    assert_eq!(count(&proxy, errors, "kind", "reset").await, Some(1.0));
    still_serves(&proxy).await;
}

#[tokio::test]
async fn upstream_broken_mid_stream_aborts_the_client_body() {
    const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n7\r\ndata: 1\r\n";
    // A TCP reset (linger 0), then a chunk size that is not hex.
    let reset = faulty(|mut s| async move {
        let _ = s.write_all(HEAD).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = s.set_zero_linger();
    })
    .await;
    let garbled = faulty(|mut s| async move {
        let _ = s.write_all(HEAD).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = s.write_all(b"zz\r\nnonsense\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    for up in [reset, garbled] {
        let proxy = Proxy::to(up, "").await;
        let resp = get(proxy.addr, "/v1/chat/completions").await;
        assert_eq!(resp.status(), 200);
        let (n, broke) = read_all(resp).await;
        assert_eq!(n, "data: 1".len());
        assert!(broke, "the client saw a clean end of a broken stream");
        let ended = "llmgate_stream_ended_total";
        assert_eq!(
            count(&proxy, ended, "reason", "upstream_error").await,
            Some(1.0)
        );
        still_serves(&proxy).await;
    }
}

/// A 256 MiB response streams through the real binary with its memory far below the size.
#[tokio::test]
async fn huge_response_body_streams_with_bounded_memory() {
    const SIZE: usize = 256 << 20;
    let mock = MockUpstream::start(|_| async {
        let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
        let n = SIZE / chunk.len();
        let chunks = (0..n).map(move |_| chunk.clone()).collect();
        http::Response::builder()
            .header("content-type", "application/octet-stream")
            .body(stream_of(chunks))
            .unwrap()
    })
    .await;
    let bin = Binary::start(&format!(
        "[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ));
    let before = bin.status_kib("VmHWM");
    let (n, broke) = read_all(get(bin.addr, "/api/v1/files/big/content").await).await;
    assert_eq!((n, broke), (SIZE, false));
    let growth_kib = bin.status_kib("VmHWM").saturating_sub(before);
    eprintln!("peak RSS growth for a 256 MiB response: {growth_kib} KiB");
    assert!(growth_kib < 32 * 1024, "peak RSS grew by {growth_kib} KiB");
    let metrics = body_string(get(bin.admin, "/metrics").await.into_body()).await;
    let out = metric(&metrics, r#"llmgate_bytes_total{direction="out"}"#).unwrap();
    assert!(out >= SIZE as f64, "bytes out {out}");
    assert_eq!(get(bin.addr, "/quick").await.status(), 200);
}

/// SIGTERM with 1000 streams open: those that end within `drain_timeout` complete, the rest
/// are cut when it runs out, and the process exits 0 having counted exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_thousand_streams() {
    const STREAMS: usize = 1000;
    // This process holds both ends' sockets (client and mock upstream): about 2 per stream.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap();
    assert!(
        limit >= 3 * STREAMS as u64,
        "open-file limit {limit} is too low for {STREAMS} streams: raise `ulimit -Hn`"
    );
    let (mock, held) = hold_upstream().await;
    let mut bin = Binary::start(&format!(
        "drain_timeout = \"3s\"\n[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ));
    let addr = bin.addr;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        streams.push(tokio::spawn(async move {
            let resp = send(addr, request("POST", "/api/chat/completions", full("{}"))).await;
            let mut body = resp.into_body();
            next_chunk(&mut body).await.expect("first event");
            body
        }));
    }
    let mut bodies = Vec::new();
    for s in streams {
        bodies.push(s.await.unwrap());
    }
    let metrics = body_string(get(bin.admin, "/metrics").await.into_body()).await;
    assert_eq!(
        metric(&metrics, r#"llmgate_streams_active{upstream="m"}"#),
        Some(STREAMS as f64)
    );

    bin.signal("TERM");
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(bin.admin, "/readyz").await.status() == 503
        })
        .await
    );
    assert_eq!(get(bin.admin, "/livez").await.status(), 200);
    // Half the upstream streams end during the drain; the other half never do.
    let finishing: Vec<_> = held.lock().unwrap().drain(..STREAMS / 2).collect();
    drop(finishing);
    let ends = bodies.into_iter().map(|mut body| {
        tokio::spawn(async move {
            loop {
                match body.frame().await {
                    None => return true,
                    Some(Err(_)) => return false,
                    Some(Ok(_)) => {}
                }
            }
        })
    });
    let mut complete = 0;
    for end in ends.collect::<Vec<_>>() {
        complete += usize::from(end.await.unwrap());
    }
    assert_eq!(complete, STREAMS / 2, "streams that ended cleanly");
    let (status, log) = tokio::task::spawn_blocking(move || {
        let s = bin.wait_exit(Duration::from_secs(15));
        (s, bin.log_text())
    })
    .await
    .unwrap();
    assert_eq!(status.expect("llmgate did not exit").code(), Some(0));
    let cut = format!("\"cut\":{}", STREAMS / 2);
    assert!(
        log.lines()
            .any(|l| l.contains("llmgate stopped") && l.contains(&cut)),
        "{log}"
    );
    drop(held);
}
