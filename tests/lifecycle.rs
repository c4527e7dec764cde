//! Graceful drain on shutdown, SIGTERM handling of the real binary, and bounded memory.

mod common;
use common::binary::Binary;
use common::*;
use http_body_util::BodyExt;
use std::time::Duration;

#[tokio::test]
async fn drain_lets_running_stream_finish_and_rejects_new_requests() {
    let (mock, upstream) = fed_upstream("text/event-stream").await;
    let mut proxy = Proxy::to(mock.addr, "").await;
    let resp = send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    let upstream = upstream.await.unwrap();
    let mut body = resp.into_body();
    upstream.send(Ok(sse("before"))).await.unwrap();
    assert_eq!(next_chunk(&mut body).await.unwrap(), "data: before\n\n");

    proxy.shutdown();
    // Readiness turns 503 at once and the listener stops accepting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(proxy.admin, "/readyz").await;
        if r.status() == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "new connections still accepted while draining"
    );
    assert_eq!(get(proxy.admin, "/livez").await.status(), 200);

    // The running stream goes on to its end.
    upstream.send(Ok(sse("after"))).await.unwrap();
    assert_eq!(next_chunk(&mut body).await.unwrap(), "data: after\n\n");
    drop(upstream);
    assert!(body.frame().await.is_none(), "stream did not end cleanly");
    let report = tokio::time::timeout(Duration::from_secs(5), &mut proxy.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.cut, 0);
}

#[tokio::test]
async fn drain_budget_cuts_streams_that_do_not_finish() {
    let (mock, upstream) = fed_upstream("text/event-stream").await;
    let mut proxy = Proxy::start(&format!(
        "drain_timeout = \"300ms\"\n[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ))
    .await;
    let resp = send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    let upstream = upstream.await.unwrap();
    let mut body = resp.into_body();
    upstream.send(Ok(sse("x"))).await.unwrap();
    next_chunk(&mut body).await.unwrap();
    proxy.shutdown();
    let report = tokio::time::timeout(Duration::from_secs(5), &mut proxy.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.cut, 1);
    // The cut stream is aborted, not ended as if complete.
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(
        matches!(end, Some(Err(_))),
        "cut stream looked complete: {end:?}"
    );
    drop(upstream);
}

#[tokio::test]
async fn sigterm_drains_then_exits_zero() {
    sigterm_drains_with("").await;
}

/// `worker_threads = 1` runs the single-threaded runtime, which streams and drains the same.
#[tokio::test]
async fn single_threaded_runtime_streams_and_drains() {
    let log = sigterm_drains_with("worker_threads = 1\n").await;
    assert!(log.contains(r#""threads":1"#), "{log}");
}

/// A stream still running when the drain budget runs out is cut; its access line, written as
/// the runtime drops it, still reaches the log before the process exits.
#[tokio::test]
async fn a_stream_cut_at_the_drain_budget_still_gets_its_access_line() {
    let s = stream_then_sigterm("drain_timeout = \"300ms\"\n").await;
    let (status, log) = exit_and_log(s.bin).await;
    assert_eq!(status.expect("llmgate did not exit").code(), Some(0));
    assert!(log.contains("drain budget spent"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("llmgate::access"))
        .unwrap_or_else(|| panic!("no access line for the cut stream:\n{log}"));
    assert!(line.contains("/api/chat/completions"), "{line}");
    drop(s.upstream);
}

/// Streams through the binary, SIGTERMs it mid-stream and checks the drain; returns the log.
async fn sigterm_drains_with(server_extra: &str) -> String {
    let Streaming {
        bin,
        mut body,
        upstream,
        _mock: _serving,
    } = stream_then_sigterm(server_extra).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(bin.admin, "/readyz").await.status(), 503);
    upstream.send(Ok(sse("2"))).await.unwrap();
    assert_eq!(next_chunk(&mut body).await.unwrap(), "data: 2\n\n");
    drop(upstream);
    assert!(body.frame().await.is_none());
    let (status, log) = exit_and_log(bin).await;
    assert_eq!(status.expect("llmgate did not exit").code(), Some(0));
    assert!(log.contains("drain complete"), "{log}");
    assert!(log.contains(r#""outcome":"complete""#), "{log}");
    log
}

/// The binary with an SSE stream open through it, one chunk delivered, and SIGTERM sent.
struct Streaming {
    bin: Binary,
    body: hyper::body::Incoming,
    upstream: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    _mock: MockUpstream,
}

async fn stream_then_sigterm(server_extra: &str) -> Streaming {
    let (mock, upstream) = fed_upstream("text/event-stream").await;
    let bin = Binary::start(&format!(
        "{server_extra}[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ));
    let resp = send(
        bin.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    let upstream = upstream.await.unwrap();
    let mut body = resp.into_body();
    upstream.send(Ok(sse("1"))).await.unwrap();
    next_chunk(&mut body).await.unwrap();
    bin.signal("TERM");
    Streaming {
        bin,
        body,
        upstream,
        _mock: mock,
    }
}

/// Waits for the binary to exit (10 s at most) and returns its exit status and log.
async fn exit_and_log(mut bin: Binary) -> (Option<std::process::ExitStatus>, String) {
    tokio::task::spawn_blocking(move || {
        let s = bin.wait_exit(Duration::from_secs(10));
        (s, bin.log_text())
    })
    .await
    .unwrap()
}

/// A 100 MiB upload streams through with proxy memory far below the body size.
#[tokio::test]
async fn upload_100_mib_with_bounded_memory() {
    const SIZE: u64 = 100 << 20;
    let mock = MockUpstream::start(|req| async move {
        let n = drain_body(req.into_body()).await;
        json(200, &format!(r#"{{"received":{n}}}"#))
    })
    .await;
    let bin = Binary::start(&format!(
        "[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
        mock.addr
    ));
    let before = bin.status_kib("VmHWM");
    let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
    let chunks =
        (0..SIZE / chunk.len() as u64).map(move |_| Ok(hyper::body::Frame::data(chunk.clone())));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed();
    let mut req = request("POST", "/api/v1/files/", body);
    req.headers_mut()
        .insert("content-length", SIZE.to_string().parse().unwrap());
    req.headers_mut().insert(
        "content-type",
        "multipart/form-data; boundary=x".parse().unwrap(),
    );
    let resp = send(bin.addr, req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        body_string(resp.into_body()).await,
        format!(r#"{{"received":{SIZE}}}"#)
    );
    let growth_kib = bin.status_kib("VmHWM").saturating_sub(before);
    eprintln!("peak RSS growth for a 100 MiB upload: {growth_kib} KiB");
    assert!(
        growth_kib < 16 * 1024,
        "peak RSS grew by {growth_kib} KiB for a 100 MiB body"
    );
}
