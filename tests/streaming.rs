//! Bodies stream frame by frame in both directions, and failures on either side propagate.

mod common;
use common::*;
use http::Response;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// Each upstream chunk reaches the client before the upstream sends the next one.
async fn chunk_by_chunk(content_type: &'static str, chunk: fn(usize) -> bytes::Bytes) {
    let (mock, rx_slot) = fed_upstream(content_type).await;
    let proxy = Proxy::to(mock.addr, "").await;
    let resp = send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], content_type);
    let upstream_tx = rx_slot.await.unwrap();
    let mut body = resp.into_body();
    for k in 0..5 {
        upstream_tx.send(Ok(chunk(k))).await.unwrap();
        // The next chunk is only sent after this one arrived, so arrival proves no buffering.
        let got = tokio::time::timeout(WAIT, next_chunk(&mut body))
            .await
            .expect("chunk was held back by the proxy")
            .unwrap();
        assert_eq!(
            got.as_bytes(),
            &chunk(k)[..],
            "chunk {k} arrived whole and unchanged"
        );
    }
    drop(upstream_tx);
    assert!(tokio::time::timeout(WAIT, next_chunk(&mut body))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn sse_chunks_are_forwarded_one_by_one() {
    chunk_by_chunk("text/event-stream", |k| {
        sse(&format!(
            r#"{{"choices":[{{"delta":{{"content":"tok{k}"}}}}]}}"#
        ))
    })
    .await;
}

#[tokio::test]
async fn ndjson_lines_are_forwarded_one_by_one() {
    chunk_by_chunk("application/x-ndjson", |k| {
        bytes::Bytes::from(format!(
            "{{\"message\":{{\"content\":\"t{k}\"}},\"done\":false}}\n"
        ))
    })
    .await;
}

/// The request body also streams: the upstream sees the first chunk while the client still
/// holds the rest.
#[tokio::test]
async fn request_body_streams_to_upstream() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mock = MockUpstream::start(move |req| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut body = req.into_body();
            while let Some(chunk) = next_chunk(&mut body).await {
                let _ = seen_tx.send(chunk);
            }
            json(200, "{}")
        }
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    let (client_tx, body) = channel_body();
    let req = request("POST", "/api/v1/files/", body);
    let pending = tokio::spawn(send(proxy.addr, req));
    for k in 0..3 {
        client_tx.send(Ok(format!("part{k}").into())).await.unwrap();
        let got = tokio::time::timeout(WAIT, seen_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, format!("part{k}"));
    }
    drop(client_tx);
    assert_eq!(pending.await.unwrap().status(), 200);
}

/// A client that goes away mid-stream closes the upstream connection at once, so the model
/// stops generating for nobody.
#[tokio::test]
async fn client_disconnect_closes_upstream_connection() {
    let (mock, rx_slot) = fed_upstream("text/event-stream").await;
    let proxy = Proxy::to(mock.addr, "").await;
    let resp = send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    let upstream_tx = rx_slot.await.unwrap();
    let mut body = resp.into_body();
    upstream_tx.send(Ok(sse("first"))).await.unwrap();
    assert!(next_chunk(&mut body).await.is_some());
    drop(body); // the client hangs up
    assert!(
        mock.wait_closed(1, Duration::from_secs(1)).await,
        "upstream connection still open 1 s after the client left"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_stream_ended_total{reason="client_cancel",upstream="mock"}"#
        ),
        Some(1.0),
        "{m}"
    );
}

/// A client that goes away while the upstream is still thinking (no response head yet) also
/// cancels the upstream request.
#[tokio::test]
async fn client_disconnect_before_response_head_cancels_upstream() {
    let mock = MockUpstream::start(|_req| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        json(200, "{}")
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    let pending = tokio::spawn(send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    ));
    tokio::time::timeout(WAIT, async {
        while mock.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    pending.abort(); // drops the client connection
    assert!(
        mock.wait_closed(1, Duration::from_secs(1)).await,
        "upstream connection still open 1 s after the client left"
    );
}

/// When the upstream dies mid-stream the client's response is aborted, not ended cleanly.
#[tokio::test]
async fn upstream_death_mid_stream_aborts_client_response() {
    let mock = MockUpstream::start(|_req| async {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            tx.send(Ok(sse("one"))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(Err(std::io::Error::other("model crashed")))
                .await
                .unwrap();
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap()
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    let resp = send(
        proxy.addr,
        request("POST", "/api/chat/completions", full("{}")),
    )
    .await;
    let mut body = resp.into_body();
    let mut errored = false;
    let mut received = String::new();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        match frame {
            Ok(f) => received.push_str(&String::from_utf8_lossy(f.data_ref().unwrap())),
            Err(_) => {
                errored = true;
                break;
            }
        }
    }
    assert_eq!(received, "data: one\n\n");
    assert!(errored, "the client saw a clean end of a cut stream");
    let m = proxy.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"llmgate_stream_ended_total{reason="upstream_error",upstream="mock"}"#
        ),
        Some(1.0)
    );
}
