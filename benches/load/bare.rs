//! "hyper (bare)": the smallest reverse proxy on llmgate's stack (hyper 1 server, hyper-util's
//! pooled client, one current-thread tokio runtime), with none of llmgate's features: no
//! routing, auth, limits, metrics, logs, header work or body observers. It measures what the
//! stack itself costs, so llmgate's figures can be split into "stack" and "llmgate".

use crate::proc::{log_file, pinned, Proc};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::TcpSocket;

/// The bare proxy process: forwards everything to 127.0.0.1:`upstream` until stdin closes.
pub fn run(portfile: &Path, upstream: u16) {
    std::thread::spawn(|| {
        let mut b = [0u8; 64];
        let mut stdin = io::stdin();
        while let Ok(n) = stdin.read(&mut b) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bare proxy runtime");
    if let Err(e) = rt.block_on(serve(portfile, upstream)) {
        eprintln!("bare proxy: {e}");
        std::process::exit(1);
    }
}

async fn serve(portfile: &Path, upstream: u16) -> io::Result<()> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind("127.0.0.1:0".parse().expect("addr"))?;
    let listener = sock.listen(8192)?;
    let tmp = portfile.with_extension("tmp");
    std::fs::write(&tmp, listener.local_addr()?.port().to_string())?;
    std::fs::rename(&tmp, portfile)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    let authority = format!("127.0.0.1:{upstream}");
    loop {
        let (s, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        let (client, authority) = (client.clone(), authority.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(authority.as_str())
                    .path_and_query(pq)
                    .build();
                async move {
                    *req.uri_mut() = uri.map_err(io::Error::other)?;
                    client.request(req).await.map_err(io::Error::other)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

/// Starts this executable as the bare proxy in front of the mock and waits for its port.
pub async fn start_bare(
    tmp: &Path,
    pin: bool,
    mock_port: u16,
) -> Result<(Proc, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let portfile = tmp.join("bare.port");
    let log = tmp.join("bare.log");
    let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
    let child = pinned(pin, 1, &exe)
        .arg("--bare-proxy")
        .arg(&portfile)
        .arg(mock_port.to_string())
        .stdin(Stdio::piped())
        .stdout(o)
        .stderr(e)
        .spawn()
        .map_err(|e| format!("spawn bare proxy: {e}"))?;
    let p = Proc::new("hyper (bare)", child, log);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Some(port) = std::fs::read_to_string(&portfile)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            return Ok((p, SocketAddr::from(([127, 0, 0, 1], port))));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("bare proxy did not start".into())
}
