//! The mock upstream: an OpenAI-style server run in its own process, and its launch.

use crate::mock_body::{MockBody, SlowStream, SseStream};
use crate::proc::Proc;
use crate::util::find;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct State {
    models: Bytes,
    completion: Bytes,
}

/// The mock process: serves until its parent closes our stdin.
pub fn run(portfile: &Path) {
    crate::child::run("mock upstream", serve(portfile));
}

async fn serve(portfile: &Path) -> io::Result<()> {
    let listener = crate::child::listen(portfile)?;
    let state = Arc::new(State {
        models: models_json(),
        completion: completion_json(),
    });
    loop {
        let s = crate::child::accept(&listener).await;
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, st.clone()));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

fn models_json() -> Bytes {
    let mut s = String::from("{\"object\":\"list\",\"data\":[");
    let mut i = 0;
    while s.len() < 12 * 1024 - 200 {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"id\":\"model-{i}\",\"object\":\"model\",\"created\":1700000000,\
             \"owned_by\":\"ollama\",\"name\":\"Model {i} 7B\",\
             \"details\":{{\"family\":\"llama\",\"quantization\":\"Q4_K_M\"}}}}"
        );
        i += 1;
    }
    s.push_str("]}");
    Bytes::from(s)
}

fn completion_json() -> Bytes {
    let mut s = String::from(
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\
         \"model\":\"model-0\",\"system_fingerprint\":\"fp_mock\",\"choices\":[{\"index\":0,\
         \"message\":{\"role\":\"assistant\",\"content\":\"",
    );
    let tail = "\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":\
                {\"prompt_tokens\":212,\"completion_tokens\":96,\"total_tokens\":308}}";
    let words = [
        "The ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dogs. ",
    ];
    let mut k = 0;
    while s.len() + tail.len() < 600 {
        s.push_str(words[k % words.len()]);
        k += 1;
    }
    s.push_str(tail);
    Bytes::from(s)
}

fn query_u64(q: &str, key: &str, default: u64) -> u64 {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

/// True when the JSON body has `"stream": true`.
fn wants_stream(body: &[u8]) -> bool {
    let Some(p) = find(body, b"\"stream\"") else {
        return false;
    };
    let rest = &body[p + 8..];
    let rest: Vec<u8> = rest
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace() || *b == b':')
        .take(4)
        .collect();
    rest == b"true"
}

async fn handle(req: Request<Incoming>, st: Arc<State>) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = req.into_parts();
    // Drain the request body fully before answering.
    let body = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let q = parts.uri.query().unwrap_or("");
    let path = parts.uri.path();
    let resp = |ct: &str, b: MockBody| {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", ct)
            .body(b)
            .expect("response")
    };
    let r = match (&parts.method, path) {
        (&Method::GET, "/api/models") | (&Method::GET, "/v1/models") => {
            resp("application/json", MockBody::Full(Some(st.models.clone())))
        }
        (&Method::POST, "/api/chat/completions") | (&Method::POST, "/v1/chat/completions") => {
            if wants_stream(&body) {
                let n = query_u64(q, "chunks", 64).min(100_000);
                let gap = Duration::from_millis(query_u64(q, "gap_ms", 20).min(10_000));
                let mut r = resp("text/event-stream", MockBody::Sse(SseStream::new(n, gap)));
                r.headers_mut()
                    .insert("cache-control", http::HeaderValue::from_static("no-cache"));
                r
            } else {
                resp(
                    "application/json",
                    MockBody::Full(Some(st.completion.clone())),
                )
            }
        }
        (&Method::GET, "/slow") => {
            let hold = Duration::from_secs(query_u64(q, "hold_s", 30).min(600));
            resp("text/event-stream", MockBody::Slow(SlowStream::new(hold)))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(MockBody::Full(Some(Bytes::from_static(b"not found\n"))))
            .expect("response"),
    };
    Ok(r)
}

/// Starts this executable as the mock upstream and waits for its port file.
pub async fn start_mock(tmp: &Path, pin: bool) -> Result<Proc, String> {
    let args = ["--mock-upstream".to_string(), "PORTFILE".to_string()];
    Ok(crate::child::start(tmp, pin, "mock", &args).await?.0)
}

pub fn mock_port(tmp: &Path) -> u16 {
    std::fs::read_to_string(tmp.join("mock.port"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
