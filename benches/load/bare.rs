//! "hyper (bare)": the smallest reverse proxy on llmgate's stack (hyper 1 server, hyper-util's
//! pooled client, one current-thread tokio runtime), with none of llmgate's features: no
//! routing, auth, limits, metrics, logs, header work or body observers. It measures what the
//! stack itself costs, so llmgate's figures can be split into "stack" and "llmgate".

use crate::proc::Proc;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::path::Path;

/// The bare proxy process: forwards everything to 127.0.0.1:`upstream` until stdin closes.
pub fn run(portfile: &Path, upstream: u16) {
    crate::child::run("bare proxy", serve(portfile, upstream));
}

async fn serve(portfile: &Path, upstream: u16) -> io::Result<()> {
    let listener = crate::child::listen(portfile)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    let authority = format!("127.0.0.1:{upstream}");
    loop {
        let s = crate::child::accept(&listener).await;
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
    let args = ["--bare-proxy", "PORTFILE", &mock_port.to_string()].map(String::from);
    crate::child::start(tmp, pin, "bare", &args).await
}
