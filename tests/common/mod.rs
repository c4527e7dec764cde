//! Test harness: an in-process mock upstream on 127.0.0.1:0, an in-process llmgate, and
//! small clients. Every test gets its own ports, so tests run in parallel.
#![allow(dead_code)]

pub mod auth;
pub mod binary;
pub mod llm;
pub mod raw;
pub mod redis;
pub mod tokens;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};

pub type MockBody = BoxBody<Bytes, std::io::Error>;
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFut<Response<MockBody>> + Send + Sync>;

/// What the mock saw of a request (its head; bodies are the handler's business).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
}

pub struct MockUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: Arc<(AtomicUsize, Notify)>,
    accepted: Arc<AtomicUsize>,
}

impl MockUpstream {
    /// Starts a mock whose every request is answered by `handler`.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<MockBody>> + Send + 'static,
    {
        Self::serve(handler, None).await
    }

    /// Like `start`, over TLS with a certificate for 127.0.0.1 issued by a CA made for this
    /// test; the CA's PEM file is in the returned `TestCa`.
    pub async fn start_tls<F, Fut>(handler: F) -> (Self, TestCa)
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<MockBody>> + Send + 'static,
    {
        let (ca, acceptor) = TestCa::new();
        (Self::serve(handler, Some(acceptor)).await, ca)
    }

    async fn serve<F, Fut>(handler: F, tls: Option<tokio_rustls::TlsAcceptor>) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<MockBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new((AtomicUsize::new(0), Notify::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, c, a) = (seen.clone(), closed.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                stream.set_nodelay(true).unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let (handler, seen, closed) = (handler.clone(), s.clone(), c.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(Seen {
                            method: req.method().clone(),
                            uri: req.uri().clone(),
                            headers: req.headers().clone(),
                        });
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let http = http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                    closed.0.fetch_add(1, Ordering::SeqCst);
                    closed.1.notify_waiters();
                });
            }
        });
        Self {
            addr,
            seen,
            closed,
            accepted,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn connections_closed(&self) -> usize {
        self.closed.0.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` upstream connections have closed; false on timeout.
    pub async fn wait_closed(&self, n: usize, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                let notified = self.closed.1.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.connections_closed() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// A certificate authority made for one test, its PEM file on disk for `ca_file`.
pub struct TestCa {
    _dir: tempfile::TempDir,
    pub pem_path: std::path::PathBuf,
}

impl TestCa {
    fn new() -> (Self, tokio_rustls::TlsAcceptor) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, ca.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (
            Self {
                _dir: dir,
                pem_path,
            },
            acceptor,
        )
    }
}

pub fn full(body: impl Into<Bytes>) -> MockBody {
    Full::new(body.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

pub fn json(status: u16, body: &str) -> Response<MockBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap()
}

/// An upstream whose first response is a `content_type` stream fed by the test.
pub async fn fed_upstream(
    content_type: &'static str,
) -> (
    MockUpstream,
    oneshot::Receiver<mpsc::Sender<Result<Bytes, std::io::Error>>>,
) {
    let (tx_slot, rx_slot) = oneshot::channel();
    let tx_slot = std::sync::Mutex::new(Some(tx_slot));
    let mock = MockUpstream::start(move |_req| {
        let (tx, body) = channel_body();
        if let Some(slot) = tx_slot.lock().unwrap().take() {
            let _ = slot.send(tx);
        }
        async move {
            Response::builder()
                .header("content-type", content_type)
                .body(body)
                .unwrap()
        }
    })
    .await;
    (mock, rx_slot)
}

/// A body fed from the test: send `Ok(bytes)` for a frame, `Err` to abort the stream,
/// drop the sender to end it cleanly.
pub fn channel_body() -> (mpsc::Sender<Result<Bytes, std::io::Error>>, MockBody) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    (tx, StreamBody::new(stream).boxed())
}

/// Reads the whole request body, counting bytes without keeping them.
pub async fn drain_body(body: Incoming) -> u64 {
    let mut body = body;
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    n
}

pub async fn body_string(body: Incoming) -> String {
    String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// llmgate running in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<llmgate::DrainReport>,
}

impl Proxy {
    /// Starts llmgate with `extra` appended to a config whose listeners use free ports.
    pub async fn start(extra: &str) -> Self {
        let text =
            format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra}");
        let config = llmgate::config::parse("test.toml", &text, &|v| std::env::var(v).ok())
            .unwrap_or_else(|e| panic!("test config invalid: {e}"));
        let server = llmgate::Server::bind(&config).await.unwrap();
        let (addr, admin) = (server.proxy_addr(), server.admin_addr());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            admin,
            shutdown: Some(tx),
            task,
        }
    }

    /// llmgate with one upstream `mock` at `up` serving every path, plus `extra` config.
    pub async fn to(up: SocketAddr, extra: &str) -> Self {
        Self::start(&format!(
            "[[upstreams]]\nname = \"mock\"\nurl = \"http://{up}\"\n{extra}\n[[routes]]\npath_prefix = \"/\"\nupstream = \"mock\"\n"
        ))
        .await
    }

    /// llmgate with `[server]` keys `server` and one upstream `m` at `up` serving every path.
    pub async fn with_server(server: &str, up: SocketAddr) -> Self {
        Self::start(&format!(
            "{server}\n[[upstreams]]\nname = \"m\"\nurl = \"http://{up}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"m\"\n"
        ))
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub async fn metrics(&self) -> String {
        let resp = get(self.admin, "/metrics").await;
        body_string(resp.into_body()).await
    }
}

/// Config text for Open WebUI `web` (serving `/`, and `/v1` as its `/api`) and an
/// OpenAI-compatible relay at `relay_url` with its own key `relay-secret`, serving `gpt-*` and
/// `claude-*`; `relay_extra` adds keys to the relay, `more` adds tables after it.
pub fn web_and_relay(web: SocketAddr, relay_url: &str, relay_extra: &str, more: &str) -> String {
    format!(
        r#"
[[upstreams]]
name = "web"
url = "http://{web}"
[[upstreams]]
name = "relay"
url = "{relay_url}"
bearer = "relay-secret"
models = ["gpt-*", "claude-*"]
{relay_extra}
[[routes]]
path_prefix = "/"
upstream = "web"
[[routes]]
path_prefix = "/v1"
upstream = "web"
rewrite_prefix = "/api"
{more}
"#
    )
}

/// Opens a fresh HTTP/1.1 connection and sends one request on it.
pub async fn send(
    addr: SocketAddr,
    req: Request<BoxBody<Bytes, std::io::Error>>,
) -> Response<Incoming> {
    try_send(addr, req).await.expect("request failed")
}

pub async fn try_send(
    addr: SocketAddr,
    req: Request<BoxBody<Bytes, std::io::Error>>,
) -> Result<Response<Incoming>, hyper::Error> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn.with_upgrades());
    sender.send_request(req).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Response<Incoming> {
    send(addr, request("GET", path, full(""))).await
}

/// An HTTP/2 prior-knowledge (h2c) connection to `addr`, driven in the background.
pub async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<MockBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

pub fn request(method: &str, path: &str, body: MockBody) -> Request<MockBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "llmgate.test")
        .body(body)
        .unwrap()
}

/// The value of one sample in Prometheus text, e.g. `llmgate_requests_total{...}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Collects body frames as they arrive, each as a string.
pub async fn next_chunk(body: &mut Incoming) -> Option<String> {
    loop {
        match body.frame().await? {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    return Some(String::from_utf8_lossy(&d).into_owned());
                }
            }
            Err(_) => return None,
        }
    }
}

/// An SSE data event, as OpenAI-compatible servers send it.
pub fn sse(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

pub fn stream_of(chunks: Vec<Bytes>) -> MockBody {
    StreamBody::new(futures_util::stream::iter(
        chunks.into_iter().map(|c| Ok(Frame::data(c))),
    ))
    .boxed()
}

/// A mock whose `/quick` answers `{}` at once and whose every other path streams SSE until
/// the test clears the returned senders (ending those streams cleanly).
pub async fn hold_upstream() -> (
    MockUpstream,
    Arc<Mutex<Vec<mpsc::Sender<Result<Bytes, std::io::Error>>>>>,
) {
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let mock = MockUpstream::start(move |req| {
        let keep = keep.clone();
        async move {
            if req.uri().path() == "/quick" {
                return json(200, "{}");
            }
            let (tx, body) = channel_body();
            tx.try_send(Ok(sse("{}"))).unwrap();
            keep.lock().unwrap().push(tx);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        }
    })
    .await;
    (mock, held)
}

/// Polls `probe` every 20 ms until it returns true; false if `within` passes first.
pub async fn eventually<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A limit of 100 in a daily window: nothing refills while 1000 concurrent requests are on
/// their way, however busy the machine (per-minute windows are the same GCRA).
pub const HUNDRED: &str = "requests_per_minute = 0\nrequests_per_day = 100";

/// How many of the tasks said "admitted".
pub async fn count_admitted(tasks: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    admitted
}
