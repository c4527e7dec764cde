//! Floods and slow clients: bounded connections, slowloris bodies and HTTP/2 rapid reset.
//! (Slow request heads are in `timeouts.rs`, oversized heads in `hostile_input.rs`.)

mod common;
use common::raw::{exchange, read_reply};
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a keep-alive GET and reads until its `{}` body arrived; false if it did not in time.
async fn served(s: &mut TcpStream, within: Duration) -> bool {
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(within, async {
        while !buf.ends_with(b"\r\n\r\n{}") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn max_connections_makes_the_next_connection_wait_until_one_closes() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::with_server("max_connections = 2", mock.addr).await;
    let mut a = TcpStream::connect(proxy.addr).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr).await.unwrap();
    assert!(served(&mut a, Duration::from_secs(5)).await);
    assert!(served(&mut b, Duration::from_secs(5)).await);

    // The kernel completes the handshake, but llmgate does not serve a third connection.
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    assert!(!served(&mut c, Duration::from_millis(500)).await);
    let m = proxy.metrics().await;
    assert_eq!(metric(&m, "llmgate_connections_active"), Some(2.0));
    assert_eq!(metric(&m, "llmgate_connections_max"), Some(2.0));
    assert_eq!(metric(&m, "llmgate_connections_waited_total"), Some(1.0));

    // Once one closes, the waiting connection is served, its request included.
    drop(a);
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .expect("waiting connection never served")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(served(&mut b, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn stalled_request_body_gets_408_and_a_steady_one_passes() {
    let mock = MockUpstream::start(|req| async move {
        let n = drain_body(req.into_body()).await;
        json(200, &format!("{{\"received\":{n}}}"))
    })
    .await;
    let proxy = Proxy::with_server("request_body_timeout = \"300ms\"", mock.addr).await;

    // Ten bytes of a hundred, then silence.
    let t = Instant::now();
    let r = exchange(
        proxy.addr,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (r.status(), r.code().as_str()),
        (408, "client_body_timeout"),
        "{}",
        r.text
    );
    assert!(r.closed);
    assert!(t.elapsed() < Duration::from_secs(3));

    // A byte every 100 ms never leaves a 300 ms gap.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 8\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"x").await.unwrap();
    }
    let r = read_reply(&mut s, Duration::from_secs(5)).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    assert!(r.text.ends_with("{\"received\":8}"), "{}", r.text);
}

#[tokio::test]
async fn http2_rapid_reset_gets_goaway_and_others_are_still_served() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::with_server("", mock.addr).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client;
    let mut opened = 0;
    for _ in 0..5000 {
        client = match client.ready().await {
            Ok(c) => c,
            Err(_) => break,
        };
        let req = http::Request::get(format!("http://{}/api/models", proxy.addr))
            .body(())
            .unwrap();
        match client.send_request(req, true) {
            Ok((_resp, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                opened += 1;
                // Bursts of 100, so the client reads the server's GOAWAY between them.
                if opened % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(_) => break,
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the abusive connection was not closed")
        .unwrap();
    let err = ended.expect_err("the connection ended without an error");
    eprintln!(
        "rapid reset: {opened} streams opened, {} reached the upstream, ended with {err:?}",
        mock.hits()
    );
    assert!(err.is_go_away(), "{err}");
    assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err}");
    // The server handled at most a few of the reset streams before cutting the connection.
    assert!(
        mock.hits() <= 100,
        "{} reset streams reached the upstream",
        mock.hits()
    );

    // A well-behaved h2 client on a new connection is served.
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{}/api/models", proxy.addr))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
}

/// Out of file descriptors, accepts fail with EMFILE: llmgate counts them, keeps its listeners
/// and serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_is_survived() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let mut bin = common::binary::Binary::start_with_fd_limit(
        &format!(
            "[[upstreams]]\nname = \"m\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n",
            mock.addr
        ),
        64,
    );
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(bin.addr).await.unwrap());
    }
    assert!(
        bin.wait_log("accept failed", Duration::from_secs(5))
            .is_some(),
        "{}",
        bin.log_text()
    );
    drop(flood);
    let (addr, admin) = (bin.addr, bin.admin);
    assert!(
        eventually(Duration::from_secs(10), || async move {
            let Ok(resp) = try_send(addr, request("GET", "/a", full(""))).await else {
                return false;
            };
            resp.status() == 200
        })
        .await,
        "not serving after the flood"
    );
    let m = body_string(get(admin, "/metrics").await.into_body()).await;
    assert!(
        metric(&m, "llmgate_accept_errors_total").unwrap() >= 1.0,
        "{m}"
    );
    assert!(bin.child.try_wait().unwrap().is_none(), "llmgate exited");
}
