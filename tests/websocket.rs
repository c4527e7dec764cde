//! WebSocket upgrades (Open WebUI's /ws/socket.io) pass through, both directions.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Response;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role, Message};
use tokio_tungstenite::WebSocketStream;

/// An upstream that upgrades and echoes every message back, prefixed with "echo:".
async fn echo_upstream() -> MockUpstream {
    MockUpstream::start(|mut req| async move {
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = TokioIo::new(on_upgrade.await.unwrap());
            let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Text(t) => ws.send(Message::text(format!("echo:{t}"))).await.unwrap(),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        });
        Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", derive_accept_key(&key))
            .body(full(""))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn websocket_echo_both_ways() {
    let mock = echo_upstream().await;
    let proxy = Proxy::to(mock.addr, "").await;
    let url = format!(
        "ws://{}/ws/socket.io/?EIO=4&transport=websocket",
        proxy.addr
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.into_text().unwrap().as_str(), format!("echo:hello {i}"));
    }
    let seen = &mock.seen()[0];
    assert_eq!(
        seen.uri.to_string(),
        "/ws/socket.io/?EIO=4&transport=websocket"
    );
    assert_eq!(seen.headers["upgrade"], "websocket");
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "llmgate_websockets_active"), Some(1.0));
    ws.close(None).await.unwrap();
    drop(ws);
    // Closing one side ends the relay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = proxy.metrics().await;
        if metric(&m, "llmgate_websockets_active") == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay still active after close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn upstream_refusing_upgrade_passes_its_answer_through() {
    let mock = MockUpstream::start(|_| async {
        json(400, r#"{"detail":"Invalid WebSocket upgrade request"}"#)
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    let url = format!("ws://{}/ws/socket.io/?transport=websocket", proxy.addr);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 400),
        other => panic!("unexpected error {other}"),
    }
}
