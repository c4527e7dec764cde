//! The soak's upstream: OpenAI-style SSE and Ollama NDJSON streams paced like a model,
//! uploads it reads to the end, model lists, and a small JSON answer for anything else.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, std::io::Error>;

/// Content chunks in a normal stream, and the pause between them.
pub const CHUNKS: usize = 12;
const PACE: Duration = Duration::from_millis(4);
/// A stream the client gives up on: long enough that it is always cancelled mid-way.
const SLOW_CHUNKS: usize = 400;
const SLOW_PACE: Duration = Duration::from_millis(25);

/// Serves until the runtime ends; returns its address.
pub async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(answer))
                    .await;
            });
        }
    });
    addr
}

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let slow = req.headers().contains_key("x-soak-slow");
    Ok(match path.as_str() {
        "/v1/chat/completions" => {
            drain(req.into_body()).await;
            let (n, pace) = if slow {
                (SLOW_CHUNKS, SLOW_PACE)
            } else {
                (CHUNKS, PACE)
            };
            stream("text/event-stream", n, pace, sse_event)
        }
        "/api/chat" => {
            drain(req.into_body()).await;
            stream("application/x-ndjson", CHUNKS, PACE, ndjson_line)
        }
        "/api/v1/files/" => {
            let n = drain(req.into_body()).await;
            json(format!(r#"{{"id":"file-1","bytes":{n}}}"#))
        }
        "/v1/models" => json(
            r#"{"object":"list","data":[{"id":"gpt-soak","object":"model","owned_by":"soak"},{"id":"llama-soak","object":"model","owned_by":"soak"}]}"#.into(),
        ),
        _ => json(format!(r#"{{"path":"{path}"}}"#)),
    })
}

async fn drain(mut body: Incoming) -> u64 {
    let mut n = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
        }
    }
    n
}

fn json(text: String) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed())
        .unwrap()
}

/// Event `i` of a stream of `n` content events; `i == n` closes it with usage.
fn sse_event(i: usize, n: usize) -> String {
    if i < n {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-soak\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n"
        )
    } else {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-soak\",\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
            n + 9
        )
    }
}

fn ndjson_line(i: usize, n: usize) -> String {
    if i < n {
        format!("{{\"model\":\"llama-soak\",\"message\":{{\"role\":\"assistant\",\"content\":\"tok{i} \"}},\"done\":false}}\n")
    } else {
        format!("{{\"model\":\"llama-soak\",\"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done\":true,\"prompt_eval_count\":9,\"eval_count\":{n}}}\n")
    }
}

fn stream(
    content_type: &str,
    n: usize,
    pace: Duration,
    event: fn(usize, usize) -> String,
) -> Response<Body> {
    let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
    tokio::spawn(async move {
        for i in 0..=n {
            if tx
                .send(Ok(Frame::data(Bytes::from(event(i, n)))))
                .await
                .is_err()
            {
                return; // the proxy hung up: the client cancelled
            }
            tokio::time::sleep(pace).await;
        }
    });
    let frames = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", content_type)
        .body(StreamBody::new(frames).boxed())
        .unwrap()
}
