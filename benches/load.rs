//! Load benchmark for llmgate: the mock upstream directly, through llmgate and
//! through nginx, side by side in one run.
//!
//! Run:   `cargo bench --bench load`            (full run, about 2 minutes)
//!        `cargo bench --bench load -- --quick` (about 30 seconds)
//! Extra: `--only held,models,chat,sse,tput`  run a subset of the scenarios
//!        `--held-cycles N`                   open and close the held streams N times (1..5)
//!        `--keep`                            keep the temp dir (configs, logs)
//!        `--held N`                          number of held streams
//!        `LLMGATE_BIN=/path/to/llmgate`      measure another llmgate binary
//!
//! Processes: this program re-executes itself through `sh -c 'ulimit -n 65536;
//! exec taskset -c 0 ...'` so that it has enough file descriptors for 5000+
//! sockets and runs pinned on CPU 0 (the load generator, a current-thread tokio
//! runtime). The mock upstream is this same executable started with
//! `--mock-upstream PORTFILE`; the mock, llmgate and nginx all run on CPU 1.
//! CPU time of a process is read from /proc/PID/stat (utime + stime), memory
//! from VmRSS in /proc/PID/status. Only loopback addresses are used, and every
//! load loop is bounded by a deadline and a request count.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Set in the environment of the re-executed benchmark process.
const ENV_INNER: &str = "LLMGATE_LOADBENCH_INNER";
/// RLIMIT_NOFILE asked for (soft and hard) through `ulimit -n`.
const NOFILE: u64 = 65536;
/// Hard cap on the requests one closed-loop connection may send in one run.
const MAX_REQS_PER_CONN: u64 = 2_000_000;

/// The llmgate binary cargo built for this bench (`LLMGATE_BIN` overrides it).
fn llmgate_bin() -> Option<PathBuf> {
    Some(
        std::env::var_os("LLMGATE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_llmgate"))),
    )
}

/// The llmgate source tree, to name the measured commit.
fn llmgate_src_dir() -> Option<PathBuf> {
    std::env::var_os("LLMGATE_SRC")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mock-upstream") {
        let Some(portfile) = args.get(i + 1) else {
            eprintln!("--mock-upstream needs a PORTFILE argument");
            std::process::exit(2);
        };
        mock::run(Path::new(portfile));
        return;
    }
    if std::env::var_os(ENV_INNER).is_none() {
        std::process::exit(reexec(&args));
    }
    let opts = match Opts::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load bench: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Ctrl-C drops the run, and with it every child process (see `Proc`).
    let code = rt.block_on(async {
        tokio::select! {
            code = bench::run(opts) => code,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("load bench: interrupted");
                130
            }
        }
    });
    drop(rt);
    std::process::exit(code);
}

/// Re-executes this program through `sh` with a raised RLIMIT_NOFILE, pinned
/// on CPU 0 when `taskset` works. Returns the exit code of the inner run.
fn reexec(args: &[String]) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("load bench: current_exe: {e}");
            return 1;
        }
    };
    let exec = if pinning_available() {
        "exec taskset -c 0 \"$0\" \"$@\""
    } else {
        "exec \"$0\" \"$@\""
    };
    let script = format!(
        "ulimit -n {NOFILE} 2>/dev/null || ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; {exec}"
    );
    match Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .args(&args[1..])
        .env(ENV_INNER, "1")
        .status()
    {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("load bench: cannot run sh: {e}");
            1
        }
    }
}

/// True when `taskset` works and there are at least 2 CPUs.
fn pinning_available() -> bool {
    cpu_count() >= 2
        && Command::new("taskset")
            .args(["-c", "1", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    only: Option<Vec<String>>,
    held: Option<usize>,
    held_cycles: Option<usize>,
    keep: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            quick: false,
            only: None,
            held: None,
            held_cycles: None,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--keep" => o.keep = true,
                "--held-cycles" => {
                    let v = it.next().ok_or("--held-cycles needs a number")?;
                    o.held_cycles = Some(v.parse().map_err(|_| "--held-cycles needs a number")?);
                }
                "--only" => {
                    let v = it.next().ok_or("--only needs a list")?;
                    o.only = Some(v.split(',').map(|s| s.trim().to_string()).collect());
                }
                "--held" => {
                    let v = it.next().ok_or("--held needs a number")?;
                    o.held = Some(v.parse().map_err(|_| "--held needs a number")?);
                }
                // `cargo bench` passes `--bench`; ignore it and anything unknown.
                _ => {}
            }
        }
        Ok(o)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == scenario))
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Mock upstream (runs in its own process)
// ---------------------------------------------------------------------------

mod mock {
    use super::*;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use std::future::Future;
    use std::io::Read;
    use tokio::time::Sleep;

    struct State {
        models: Bytes,
        completion: Bytes,
    }

    pub fn run(portfile: &Path) {
        // Exit when the benchmark (our parent) goes away and closes our stdin.
        std::thread::spawn(|| {
            let mut b = [0u8; 64];
            let mut stdin = io::stdin();
            loop {
                match stdin.read(&mut b) {
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(_) => {}
                }
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("mock runtime");
        if let Err(e) = rt.block_on(serve(portfile)) {
            eprintln!("mock upstream: {e}");
            std::process::exit(1);
        }
    }

    async fn serve(portfile: &Path) -> io::Result<()> {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind("127.0.0.1:0".parse().expect("addr"))?;
        let listener = sock.listen(8192)?;
        let port = listener.local_addr()?.port();
        let tmp = portfile.with_extension("tmp");
        std::fs::write(&tmp, port.to_string())?;
        std::fs::rename(&tmp, portfile)?;
        let state = Arc::new(State {
            models: models_json(),
            completion: completion_json(),
        });
        loop {
            let (s, _) = match listener.accept().await {
                Ok(x) => x,
                Err(_) => {
                    // EMFILE and friends: back off a little, keep serving.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let _ = s.set_nodelay(true);
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

    async fn handle(
        req: Request<Incoming>,
        st: Arc<State>,
    ) -> Result<Response<MockBody>, Infallible> {
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

    pub enum MockBody {
        Full(Option<Bytes>),
        Sse(SseStream),
        Slow(SlowStream),
    }

    pub struct SseStream {
        n: u64,
        sent: u64,
        gap: Duration,
        start: tokio::time::Instant,
        sleep: Option<Pin<Box<Sleep>>>,
        armed: bool,
        done: bool,
    }

    impl SseStream {
        fn new(n: u64, gap: Duration) -> SseStream {
            SseStream {
                n,
                sent: 0,
                gap,
                start: tokio::time::Instant::now(),
                sleep: None,
                armed: false,
                done: false,
            }
        }

        fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.sent >= self.n {
                if self.done {
                    return Poll::Ready(None);
                }
                self.done = true;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                    b"data: [DONE]\n\n",
                )))));
            }
            if !self.gap.is_zero() && self.sent > 0 {
                let at = self.start + self.gap * self.sent as u32;
                let sl = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if !self.armed {
                    sl.as_mut().reset(at);
                    self.armed = true;
                }
                if sl.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.armed = false;
            }
            self.sent += 1;
            let chunk = format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\
                 \"choices\":[{{\"delta\":{{\"content\":\"tok\"}}}}],\"t\":{}}}\n\n",
                now_ns()
            );
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
        }
    }

    pub struct SlowStream {
        first_sent: bool,
        end: tokio::time::Instant,
        sleep: Pin<Box<Sleep>>,
    }

    const SLOW_TICK: Duration = Duration::from_secs(3);

    impl SlowStream {
        fn new(hold: Duration) -> SlowStream {
            let now = tokio::time::Instant::now();
            SlowStream {
                first_sent: false,
                end: now + hold,
                sleep: Box::pin(tokio::time::sleep_until(now + SLOW_TICK.min(hold))),
            }
        }

        fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if !self.first_sent {
                self.first_sent = true;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                    b"data: hello\n\n",
                )))));
            }
            if tokio::time::Instant::now() >= self.end {
                return Poll::Ready(None);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = tokio::time::Instant::now();
            if now >= self.end {
                return Poll::Ready(None);
            }
            let next = (now + SLOW_TICK).min(self.end);
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": ping\n\n")))))
        }
    }

    impl Body for MockBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.get_mut() {
                MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
                MockBody::Sse(s) => s.poll(cx),
                MockBody::Slow(s) => s.poll(cx),
            }
        }

        fn is_end_stream(&self) -> bool {
            matches!(self, MockBody::Full(None))
        }

        fn size_hint(&self) -> SizeHint {
            match self {
                MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
                MockBody::Full(None) => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client: keeps the load generator light
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum BodyKind {
    Len(usize),
    Chunked,
    Eof,
}

#[derive(Debug)]
struct Head {
    status: u16,
    kind: BodyKind,
    close: bool,
}

struct Http {
    s: TcpStream,
    buf: BytesMut,
    /// CLOCK_REALTIME (ns) of the last successful read.
    ts: i64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_head(h: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(h).map_err(|_| bad("non-UTF-8 response head"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut close = version == "HTTP/1.0";
    let mut len = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                if v.eq_ignore_ascii_case("close") {
                    close = true;
                } else if v.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let kind = if chunked {
        BodyKind::Chunked
    } else if let Some(n) = len {
        BodyKind::Len(n)
    } else if status == 204 || status == 304 || status < 200 {
        BodyKind::Len(0)
    } else {
        BodyKind::Eof
    };
    Ok(Head {
        status,
        kind,
        close: close || kind == BodyKind::Eof,
    })
}

impl Http {
    async fn connect(addr: SocketAddr) -> io::Result<Http> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Http {
            s,
            buf: BytesMut::with_capacity(16 * 1024),
            ts: 0,
        })
    }

    /// Reads more bytes; Ok(0) at EOF.
    async fn fill_opt(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let n = self.s.read_buf(&mut self.buf).await?;
        self.ts = now_ns();
        Ok(n)
    }

    async fn fill(&mut self) -> io::Result<()> {
        match self.fill_opt().await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            )),
            _ => Ok(()),
        }
    }

    async fn read_head(&mut self) -> io::Result<Head> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                let head = parse_head(&self.buf[..p])?;
                self.buf.advance(p + 4);
                return Ok(head);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(bad("response head over 64 KiB"));
            }
            self.fill().await?;
        }
    }

    async fn read_line(&mut self) -> io::Result<usize> {
        loop {
            if let Some(p) = find(&self.buf, b"\r\n") {
                return Ok(p);
            }
            if self.buf.len() > 8192 {
                return Err(bad("chunk line over 8 KiB"));
            }
            self.fill().await?;
        }
    }

    /// Reads a whole response body and hands each piece of it, with the time
    /// it was read, to `f`.
    async fn read_body<F: FnMut(&[u8], i64)>(
        &mut self,
        kind: BodyKind,
        mut f: F,
    ) -> io::Result<()> {
        match kind {
            BodyKind::Len(mut rem) => {
                while rem > 0 {
                    if self.buf.is_empty() {
                        self.fill().await?;
                    }
                    let take = rem.min(self.buf.len());
                    f(&self.buf[..take], self.ts);
                    self.buf.advance(take);
                    rem -= take;
                }
                Ok(())
            }
            BodyKind::Eof => loop {
                if !self.buf.is_empty() {
                    f(&self.buf, self.ts);
                    self.buf.clear();
                }
                if self.fill_opt().await? == 0 {
                    return Ok(());
                }
            },
            BodyKind::Chunked => loop {
                let p = self.read_line().await?;
                let line = std::str::from_utf8(&self.buf[..p]).map_err(|_| bad("chunk size"))?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| bad(format!("chunk size {hex:?}")))?;
                self.buf.advance(p + 2);
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let p = self.read_line().await?;
                        self.buf.advance(p + 2);
                        if p == 0 {
                            return Ok(());
                        }
                    }
                }
                let mut rem = size;
                while rem > 0 {
                    if self.buf.is_empty() {
                        self.fill().await?;
                    }
                    let take = rem.min(self.buf.len());
                    f(&self.buf[..take], self.ts);
                    self.buf.advance(take);
                    rem -= take;
                }
                while self.buf.len() < 2 {
                    self.fill().await?;
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(bad("missing CRLF after chunk"));
                }
                self.buf.advance(2);
            },
        }
    }

    /// Sends `req` and reads the whole response. Returns (status, must close).
    async fn round_trip(&mut self, req: &[u8]) -> io::Result<(u16, bool)> {
        self.s.write_all(req).await?;
        let h = self.read_head().await?;
        self.read_body(h.kind, |_, _| {}).await?;
        Ok((h.status, h.close))
    }
}

async fn http_get(addr: SocketAddr, path: &str, limit: Duration) -> io::Result<(u16, Vec<u8>)> {
    let fut = async {
        let mut c = Http::connect(addr).await?;
        c.s.write_all(&get_req(path)).await?;
        let h = c.read_head().await?;
        let mut body = Vec::new();
        c.read_body(h.kind, |d, _| body.extend_from_slice(d))
            .await?;
        Ok((h.status, body))
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}

fn get_req(path: &str) -> Bytes {
    Bytes::from(format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: llmgate-loadbench\r\nAccept: */*\r\n\r\n"
    ))
}

fn post_req(path: &str, accept: &str, body: &[u8]) -> Bytes {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: llmgate-loadbench\r\n\
         Content-Type: application/json\r\nAccept: {accept}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    Bytes::from(v)
}

/// A ~1 KiB OpenAI chat request body.
fn chat_body(stream: bool) -> Vec<u8> {
    let head = format!(
        "{{\"model\":\"model-0\",\"stream\":{stream},\"temperature\":0.7,\"messages\":[\
         {{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},\
         {{\"role\":\"user\",\"content\":\""
    );
    let tail = "\"}]}";
    let mut s = head;
    let words = [
        "lorem ",
        "ipsum ",
        "dolor ",
        "sit ",
        "amet ",
        "consectetur ",
    ];
    let mut k = 0;
    while s.len() + tail.len() < 1024 {
        s.push_str(words[k % words.len()]);
        k += 1;
    }
    s.push_str(tail);
    s.into_bytes()
}

/// Splits an SSE byte stream into events; records per-chunk latency.
struct SseReader {
    pending: Vec<u8>,
    chunks: u64,
    done: bool,
    first_recv_ns: Option<i64>,
    record: bool,
    lats: Vec<i64>,
}

impl SseReader {
    fn new(record: bool, cap: usize) -> SseReader {
        SseReader {
            pending: Vec::with_capacity(4096),
            chunks: 0,
            done: false,
            first_recv_ns: None,
            record,
            lats: Vec::with_capacity(if record { cap } else { 0 }),
        }
    }

    fn feed(&mut self, data: &[u8], recv_ns: i64) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(p) = find(&self.pending[start..], b"\n\n") {
            let ev = &self.pending[start..start + p];
            start += p + 2;
            if !ev.starts_with(b"data:") {
                continue; // comments, pings
            }
            if find(ev, b"[DONE]").is_some() {
                self.done = true;
                continue;
            }
            self.chunks += 1;
            if self.first_recv_ns.is_none() {
                self.first_recv_ns = Some(recv_ns);
            }
            if self.record {
                if let Some(t) = parse_t(ev) {
                    self.lats.push(recv_ns - t);
                }
            }
        }
        if start > 0 {
            self.pending.drain(..start);
        }
    }
}

fn parse_t(ev: &[u8]) -> Option<i64> {
    let p = find(ev, b"\"t\":")?;
    let digits = &ev[p + 4..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------
// /proc readings
// ---------------------------------------------------------------------------

mod procfs {
    use super::*;

    /// utime + stime of one process (all threads), in clock ticks.
    pub fn cpu_ticks(pid: u32) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the comm: state(0) ppid(1) ... utime(11) stime(12)
        let u: u64 = f.get(11)?.parse().ok()?;
        let st: u64 = f.get(12)?.parse().ok()?;
        Some(u + st)
    }

    pub fn ppid(pid: u32) -> Option<u32> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        rest.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    pub fn rss_kib(pids: &[u32]) -> u64 {
        pids.iter().filter_map(|p| status_kib(*p, "VmRSS:")).sum()
    }

    pub fn cpu_sum(pids: &[u32]) -> u64 {
        pids.iter().filter_map(|p| cpu_ticks(*p)).sum()
    }

    pub fn fd_count(pids: &[u32]) -> usize {
        pids.iter()
            .filter_map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).ok())
            .map(|d| d.count())
            .sum()
    }

    pub fn children(parent: u32) -> Vec<u32> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                    if ppid(pid) == Some(parent) {
                        v.push(pid);
                    }
                }
            }
        }
        v
    }

    /// Voluntary + involuntary context switches of all threads.
    pub fn ctx_switches(pids: &[u32]) -> u64 {
        let mut n = 0;
        for pid in pids {
            let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for e in rd.flatten() {
                let tid = e.file_name().to_string_lossy().to_string();
                if let Ok(tid) = tid.parse::<u32>() {
                    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                        .unwrap_or_default();
                    n += s
                        .lines()
                        .filter(|l| {
                            l.starts_with("voluntary_ctxt_switches")
                                || l.starts_with("nonvoluntary_ctxt_switches")
                        })
                        .filter_map(|l| l.split_whitespace().nth(1))
                        .filter_map(|v| v.parse::<u64>().ok())
                        .sum::<u64>();
                }
            }
        }
        n
    }

    /// write(2)/writev(2) calls (`syscw` in /proc/PID/io; send(2) is not counted).
    pub fn write_calls(pids: &[u32]) -> u64 {
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/io")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("syscw:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    }

    /// A reading of CPU time, context switches and write calls.
    #[derive(Clone, Copy)]
    pub struct Snap {
        pub ticks: u64,
        pub ctx: u64,
        pub writes: u64,
    }

    pub fn snap(pids: &[u32]) -> Snap {
        Snap {
            ticks: cpu_sum(pids),
            ctx: ctx_switches(pids),
            writes: write_calls(pids),
        }
    }

    impl Snap {
        pub fn since(self, before: Snap) -> Snap {
            Snap {
                ticks: self.ticks.saturating_sub(before.ticks),
                ctx: self.ctx.saturating_sub(before.ctx),
                writes: self.writes.saturating_sub(before.writes),
            }
        }
    }

    pub fn clk_tck() -> u64 {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process killed when dropped (also while unwinding from a panic).
struct Proc {
    name: String,
    child: Child,
    /// Kept open so that the mock exits if this process dies.
    _stdin: Option<ChildStdin>,
    /// Send SIGTERM first and give it this long before SIGKILL.
    term_grace: Option<Duration>,
    /// Processes the child forked (nginx workers), killed last.
    extra: Vec<u32>,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            if let Some(grace) = self.term_grace {
                let _ = Command::new("kill")
                    .args(["-TERM", &self.pid().to_string()])
                    .stderr(Stdio::null())
                    .status();
                let until = Instant::now() + grace;
                while Instant::now() < until {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for pid in &self.extra {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "nginx")
                .unwrap_or(false);
            if alive {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Builds a command pinned on CPU `cpu` with taskset when available.
fn pinned(pin: bool, cpu: u32, prog: &Path) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn log_file(path: &Path) -> io::Result<(Stdio, Stdio)> {
    let f = std::fs::File::create(path)?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}

// ---------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------

mod bench {
    use super::*;
    use tokio::task::JoinSet;

    #[derive(Clone, Copy)]
    struct Cfg {
        dur: Duration,
        warm: Duration,
        conns: usize,
        sse_streams: usize,
        sse_chunks: u64,
        sse_gap_ms: u64,
        sse_rounds: usize,
        tput_chunks: u64,
        tput_dur: Duration,
        held: usize,
        held_cycles: usize,
        hold_s: u64,
        held_limit: Duration,
    }

    impl Cfg {
        fn new(o: &Opts) -> Cfg {
            let mut c = if o.quick {
                Cfg {
                    dur: Duration::from_secs(1),
                    warm: Duration::from_millis(200),
                    conns: 64,
                    sse_streams: 200,
                    sse_chunks: 16,
                    sse_gap_ms: 20,
                    sse_rounds: 1,
                    tput_chunks: 64,
                    tput_dur: Duration::from_secs(1),
                    held: 1000,
                    held_cycles: 1,
                    hold_s: 60,
                    held_limit: Duration::from_secs(20),
                }
            } else {
                Cfg {
                    dur: Duration::from_secs(5),
                    warm: Duration::from_millis(500),
                    conns: 64,
                    sse_streams: 200,
                    sse_chunks: 64,
                    sse_gap_ms: 20,
                    sse_rounds: 4,
                    tput_chunks: 64,
                    tput_dur: Duration::from_secs(4),
                    held: 5000,
                    held_cycles: 1,
                    hold_s: 120,
                    held_limit: Duration::from_secs(60),
                }
            };
            if let Some(h) = o.held {
                c.held = h;
            }
            if let Some(n) = o.held_cycles {
                c.held_cycles = n.clamp(1, 5);
            }
            c
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Direct,
        Proxy,
    }

    struct Target {
        label: String,
        addr: SocketAddr,
        kind: Kind,
        /// Processes whose CPU and memory are "the proxy" (empty for direct).
        pids: Vec<u32>,
        /// Index in the process list, to notice crashes.
        proc_idx: Option<usize>,
        /// Only in the request/response scenarios (the access-log variant).
        rr_only: bool,
        dead: Option<String>,
        idle_rss_kib: u64,
    }

    struct Env {
        clk_tck: u64,
        mock_pid: u32,
    }

    impl Env {
        fn ms(&self, ticks: u64) -> f64 {
            ticks as f64 * 1000.0 / self.clk_tck as f64
        }
    }

    // ---- results ---------------------------------------------------------

    struct RrRow {
        label: String,
        ok: u64,
        err: u64,
        rps: f64,
        p50_us: i64,
        p99_us: i64,
        proxy_ms_per_1k: Option<f64>,
        mock_ms_per_1k: f64,
        /// Proxy write calls and context switches per request.
        proxy_diag: Option<(f64, f64)>,
    }

    struct SseRow {
        label: String,
        lat_p50: i64,
        lat_p99: i64,
        /// Lowest and highest p99 of a single round.
        lat_p99_min: i64,
        lat_p99_max: i64,
        ttfc_p50: i64,
        ttfc_p99: i64,
        chunks: u64,
        expected: u64,
        err: u64,
    }

    /// Samples of all rounds of one target.
    #[derive(Default)]
    struct SseAcc {
        lats: Vec<i64>,
        ttfc: Vec<i64>,
        round_p99: Vec<i64>,
        chunks: u64,
        expected: u64,
        err: u64,
    }

    impl SseAcc {
        fn row(mut self, label: &str) -> SseRow {
            self.lats.sort_unstable();
            self.ttfc.sort_unstable();
            SseRow {
                label: label.to_string(),
                lat_p50: pct(&self.lats, 50.0),
                lat_p99: pct(&self.lats, 99.0),
                lat_p99_min: self.round_p99.iter().copied().min().unwrap_or(0),
                lat_p99_max: self.round_p99.iter().copied().max().unwrap_or(0),
                ttfc_p50: pct(&self.ttfc, 50.0),
                ttfc_p99: pct(&self.ttfc, 99.0),
                chunks: self.chunks,
                expected: self.expected,
                err: self.err,
            }
        }
    }

    struct TputRow {
        label: String,
        chunks: u64,
        streams: u64,
        cps: f64,
        proxy_us_per_chunk: Option<f64>,
        mock_us_per_chunk: f64,
        err: u64,
        /// Proxy write calls and context switches per chunk.
        proxy_diag: Option<(f64, f64)>,
    }

    struct HeldRow {
        label: String,
        opened: usize,
        wanted: usize,
        rss_before_kib: u64,
        rss_held_kib: u64,
        kib_per_stream: f64,
        /// After all streams were closed again.
        rss_closed_kib: u64,
        /// (held, closed) RSS of further cycles (`--held-cycles`).
        later_cycles: Vec<(u64, u64)>,
        open_secs: f64,
        err: u64,
    }

    fn pct(sorted: &[i64], p: f64) -> i64 {
        if sorted.is_empty() {
            return 0;
        }
        let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[idx.min(sorted.len() - 1)]
    }

    fn ms(ns_or_us: i64, div: f64) -> String {
        format!("{:.2}", ns_or_us as f64 / div)
    }

    fn signed_ms(v: i64, div: f64) -> String {
        format!("{:+.2}", v as f64 / div)
    }

    // ---- scenario 1/2: closed loop request/response ----------------------

    struct LoopOut {
        ok: u64,
        err: u64,
        lats_us: Vec<i64>,
    }

    async fn closed_loop_conn(addr: SocketAddr, req: Bytes, deadline: Instant) -> LoopOut {
        let mut out = LoopOut {
            ok: 0,
            err: 0,
            lats_us: Vec::with_capacity(65536),
        };
        let mut conn: Option<Http> = None;
        let mut n = 0u64;
        while Instant::now() < deadline && n < MAX_REQS_PER_CONN {
            n += 1;
            let mut c = match conn.take() {
                Some(c) => c,
                None => match Http::connect(addr).await {
                    Ok(c) => c,
                    Err(_) => {
                        out.err += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let t0 = Instant::now();
            match tokio::time::timeout(Duration::from_secs(10), c.round_trip(&req)).await {
                Ok(Ok((status, close))) => {
                    if status == 200 {
                        out.ok += 1;
                        out.lats_us.push(t0.elapsed().as_micros() as i64);
                    } else {
                        out.err += 1;
                    }
                    if !close {
                        conn = Some(c);
                    }
                }
                _ => {
                    out.err += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        out
    }

    async fn closed_loop(
        addr: SocketAddr,
        req: &Bytes,
        conns: usize,
        dur: Duration,
    ) -> (LoopOut, Duration) {
        let start = Instant::now();
        let deadline = start + dur;
        let mut set = JoinSet::new();
        for _ in 0..conns {
            set.spawn(closed_loop_conn(addr, req.clone(), deadline));
        }
        let mut all = LoopOut {
            ok: 0,
            err: 0,
            lats_us: Vec::new(),
        };
        while let Some(r) = set.join_next().await {
            if let Ok(o) = r {
                all.ok += o.ok;
                all.err += o.err;
                all.lats_us.extend(o.lats_us);
            } else {
                all.err += 1;
            }
        }
        (all, start.elapsed())
    }

    async fn scenario_rr(env: &Env, t: &Target, cfg: &Cfg, req: &Bytes) -> RrRow {
        let _ = closed_loop(t.addr, req, cfg.conns, cfg.warm).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c0 = procfs::snap(&t.pids);
        let m0 = procfs::cpu_sum(&[env.mock_pid]);
        let (mut out, el) = closed_loop(t.addr, req, cfg.conns, cfg.dur).await;
        let c = procfs::snap(&t.pids).since(c0);
        let m1 = procfs::cpu_sum(&[env.mock_pid]);
        out.lats_us.sort_unstable();
        let k = (out.ok.max(1)) as f64 / 1000.0;
        let n = out.ok.max(1) as f64;
        RrRow {
            label: t.label.clone(),
            ok: out.ok,
            err: out.err,
            rps: out.ok as f64 / el.as_secs_f64(),
            p50_us: pct(&out.lats_us, 50.0),
            p99_us: pct(&out.lats_us, 99.0),
            proxy_ms_per_1k: (t.kind == Kind::Proxy).then(|| env.ms(c.ticks) / k),
            mock_ms_per_1k: env.ms(m1 - m0) / k,
            proxy_diag: (t.kind == Kind::Proxy).then(|| (c.writes as f64 / n, c.ctx as f64 / n)),
        }
    }

    // ---- scenario 3: SSE per-chunk latency -------------------------------

    struct StreamOut {
        lats: Vec<i64>,
        ttfc: Option<i64>,
        chunks: u64,
        streams: u64,
        err: u64,
    }

    /// One stream: waits until `start_at`, sends the request, reads it all.
    async fn sse_one(
        mut c: Http,
        req: Bytes,
        start_at: tokio::time::Instant,
        cap: usize,
        limit: Duration,
    ) -> StreamOut {
        tokio::time::sleep_until(start_at).await;
        let mut out = StreamOut {
            lats: Vec::new(),
            ttfc: None,
            chunks: 0,
            streams: 1,
            err: 0,
        };
        let sent = now_ns();
        let mut rd = SseReader::new(true, cap);
        let res = tokio::time::timeout(limit, async {
            c.s.write_all(&req).await?;
            let h = c.read_head().await?;
            if h.status != 200 {
                return Err(bad(format!("status {}", h.status)));
            }
            c.read_body(h.kind, |d, ts| rd.feed(d, ts)).await
        })
        .await;
        if !matches!(res, Ok(Ok(()))) || !rd.done {
            out.err += 1;
        }
        out.ttfc = rd.first_recv_ns.map(|f| f - sent);
        out.chunks = rd.chunks;
        out.lats = rd.lats;
        out
    }

    /// Returns all streams' figures and the times to first chunk (ns).
    async fn sse_round(
        addr: SocketAddr,
        streams: usize,
        chunks: u64,
        gap_ms: u64,
        stagger: bool,
    ) -> (StreamOut, Vec<i64>) {
        let body = chat_body(true);
        let req = post_req(
            &format!("/api/chat/completions?chunks={chunks}&gap_ms={gap_ms}"),
            "text/event-stream",
            &body,
        );
        let mut all = StreamOut {
            lats: Vec::with_capacity(streams * chunks as usize),
            ttfc: None,
            chunks: 0,
            streams: 0,
            err: 0,
        };
        let mut ttfcs = Vec::new();
        // Connect all first so that connection set-up is not in the figures.
        let mut conns = Vec::with_capacity(streams);
        for _ in 0..streams {
            match Http::connect(addr).await {
                Ok(c) => conns.push(c),
                Err(_) => all.err += 1,
            }
        }
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        // Either all streams start together (their chunks come in bursts of
        // `streams`), or the starts are spread evenly over one gap.
        let stagger = if stagger {
            Duration::from_micros(gap_ms * 1000 / streams.max(1) as u64)
        } else {
            Duration::ZERO
        };
        let limit = Duration::from_millis(5000 + chunks * gap_ms * 3);
        let mut set = JoinSet::new();
        for (i, c) in conns.into_iter().enumerate() {
            set.spawn(sse_one(
                c,
                req.clone(),
                start + stagger * i as u32,
                chunks as usize,
                limit,
            ));
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(o) => {
                    all.chunks += o.chunks;
                    all.streams += o.streams;
                    all.err += o.err;
                    all.lats.extend(o.lats);
                    if let Some(t) = o.ttfc {
                        ttfcs.push(t);
                    }
                }
                Err(_) => all.err += 1,
            }
        }
        (all, ttfcs)
    }

    /// One measured SSE round against `t`, added to `acc`. The first round
    /// of a target is preceded by a short warm-up round that fills the
    /// proxies' upstream connection pools.
    async fn scenario_sse_round(t: &Target, cfg: &Cfg, stagger: bool, acc: &mut SseAcc) {
        if acc.expected == 0 {
            let _ = sse_round(t.addr, cfg.sse_streams, 2, 0, false).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (mut out, ttfc) = sse_round(
            t.addr,
            cfg.sse_streams,
            cfg.sse_chunks,
            cfg.sse_gap_ms,
            stagger,
        )
        .await;
        out.lats.sort_unstable();
        acc.round_p99.push(pct(&out.lats, 99.0));
        acc.lats.extend(out.lats);
        acc.ttfc.extend(ttfc);
        acc.chunks += out.chunks;
        acc.expected += cfg.sse_streams as u64 * cfg.sse_chunks;
        acc.err += out.err;
    }

    // ---- scenario 4: SSE throughput --------------------------------------

    async fn tput_worker(addr: SocketAddr, req: Bytes, deadline: Instant) -> StreamOut {
        let mut out = StreamOut {
            lats: Vec::new(),
            ttfc: None,
            chunks: 0,
            streams: 0,
            err: 0,
        };
        let mut conn: Option<Http> = None;
        let mut n = 0u64;
        while Instant::now() < deadline && n < MAX_REQS_PER_CONN {
            n += 1;
            let mut c = match conn.take() {
                Some(c) => c,
                None => match Http::connect(addr).await {
                    Ok(c) => c,
                    Err(_) => {
                        out.err += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let mut rd = SseReader::new(false, 0);
            let res = tokio::time::timeout(Duration::from_secs(10), async {
                c.s.write_all(&req).await?;
                let h = c.read_head().await?;
                if h.status != 200 {
                    return Err(bad(format!("status {}", h.status)));
                }
                c.read_body(h.kind, |d, ts| rd.feed(d, ts)).await?;
                Ok(h.close)
            })
            .await;
            out.chunks += rd.chunks;
            match res {
                Ok(Ok(close)) if rd.done => {
                    out.streams += 1;
                    if !close {
                        conn = Some(c);
                    }
                }
                _ => {
                    out.err += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        out
    }

    async fn tput_run(
        addr: SocketAddr,
        streams: usize,
        chunks: u64,
        dur: Duration,
    ) -> (StreamOut, Duration) {
        let body = chat_body(true);
        let req = post_req(
            &format!("/api/chat/completions?chunks={chunks}&gap_ms=0"),
            "text/event-stream",
            &body,
        );
        let start = Instant::now();
        let deadline = start + dur;
        let mut set = JoinSet::new();
        for _ in 0..streams {
            set.spawn(tput_worker(addr, req.clone(), deadline));
        }
        let mut all = StreamOut {
            lats: Vec::new(),
            ttfc: None,
            chunks: 0,
            streams: 0,
            err: 0,
        };
        while let Some(r) = set.join_next().await {
            match r {
                Ok(o) => {
                    all.chunks += o.chunks;
                    all.streams += o.streams;
                    all.err += o.err;
                }
                Err(_) => all.err += 1,
            }
        }
        (all, start.elapsed())
    }

    async fn scenario_tput(env: &Env, t: &Target, cfg: &Cfg) -> TputRow {
        let _ = tput_run(t.addr, cfg.sse_streams, cfg.tput_chunks, cfg.warm).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c0 = procfs::snap(&t.pids);
        let m0 = procfs::cpu_sum(&[env.mock_pid]);
        let (out, el) = tput_run(t.addr, cfg.sse_streams, cfg.tput_chunks, cfg.tput_dur).await;
        let c = procfs::snap(&t.pids).since(c0);
        let m1 = procfs::cpu_sum(&[env.mock_pid]);
        let n = out.chunks.max(1) as f64;
        TputRow {
            label: t.label.clone(),
            chunks: out.chunks,
            streams: out.streams,
            cps: out.chunks as f64 / el.as_secs_f64(),
            proxy_us_per_chunk: (t.kind == Kind::Proxy).then(|| env.ms(c.ticks) * 1000.0 / n),
            mock_us_per_chunk: env.ms(m1 - m0) * 1000.0 / n,
            err: out.err,
            proxy_diag: (t.kind == Kind::Proxy).then(|| (c.writes as f64 / n, c.ctx as f64 / n)),
        }
    }

    // ---- scenario 5: held streams ----------------------------------------

    async fn open_held(addr: SocketAddr, req: Bytes) -> io::Result<TcpStream> {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&req).await?;
        // Read only the head and the first chunk ("data: hello").
        let mut buf = Vec::with_capacity(1024);
        let mut tmp = [0u8; 1024];
        loop {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            buf.extend_from_slice(&tmp[..n]);
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                if !buf.starts_with(b"HTTP/1.1 200") && !buf.starts_with(b"HTTP/1.0 200") {
                    return Err(bad(format!(
                        "status line {:?}",
                        String::from_utf8_lossy(&buf[..p.min(40)])
                    )));
                }
                if find(&buf[p..], b"hello").is_some() {
                    return Ok(s);
                }
            }
            if buf.len() > 65536 {
                return Err(bad("no first chunk in 64 KiB"));
            }
        }
    }

    async fn scenario_held(env: &Env, t: &Target, cfg: &Cfg) -> HeldRow {
        let pids: Vec<u32> = if t.kind == Kind::Proxy {
            t.pids.clone()
        } else {
            vec![env.mock_pid]
        };
        let mut row = held_cycle(&pids, t, cfg).await;
        for _ in 1..cfg.held_cycles {
            let r = held_cycle(&pids, t, cfg).await;
            row.later_cycles.push((r.rss_held_kib, r.rss_closed_kib));
        }
        row
    }

    async fn held_cycle(pids: &[u32], t: &Target, cfg: &Cfg) -> HeldRow {
        let fds_before = procfs::fd_count(pids);
        let rss_before = procfs::rss_kib(pids);
        let req = get_req(&format!("/slow?hold_s={}", cfg.hold_s));
        let sem = Arc::new(tokio::sync::Semaphore::new(256));
        let start = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..cfg.held {
            let sem = sem.clone();
            let req = req.clone();
            let addr = t.addr;
            set.spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .map_err(|_| bad("semaphore closed"))?;
                tokio::time::timeout(Duration::from_secs(15), open_held(addr, req))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
            });
        }
        let mut held = Vec::with_capacity(cfg.held);
        let mut err = 0u64;
        let mut first_err: Option<String> = None;
        let until = tokio::time::Instant::now() + cfg.held_limit;
        loop {
            match tokio::time::timeout_at(until, set.join_next()).await {
                Ok(Some(Ok(Ok(s)))) => held.push(s),
                Ok(Some(Ok(Err(e)))) => {
                    err += 1;
                    first_err.get_or_insert_with(|| e.to_string());
                }
                Ok(Some(Err(_))) => err += 1,
                Ok(None) => break,
                Err(_) => {
                    err += set.len() as u64;
                    set.abort_all();
                    break;
                }
            }
        }
        let open_secs = start.elapsed().as_secs_f64();
        if let Some(e) = first_err {
            eprintln!(
                "  held streams via {}: {err} failed, first error: {e}",
                t.label
            );
        }
        // Let the proxy settle, then read its memory while all are held.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let rss_held = procfs::rss_kib(pids);
        let opened = held.len();
        drop(held);
        drop(set);
        // Wait (bounded) until the proxy closed those connections again.
        let drain_until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < drain_until && procfs::fd_count(pids) > fds_before + 32 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_closed = procfs::rss_kib(pids);
        HeldRow {
            label: t.label.clone(),
            opened,
            wanted: cfg.held,
            rss_before_kib: rss_before,
            rss_held_kib: rss_held,
            kib_per_stream: (rss_held as f64 - rss_before as f64) / opened.max(1) as f64,
            rss_closed_kib: rss_closed,
            later_cycles: Vec::new(),
            open_secs,
            err,
        }
    }

    // ---- process start-up ------------------------------------------------

    async fn start_mock(tmp: &Path, pin: bool) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let portfile = tmp.join("mock.port");
        let log = tmp.join("mock.log");
        let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
        let mut child = pinned(pin, 1, &exe)
            .arg("--mock-upstream")
            .arg(&portfile)
            .stdin(Stdio::piped())
            .stdout(o)
            .stderr(e)
            .spawn()
            .map_err(|e| format!("spawn mock: {e}"))?;
        let stdin = child.stdin.take();
        let p = Proc {
            name: "mock".into(),
            child,
            _stdin: stdin,
            term_grace: None,
            extra: Vec::new(),
            log,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(s) = std::fs::read_to_string(&portfile) {
                if s.trim().parse::<u16>().is_ok() {
                    return Ok(p);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("mock upstream did not start".into())
    }

    fn mock_port(tmp: &Path) -> u16 {
        std::fs::read_to_string(tmp.join("mock.port"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn start_llmgate(
        bin: &Path,
        tmp: &Path,
        tag: &str,
        mock_port: u16,
        access_log: bool,
        pin: bool,
    ) -> Result<(Proc, SocketAddr), String> {
        // The access log is written at info level, so that variant keeps
        // everything else at warn but lets the `llmgate::access` lines out.
        let level = if access_log {
            "warn,llmgate::access=info"
        } else {
            "warn"
        };
        let port = free_port().map_err(|e| e.to_string())?;
        let admin = free_port().map_err(|e| e.to_string())?;
        let cfg = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\n\
             [log]\nlevel = \"{level}\"\naccess_log = {access_log}\n\n\
             [[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:{mock_port}\"\n\n\
             [[routes]]\npath_prefix = \"/\"\nupstream = \"mock\"\n"
        );
        let cfg_path = tmp.join(format!("{tag}.toml"));
        std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
        let log = tmp.join(format!("{tag}.log"));
        let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
        let child = pinned(pin, 1, bin)
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut p = Proc {
            name: tag.into(),
            child,
            _stdin: None,
            term_grace: None,
            extra: Vec::new(),
            log,
        };
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = p.exited() {
                return Err(format!(
                    "llmgate exited during start-up ({st}): {}",
                    p.log_tail(10)
                ));
            }
            if let Ok((200, _)) = http_get(admin_addr, "/readyz", Duration::from_secs(1)).await {
                break;
            }
            if Instant::now() > until {
                return Err(format!(
                    "llmgate /readyz not 200 within 20 s: {}",
                    p.log_tail(10)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((p, format!("127.0.0.1:{port}").parse().expect("addr")))
    }

    fn nginx_bin() -> Option<PathBuf> {
        [
            "/usr/sbin/nginx",
            "/usr/bin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    }

    fn nginx_version(bin: &Path) -> String {
        Command::new(bin)
            .arg("-v")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .map(|s| s.trim_start_matches("nginx version: ").to_string())
            .unwrap_or_else(|| "?".into())
    }

    async fn start_nginx(
        bin: &Path,
        tmp: &Path,
        mock_port: u16,
        pin: bool,
        nofile: u64,
    ) -> Result<(Proc, SocketAddr), String> {
        let dir = tmp.join("nginx");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\n\
             worker_rlimit_nofile {nofile};\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 30000; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 gzip off;\n\
             \x20 tcp_nodelay on;\n\
             \x20 keepalive_requests 10000000;\n\
             \x20 keepalive_timeout 75s;\n\
             \x20 client_body_temp_path {d}/client_body;\n\
             \x20 proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 upstream mock {{\n\
             \x20   server 127.0.0.1:{mock_port};\n\
             \x20   keepalive 64;\n\
             \x20   keepalive_requests 10000000;\n\
             \x20 }}\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port} backlog=4096;\n\
             \x20   location / {{\n\
             \x20     proxy_pass http://mock;\n\
             \x20     proxy_http_version 1.1;\n\
             \x20     proxy_set_header Connection \"\";\n\
             \x20     proxy_buffering off;\n\
             \x20     proxy_request_buffering off;\n\
             \x20     proxy_buffer_size 16k;\n\
             \x20     proxy_buffers 4 16k;\n\
             \x20     proxy_read_timeout 600s;\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let log = dir.join("stderr.log");
        let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
        let child = pinned(pin, 1, bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .map_err(|e| format!("spawn nginx: {e}"))?;
        let mut p = Proc {
            name: "nginx".into(),
            child,
            _stdin: None,
            term_grace: Some(Duration::from_secs(3)),
            extra: Vec::new(),
            log: dir.join("error.log"),
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = p.exited() {
                return Err(format!("nginx exited ({st}): {}", p.log_tail(10)));
            }
            if let Ok((200, _)) = http_get(addr, "/api/models", Duration::from_secs(1)).await {
                break;
            }
            if Instant::now() > until {
                return Err(format!(
                    "nginx not answering within 10 s: {}",
                    p.log_tail(10)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.extra = procfs::children(p.pid());
        Ok((p, addr))
    }

    // ---- facts and report --------------------------------------------------

    fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "?".into())
    }

    fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    fn fmt_opt(v: Option<f64>, prec: usize) -> String {
        match v {
            Some(x) => format!("{x:.prec$}"),
            None => "-".into(),
        }
    }

    fn check_alive(procs: &mut [Proc], targets: &mut [Target], report: &mut String) {
        for t in targets.iter_mut() {
            if t.dead.is_some() {
                continue;
            }
            if let Some(i) = t.proc_idx {
                if let Some(st) = procs[i].exited() {
                    let msg = format!(
                        "{} exited ({st}); log tail:\n{}",
                        t.label,
                        procs[i].log_tail(20)
                    );
                    eprintln!("!! {msg}");
                    let _ = writeln!(report, "\n**{} died during the run** ({st}).", t.label);
                    t.dead = Some(msg);
                }
            }
        }
    }

    pub async fn run(opts: Opts) -> i32 {
        let cfg = Cfg::new(&opts);
        let pin = pinning_available();
        let env_clk = procfs::clk_tck();
        let tmp = match tempfile::Builder::new().prefix("llmgate-load-").tempdir() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tempdir: {e}");
                return 1;
            }
        };
        {
            use std::os::unix::fs::PermissionsExt;
            // nginx workers (user nobody when started as root) must reach it.
            let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755));
        }
        let nofile = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| {
                        l.split_whitespace()
                            .nth(3)
                            .and_then(|v| v.parse::<u64>().ok())
                    })
            })
            .unwrap_or(1024);
        let mut cfg = cfg;
        // Each held stream costs the client one fd, and the bench owns 3 targets
        // at once only sequentially; keep a margin.
        let max_held = (nofile.saturating_sub(512)) as usize;
        if cfg.held > max_held {
            eprintln!(
                "RLIMIT_NOFILE is {nofile}: held streams cut from {} to {max_held}",
                cfg.held
            );
            cfg.held = max_held;
        }

        let mut procs: Vec<Proc> = Vec::new();
        let mock = match start_mock(tmp.path(), pin).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let env = Env {
            clk_tck: env_clk,
            mock_pid: mock.pid(),
        };
        procs.push(mock);
        let mport = mock_port(tmp.path());
        let mock_addr: SocketAddr = format!("127.0.0.1:{mport}").parse().expect("addr");
        let mut targets = vec![Target {
            label: "direct".into(),
            addr: mock_addr,
            kind: Kind::Direct,
            pids: Vec::new(),
            proc_idx: None,
            rr_only: false,
            dead: None,
            idle_rss_kib: 0,
        }];
        let mut problems: Vec<String> = Vec::new();

        // llmgate: plain, and with the access log on (request/response rows only).
        let bin = llmgate_bin();
        let mut llmgate_version = String::from("not measured");
        match &bin {
            Some(bin) if bin.exists() => {
                llmgate_version =
                    cmd_out(&bin.display().to_string(), &["--version"]).unwrap_or_default();
                for (tag, label, access, rr_only) in [
                    ("llmgate", "llmgate", false, false),
                    ("llmgate-log", "llmgate+accesslog", true, true),
                ] {
                    match start_llmgate(bin, tmp.path(), tag, mport, access, pin).await {
                        Ok((p, addr)) => {
                            // Sanity check: the model list must come through intact.
                            match http_get(addr, "/api/models", Duration::from_secs(5)).await {
                                Ok((200, b)) if b.starts_with(b"{\"object\":\"list\"") => {}
                                other => {
                                    let msg = match other {
                                        Ok((s, b)) => format!(
                                            "{label}: GET /api/models gave {s}: {}",
                                            String::from_utf8_lossy(&b[..b.len().min(200)])
                                        ),
                                        Err(e) => format!("{label}: GET /api/models failed: {e}"),
                                    };
                                    eprintln!("!! {msg}");
                                    problems.push(msg);
                                }
                            }
                            let pid = p.pid();
                            procs.push(p);
                            targets.push(Target {
                                label: label.into(),
                                addr,
                                kind: Kind::Proxy,
                                pids: vec![pid],
                                proc_idx: Some(procs.len() - 1),
                                rr_only,
                                dead: None,
                                idle_rss_kib: 0,
                            });
                        }
                        Err(e) => {
                            eprintln!("!! {label} not measured: {e}");
                            problems.push(format!("{label} not measured: {e}"));
                        }
                    }
                }
            }
            Some(bin) => problems.push(format!("llmgate binary {} not found", bin.display())),
            None => problems.push("LLMGATE_BIN not set: llmgate not measured".into()),
        }

        let mut nginx_ver = String::from("not installed");
        match nginx_bin() {
            Some(nb) => {
                nginx_ver = nginx_version(&nb);
                match start_nginx(&nb, tmp.path(), mport, pin, nofile).await {
                    Ok((p, addr)) => {
                        let mut pids = vec![p.pid()];
                        pids.extend(p.extra.iter().copied());
                        procs.push(p);
                        targets.push(Target {
                            label: "nginx".into(),
                            addr,
                            kind: Kind::Proxy,
                            pids,
                            proc_idx: Some(procs.len() - 1),
                            rr_only: false,
                            dead: None,
                            idle_rss_kib: 0,
                        });
                    }
                    Err(e) => {
                        eprintln!("!! nginx not measured: {e}");
                        problems.push(format!("nginx not measured: {e}"));
                    }
                }
            }
            None => problems.push("nginx not installed (apt-get install -y nginx)".into()),
        }

        tokio::time::sleep(Duration::from_millis(500)).await;
        for t in targets.iter_mut() {
            if t.kind == Kind::Proxy {
                t.idle_rss_kib = procfs::rss_kib(&t.pids);
            }
        }

        let mut report = String::new();
        let commit = llmgate_src_dir()
            .and_then(|d| {
                cmd_out(
                    "git",
                    &[
                        "-C",
                        &d.display().to_string(),
                        "log",
                        "-1",
                        "--format=%h %cI %s",
                    ],
                )
            })
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(report, "### Machine\n");
        let _ = writeln!(report, "- CPUs: {} x {}", cpu_count(), cpu_model());
        let _ = writeln!(
            report,
            "- kernel: {}",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
        );
        let _ = writeln!(
            report,
            "- date: {}",
            cmd_out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_default()
        );
        let _ = writeln!(report, "- nginx: {nginx_ver}");
        let _ = writeln!(report, "- llmgate: {llmgate_version} (commit {commit})");
        let _ = writeln!(
            report,
            "- pinning: {}; RLIMIT_NOFILE {nofile}; CLK_TCK {}",
            if pin {
                "load generator on CPU 0, mock + proxies on CPU 1"
            } else {
                "none (taskset missing or 1 CPU)"
            },
            env.clk_tck
        );
        let _ = writeln!(
            report,
            "- mode: {}; load average at start: {}",
            if opts.quick { "--quick" } else { "full" },
            loadavg()
        );
        print!("{report}");

        // ---- 5: held streams (first, on fresh processes) ----
        let mut held_rows = Vec::new();
        if opts.wants("held") {
            eprintln!("== held streams: {} per target", cfg.held);
            for i in 0..targets.len() {
                check_alive(&mut procs, &mut targets, &mut report);
                let t = &targets[i];
                if t.rr_only || t.dead.is_some() {
                    continue;
                }
                let r = scenario_held(&env, t, &cfg).await;
                eprintln!(
                    "  {:<18} {}/{} held, {:.1} KiB/stream",
                    r.label, r.opened, r.wanted, r.kib_per_stream
                );
                held_rows.push(r);
            }
        }

        // ---- 1 and 2: request/response ----
        let models_req = get_req("/api/models");
        let chat_req = post_req(
            "/api/chat/completions",
            "application/json",
            &chat_body(false),
        );
        let mut rr_tables: Vec<(String, Vec<RrRow>)> = Vec::new();
        for (name, title, req) in [
            ("models", "GET /api/models (12 KB JSON)", &models_req),
            (
                "chat",
                "POST /api/chat/completions, non-stream (1 KB body, 0.6 KB answer)",
                &chat_req,
            ),
        ] {
            if !opts.wants(name) {
                continue;
            }
            eprintln!("== {title}");
            let mut rows = Vec::new();
            for i in 0..targets.len() {
                check_alive(&mut procs, &mut targets, &mut report);
                let t = &targets[i];
                if t.dead.is_some() {
                    continue;
                }
                let r = scenario_rr(&env, t, &cfg, req).await;
                eprintln!("  {:<18} {:>8.0} req/s, {} errors", r.label, r.rps, r.err);
                rows.push(r);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            rr_tables.push((
                format!(
                    "{title}, {} connections, {} s",
                    cfg.conns,
                    cfg.dur.as_secs_f64()
                ),
                rows,
            ));
        }

        // ---- 3: SSE latency, synchronized starts, then staggered starts ----
        // Rounds go round-robin over the targets so that a noisy moment of the
        // machine does not land on one target only.
        let mut sse_tables: Vec<(bool, Vec<SseRow>)> = Vec::new();
        if opts.wants("sse") {
            for stagger in [false, true] {
                eprintln!(
                    "== SSE latency, {}, {} rounds",
                    if stagger {
                        "staggered starts"
                    } else {
                        "all streams start together"
                    },
                    cfg.sse_rounds
                );
                let mut accs: Vec<SseAcc> = targets.iter().map(|_| SseAcc::default()).collect();
                for _round in 0..cfg.sse_rounds {
                    for i in 0..targets.len() {
                        check_alive(&mut procs, &mut targets, &mut report);
                        let t = &targets[i];
                        if t.rr_only || t.dead.is_some() {
                            continue;
                        }
                        scenario_sse_round(t, &cfg, stagger, &mut accs[i]).await;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                let mut rows = Vec::new();
                for (t, acc) in targets.iter().zip(accs) {
                    if acc.expected == 0 {
                        continue;
                    }
                    let r = acc.row(&t.label);
                    eprintln!(
                        "  {:<18} p50 {:.2} ms p99 {:.2} ms (rounds {:.2}..{:.2}), {}/{} chunks, {} errors",
                        r.label,
                        r.lat_p50 as f64 / 1e6,
                        r.lat_p99 as f64 / 1e6,
                        r.lat_p99_min as f64 / 1e6,
                        r.lat_p99_max as f64 / 1e6,
                        r.chunks,
                        r.expected,
                        r.err
                    );
                    rows.push(r);
                }
                sse_tables.push((stagger, rows));
            }
        }
        let sse_rows: &[SseRow] = sse_tables
            .iter()
            .find(|(stagger, _)| !stagger)
            .map(|(_, rows)| rows.as_slice())
            .unwrap_or(&[]);

        // ---- 4: SSE throughput ----
        let mut tput_rows = Vec::new();
        if opts.wants("tput") {
            eprintln!("== SSE throughput");
            for i in 0..targets.len() {
                check_alive(&mut procs, &mut targets, &mut report);
                let t = &targets[i];
                if t.rr_only || t.dead.is_some() {
                    continue;
                }
                let r = scenario_tput(&env, t, &cfg).await;
                eprintln!(
                    "  {:<18} {:>9.0} chunks/s, {} errors",
                    r.label, r.cps, r.err
                );
                tput_rows.push(r);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        check_alive(&mut procs, &mut targets, &mut report);

        // ---- report ----
        let mut out = String::new();
        let direct_of = |rows: &[RrRow]| rows.iter().find(|r| r.label == "direct").map(|r| r.rps);
        for (title, rows) in &rr_tables {
            let _ = writeln!(out, "\n#### {title}\n");
            let _ = writeln!(
                out,
                "| target | req/s | vs direct | p50 ms | p99 ms | proxy CPU ms / 1k req | mock CPU ms / 1k req | ok | errors |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            let d = direct_of(rows);
            for r in rows {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {} |",
                    r.label,
                    r.rps,
                    d.map(|d| format!("{:.2}", r.rps / d))
                        .unwrap_or_else(|| "-".into()),
                    ms(r.p50_us, 1e3),
                    ms(r.p99_us, 1e3),
                    fmt_opt(r.proxy_ms_per_1k, 1),
                    r.mock_ms_per_1k,
                    r.ok,
                    r.err
                );
            }
        }
        for (stagger, rows) in &sse_tables {
            let _ = writeln!(
                out,
                "\n#### SSE, {} streams x {} chunks, {} ms apart, {} rounds per target, {}\n",
                cfg.sse_streams,
                cfg.sse_chunks,
                cfg.sse_gap_ms,
                cfg.sse_rounds,
                if *stagger {
                    "starts spread evenly over one gap"
                } else {
                    "all streams start together (chunks come in bursts)"
                }
            );
            let _ = writeln!(
                out,
                "| target | chunk latency p50 ms | p99 ms | p99 of single rounds ms | added p50 ms | added p99 ms | first chunk p50 ms | p99 ms | added first p50 ms | added first p99 ms | chunks | errors |"
            );
            let _ = writeln!(
                out,
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            let d = rows.iter().find(|r| r.label == "direct");
            for r in rows {
                let add = |f: fn(&SseRow) -> i64| match d {
                    Some(d) if r.label != "direct" => signed_ms(f(r) - f(d), 1e6),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {}/{} | {} |",
                    r.label,
                    ms(r.lat_p50, 1e6),
                    ms(r.lat_p99, 1e6),
                    ms(r.lat_p99_min, 1e6),
                    ms(r.lat_p99_max, 1e6),
                    add(|r| r.lat_p50),
                    add(|r| r.lat_p99),
                    ms(r.ttfc_p50, 1e6),
                    ms(r.ttfc_p99, 1e6),
                    add(|r| r.ttfc_p50),
                    add(|r| r.ttfc_p99),
                    r.chunks,
                    r.expected,
                    r.err
                );
            }
        }
        if !tput_rows.is_empty() {
            let _ = writeln!(
                out,
                "\n#### SSE throughput, {} streams x {} chunks, 0 ms apart, {} s\n",
                cfg.sse_streams,
                cfg.tput_chunks,
                cfg.tput_dur.as_secs_f64()
            );
            let _ = writeln!(
                out,
                "| target | chunks/s | vs direct | proxy CPU µs / chunk | mock CPU µs / chunk | chunks | streams done | errors |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
            let d = tput_rows
                .iter()
                .find(|r| r.label == "direct")
                .map(|r| r.cps);
            for r in &tput_rows {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {} | {} | {:.2} | {} | {} | {} |",
                    r.label,
                    r.cps,
                    d.map(|d| format!("{:.2}", r.cps / d))
                        .unwrap_or_else(|| "-".into()),
                    fmt_opt(r.proxy_us_per_chunk, 2),
                    r.mock_us_per_chunk,
                    r.chunks,
                    r.streams,
                    r.err
                );
            }
        }
        if !held_rows.is_empty() {
            let _ = writeln!(
                out,
                "\n#### Held streams: {} concurrent `GET /slow` streams (run first, on fresh processes)\n",
                cfg.held
            );
            let _ = writeln!(
                out,
                "| target | held | RSS before MiB | RSS held MiB | KiB per held stream | RSS after closing MiB | time to open s | errors |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for r in &held_rows {
                let _ = writeln!(
                    out,
                    "| {}{} | {}/{} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                    r.label,
                    if r.label == "direct" { " (mock)" } else { "" },
                    r.opened,
                    r.wanted,
                    r.rss_before_kib as f64 / 1024.0,
                    r.rss_held_kib as f64 / 1024.0,
                    r.kib_per_stream,
                    r.rss_closed_kib as f64 / 1024.0,
                    r.open_secs,
                    r.err
                );
            }
        }
        for r in held_rows.iter().filter(|r| !r.later_cycles.is_empty()) {
            let cycles: Vec<String> = r
                .later_cycles
                .iter()
                .enumerate()
                .map(|(i, (h, c))| {
                    format!(
                        "cycle {}: held {:.1} MiB, closed {:.1} MiB",
                        i + 2,
                        *h as f64 / 1024.0,
                        *c as f64 / 1024.0
                    )
                })
                .collect();
            let _ = writeln!(out, "\n{} later cycles: {}.", r.label, cycles.join("; "));
        }

        // Where the proxy time goes: write calls and context switches.
        {
            let mut lines = Vec::new();
            for (title, rows) in &rr_tables {
                let short = title.split(',').next().unwrap_or(title);
                for r in rows {
                    if let Some((w, c)) = r.proxy_diag {
                        lines.push(format!(
                            "| {short} | {} | per request | {w:.2} | {c:.2} |",
                            r.label
                        ));
                    }
                }
            }
            for r in &tput_rows {
                if let Some((w, c)) = r.proxy_diag {
                    lines.push(format!(
                        "| SSE throughput | {} | per chunk | {w:.3} | {c:.3} |",
                        r.label
                    ));
                }
            }
            if !lines.is_empty() {
                let _ = writeln!(out, "\n#### Proxy system activity (from /proc/PID/io and /proc/PID/task/*/status)\n");
                let _ = writeln!(
                    out,
                    "| scenario | target | unit | write/writev calls | context switches |"
                );
                let _ = writeln!(out, "|---|---|---|---:|---:|");
                for l in lines {
                    let _ = writeln!(out, "{l}");
                }
            }
        }

        // Memory summary
        let _ = writeln!(out, "\n#### Proxy memory\n");
        let _ = writeln!(
            out,
            "| target | idle RSS MiB (after start) | RSS after suite MiB | threads |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|");
        for t in targets.iter().filter(|t| t.kind == Kind::Proxy) {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {} |",
                t.label,
                t.idle_rss_kib as f64 / 1024.0,
                if t.dead.is_some() {
                    "died".to_string()
                } else {
                    format!("{:.1}", procfs::rss_kib(&t.pids) as f64 / 1024.0)
                },
                t.pids
                    .iter()
                    .filter_map(|p| procfs::status_kib(*p, "Threads:"))
                    .sum::<u64>()
            );
        }

        for p in procs.iter().filter(|p| p.name == "llmgate-log") {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let _ =
                writeln!(
                out,
                "\nllmgate+accesslog wrote {} access-log lines ({:.1} MiB) to its stdout (a file).",
                text.lines().filter(|l| l.contains("llmgate::access")).count(),
                text.len() as f64 / (1024.0 * 1024.0)
            );
        }

        let _ = writeln!(out, "\nLoad average at the end: {}.", loadavg());

        // Targets
        let find_rr = |title_part: &str, label: &str| {
            rr_tables
                .iter()
                .find(|(t, _)| t.contains(title_part))
                .and_then(|(_, rows)| rows.iter().find(|r| r.label == label))
                .and_then(|r| r.proxy_ms_per_1k)
        };
        let _ = writeln!(out, "\n#### Targets\n");
        let _ = writeln!(out, "| target | llmgate | bound | met |");
        let _ = writeln!(out, "|---|---:|---:|---|");
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        for (part, what) in [
            ("/api/models", "CPU ms / 1k model-list requests ≤ nginx"),
            ("non-stream", "CPU ms / 1k chat requests ≤ nginx"),
        ] {
            let l = find_rr(part, "llmgate");
            let n = find_rr(part, "nginx");
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} |",
                fmt_opt(l, 1),
                fmt_opt(n, 1),
                verdict(l.zip(n).map(|(l, n)| l <= n))
            );
        }
        {
            let d = sse_rows.iter().find(|r| r.label == "direct");
            let added = |label: &str| {
                d.and_then(|d| {
                    sse_rows
                        .iter()
                        .find(|r| r.label == label)
                        .map(|r| (r.lat_p99 - d.lat_p99) as f64 / 1e6)
                })
            };
            let l = added("llmgate");
            let n = added("nginx");
            let _ = writeln!(
                out,
                "| added per-chunk latency p99 ms (streams started together) ≤ nginx | {} | {} | {} |",
                fmt_opt(l, 2),
                fmt_opt(n, 2),
                verdict(l.zip(n).map(|(l, n)| l <= n))
            );
        }
        {
            let l = held_rows
                .iter()
                .find(|r| r.label == "llmgate")
                .map(|r| r.kib_per_stream);
            let _ = writeln!(
                out,
                "| RSS per held stream KiB ≤ 16 | {} | 16 | {} |",
                fmt_opt(l, 1),
                verdict(l.map(|l| l <= 16.0))
            );
            let idle = targets
                .iter()
                .find(|t| t.label == "llmgate")
                .map(|t| t.idle_rss_kib as f64 / 1024.0);
            let _ = writeln!(
                out,
                "| idle RSS MiB ≤ 15 | {} | 15 | {} |",
                fmt_opt(idle, 1),
                verdict(idle.map(|i| i <= 15.0))
            );
        }
        for t in &targets {
            if let Some(d) = &t.dead {
                problems.push(d.clone());
            }
        }
        if !problems.is_empty() {
            let _ = writeln!(out, "\n#### Problems\n");
            for p in &problems {
                let _ = writeln!(out, "- {}", p.replace('\n', " / "));
            }
        }
        print!("{out}");
        drop(procs);
        if opts.keep {
            let kept = tmp.keep();
            eprintln!("kept configs and logs in {}", kept.display());
        }
        0
    }
}
