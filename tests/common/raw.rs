//! Raw TCP on both sides of llmgate, for what a well-behaved HTTP library would never send
//! or would hide: request smuggling shapes, broken heads, the exact header lines upstream.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What came back on a raw connection before it closed (or `within` passed).
pub struct RawReply {
    pub text: String,
    /// The server closed the connection.
    pub closed: bool,
}

impl RawReply {
    /// The status code of the first response, 0 when nothing came back.
    pub fn status(&self) -> u16 {
        self.text
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| self.text.strip_prefix("HTTP/1.0 "))
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// How many responses came back (status lines).
    pub fn responses(&self) -> usize {
        self.text.matches("HTTP/1.1 ").count() + self.text.matches("HTTP/1.0 ").count()
    }

    /// The `error.code` of the first response's JSON body.
    pub fn code(&self) -> String {
        let body = self.text.split("\r\n\r\n").nth(1).unwrap_or("");
        let end = body.find("}}").map_or(body.len(), |i| i + 2);
        serde_json::from_str::<serde_json::Value>(&body[..end])
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The first response's head, lower-cased.
    pub fn head(&self) -> String {
        self.text
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    }
}

/// Sends `bytes` on a new connection and reads until the server closes it or `within` passes.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> RawReply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything; that is fine.
    let _ = s.write_all(bytes).await;
    read_reply(&mut s, within).await
}

pub async fn read_reply(s: &mut TcpStream, within: Duration) -> RawReply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break false,
        }
    };
    RawReply {
        text: String::from_utf8_lossy(&buf).into_owned(),
        closed,
    }
}

/// An upstream that reads each request head (byte by byte, so nothing after it is consumed)
/// and hands it, without its blank line, to `script` with the raw connection.
pub async fn scripted<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream, String) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                head.truncate(head.len() - 4);
                script(s, String::from_utf8_lossy(&head).into_owned()).await;
            });
        }
    });
    addr
}

/// An upstream that records each request head exactly as it arrived on the wire and answers
/// `200 {}` with `Connection: close`.
pub struct RawUpstream {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    pub async fn start() -> Self {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let addr = scripted(move |mut s, head| {
            seen.lock().unwrap().push(head);
            async move {
                // Give the body a moment to arrive, so the proxy finishes sending it.
                let mut chunk = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(100), s.read(&mut chunk)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            }
        })
        .await;
        Self { addr, heads }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// How many lines of `head` are the header `name` (case-insensitive).
pub fn count_header(head: &str, name: &str) -> usize {
    head.lines()
        .skip(1)
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .count()
}
