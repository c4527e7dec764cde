//! The serving loop: accept, serve HTTP/1.1 and h2c, and drain gracefully on shutdown.

use crate::config::{Config, ServerConfig};
use crate::framing::{Heads, Watched};
use crate::headers::Peer;
use crate::listener::Slots;
use crate::state::Shared;
use crate::{admin, app};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use pin_project_lite::pin_project;
use prometheus::IntGauge;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Both listeners bound and the state built; `run` serves until shutdown.
pub struct Server {
    shared: Arc<Shared>,
    proxy: TcpListener,
    admin: TcpListener,
    drain_timeout: Duration,
    builder: auto::Builder<TokioExecutor>,
    head_limit: usize,
    slots: Slots,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests, streams and upgraded connections still running when the budget ran out.
    pub cut: usize,
}

impl Server {
    pub async fn bind(config: &Config) -> io::Result<Self> {
        let s = &config.server;
        let bind = |addr: SocketAddr, key: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr} (server.{key}): {e}"),
                )
            })
        };
        let shared = Shared::new(config);
        let (builder, head_limit) = protocol(s);
        Ok(Self {
            proxy: bind(s.listen, "listen").await?,
            admin: bind(s.admin_listen, "admin_listen").await?,
            slots: Slots::new(s.max_connections, &shared.metrics),
            shared,
            drain_timeout: s.drain_timeout.0,
            builder,
            head_limit,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` resolves, then drains for at most `drain_timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> DrainReport {
        let Self {
            shared,
            proxy,
            admin,
            drain_timeout,
            builder,
            head_limit,
            slots,
        } = self;
        let admin_task = tokio::spawn(admin::serve(admin, shared.clone()));

        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                (stream, peer, slot) = slots.accept(&proxy) => {
                    let _ = stream.set_nodelay(true);
                    let sh = shared.clone();
                    let client = Peer::new(peer);
                    let heads = Heads::default();
                    let io = TokioIo::new(Watched::new(stream, heads.clone(), head_limit));
                    let svc = service_fn(move |mut req| {
                        heads.attach(&mut req);
                        let (sh, client) = (sh.clone(), client.clone());
                        // Boxed: hyper keeps the service future's slot for the connection's
                        // life; the large request future inside is freed once the head is out.
                        async move { Ok::<_, Infallible>(Box::pin(app::handle(sh, req, client)).await) }
                    });
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    let conn = graceful.watch(conn.into_owned());
                    let gauge = shared.metrics.connections_active.clone();
                    gauge.inc();
                    tokio::spawn(ConnTask {
                        conn,
                        stop: shared.hard_stop.clone().cancelled_owned(),
                        peer,
                        gauge,
                        _slot: slot,
                    });
                }
            }
        }

        // Readiness fails first, so load balancers stop sending; then the listener closes.
        shared.start_draining();
        drop(proxy);
        let in_flight = shared.in_flight.load(Ordering::Relaxed);
        tracing::info!(in_flight, budget = ?drain_timeout, "shutting down: draining in-flight requests");
        shared.upgrades.close();
        let drained = async {
            graceful.shutdown().await;
            wait_idle(&shared).await;
            shared.upgrades.wait().await;
        };
        let cut = match tokio::time::timeout(drain_timeout, drained).await {
            Ok(()) => 0,
            Err(_) => {
                let cut = shared.in_flight.load(Ordering::Relaxed)
                    + shared.metrics.websockets_active.get().max(0) as usize;
                shared.hard_stop.cancel();
                cut
            }
        };
        if cut == 0 {
            tracing::info!("drain complete: no request was cut");
        } else {
            tracing::warn!(
                cut,
                "drain budget spent: requests and streams still running were cut"
            );
        }
        admin_task.abort();
        DrainReport { cut }
    }
}

pin_project! {
    /// One client connection, until it ends or the drain budget runs out: then it is dropped,
    /// which aborts its response mid-body so the client knows it is incomplete. A named future
    /// rather than an `async` block with `select!`: the block held the connection twice (its
    /// capture and the select's copy), 3.9 KB per connection where this takes 2.
    struct ConnTask<C> {
        #[pin]
        conn: C,
        #[pin]
        stop: WaitForCancellationFutureOwned,
        peer: SocketAddr,
        gauge: IntGauge,
        _slot: OwnedSemaphorePermit,
    }

    impl<C> PinnedDrop for ConnTask<C> {
        fn drop(this: Pin<&mut Self>) {
            this.gauge.dec();
        }
    }
}

impl<C, E> Future for ConnTask<C>
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.stop.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        match ready!(this.conn.poll(cx)) {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(peer = %this.peer, error = %e, "client connection ended with an error")
            }
        }
        Poll::Ready(())
    }
}

/// hyper's HTTP/1 and HTTP/2 settings. Its own limits sit at twice llmgate's, so heads over
/// llmgate's limit get a JSON 431 from `guard` and only far larger ones hyper's bare 431.
/// Returns the builder and the head size the framing watcher follows.
fn protocol(s: &ServerConfig) -> (auto::Builder<TokioExecutor>, usize) {
    let head_limit = usize::try_from(s.max_header_bytes.0.saturating_mul(2)).unwrap_or(usize::MAX);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout.0)
        .max_headers(s.max_headers.saturating_mul(2))
        .max_buf_size(head_limit.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head_limit).unwrap_or(u32::MAX))
        // CVE-2023-44487 (rapid reset): a client that resets streams faster than they are
        // served, or keeps provoking stream errors, gets GOAWAY instead of unbounded work.
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS);
    let builder = if s.http2 {
        builder
    } else {
        builder.http1_only()
    };
    (builder, head_limit)
}

const MAX_PENDING_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 256;

async fn wait_idle(shared: &Shared) {
    loop {
        let notified = shared.idle.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.in_flight.load(Ordering::Acquire) == 0 {
            return;
        }
        notified.await;
    }
}
