//! The soak's clients: each request of the mix, checked end to end, and sorted into an
//! outcome. Anything that is not the answer its kind must get is "unexplained".

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Longest any one request may take before it counts as unexplained.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upload body size.
pub const UPLOAD: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sse,
    Ndjson,
    Upload,
    Models,
    /// A bad key: 401.
    Unauthorized,
    /// A stream the client drops after its first frame.
    Cancel,
    /// The rate-limited key: 200 or 429.
    Limited,
}

pub const KINDS: [Kind; 7] = [
    Kind::Sse,
    Kind::Ndjson,
    Kind::Upload,
    Kind::Models,
    Kind::Unauthorized,
    Kind::Cancel,
    Kind::Limited,
];

/// The general workers' mix, in percent (the limited key has its own worker).
const MIX: [(Kind, u32); 6] = [
    (Kind::Sse, 35),
    (Kind::Ndjson, 25),
    (Kind::Upload, 10),
    (Kind::Models, 15),
    (Kind::Unauthorized, 8),
    (Kind::Cancel, 7),
];

pub fn pick(roll: u32) -> Kind {
    let mut at = roll % 100;
    for (kind, share) in MIX {
        if at < share {
            return kind;
        }
        at -= share;
    }
    Kind::Sse
}

#[derive(Debug)]
pub enum Outcome {
    Ok,
    /// 401 or 429 where the kind expects it.
    Refused,
    Cancelled,
    Unexplained(String),
}

/// Outcomes per kind: ok, refused, cancelled, unexplained.
#[derive(Default)]
pub struct Tally {
    counts: [[AtomicU64; 4]; 7],
    pub first_errors: Mutex<Vec<String>>,
}

impl Tally {
    pub fn record(&self, kind: Kind, outcome: Outcome) {
        let col = match &outcome {
            Outcome::Ok => 0,
            Outcome::Refused => 1,
            Outcome::Cancelled => 2,
            Outcome::Unexplained(why) => {
                let mut errs = self.first_errors.lock().unwrap();
                if errs.len() < 20 {
                    errs.push(format!("{kind:?}: {why}"));
                }
                3
            }
        };
        self.counts[kind as usize][col].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, kind: Kind) -> [u64; 4] {
        self.counts[kind as usize]
            .each_ref()
            .map(|c| c.load(Ordering::Relaxed))
    }

    pub fn total(&self) -> u64 {
        KINDS.iter().map(|&k| self.get(k).iter().sum::<u64>()).sum()
    }

    pub fn unexplained(&self) -> u64 {
        KINDS.iter().map(|&k| self.get(k)[3]).sum()
    }
}

pub struct Target {
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub addr: SocketAddr,
    pub key: String,
    pub limited_key: String,
    pub upload: Bytes,
}

impl Target {
    pub fn new(addr: SocketAddr, key: String, limited_key: String) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            addr,
            key,
            limited_key,
            upload: Bytes::from(vec![b'u'; UPLOAD]),
        }
    }

    pub async fn run(&self, kind: Kind) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(kind)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Unexplained(e),
            Err(_) => Outcome::Unexplained(format!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }

    async fn exchange(&self, kind: Kind) -> Result<Outcome, String> {
        let chat =
            r#"{"model":"gpt-soak","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let (method, path, body, key) = match kind {
            Kind::Sse | Kind::Cancel => (
                "POST",
                "/v1/chat/completions",
                Bytes::from(chat),
                &*self.key,
            ),
            Kind::Ndjson => (
                "POST",
                "/api/chat",
                Bytes::from(chat.replace("gpt", "llama")),
                &*self.key,
            ),
            Kind::Upload => ("POST", "/api/v1/files/", self.upload.clone(), &*self.key),
            Kind::Models => ("GET", "/v1/models", Bytes::new(), &*self.key),
            Kind::Unauthorized => ("GET", "/v1/models", Bytes::new(), "lg-not-a-key-0000"),
            Kind::Limited => ("GET", "/api/version", Bytes::new(), &*self.limited_key),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json");
        if kind == Kind::Cancel {
            req = req.header("x-soak-slow", "1");
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        match (kind, status) {
            (Kind::Unauthorized, StatusCode::UNAUTHORIZED)
            | (Kind::Limited, StatusCode::TOO_MANY_REQUESTS) => {
                read(resp.into_body()).await?;
                return Ok(Outcome::Refused);
            }
            (_, StatusCode::OK) if kind != Kind::Unauthorized => {}
            _ => {
                let text = read(resp.into_body()).await.unwrap_or_default();
                return Err(format!("{status}: {}", String::from_utf8_lossy(&text)));
            }
        }
        if kind == Kind::Cancel {
            let mut body = resp.into_body();
            return match body.frame().await {
                Some(Ok(_)) => Ok(Outcome::Cancelled), // dropping `body` hangs up mid-stream
                other => Err(format!("no first frame: {other:?}")),
            };
        }
        let text = read(resp.into_body()).await?;
        let text = String::from_utf8_lossy(&text);
        let complete = match kind {
            Kind::Sse => {
                text.ends_with("data: [DONE]\n\n")
                    && text.matches("\"content\":\"tok").count() == super::mock::CHUNKS
            }
            Kind::Ndjson => {
                text.matches("\"done\":false").count() == super::mock::CHUNKS
                    && text
                        .trim_end()
                        .ends_with(&format!("\"eval_count\":{}}}", super::mock::CHUNKS))
            }
            Kind::Upload => text.contains(&format!("\"bytes\":{UPLOAD}")),
            Kind::Models => text.contains("gpt-soak"),
            _ => true,
        };
        if complete {
            Ok(Outcome::Ok)
        } else {
            Err(format!("incomplete answer: {text:.300}"))
        }
    }
}

async fn read(body: Incoming) -> Result<Bytes, String> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("body: {e:?}"))
}
