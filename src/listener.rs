//! Accepting client connections within bounds: at most `max_connections` served at once, and
//! accept errors (EMFILE, ENFILE, ECONNABORTED) survived instead of ending the loop.
//!
//! Beyond the limit llmgate stops accepting, so new connections wait in the kernel's listen
//! backlog (and are refused by the kernel once that is full) until a served one closes. Memory
//! and file descriptors stay bounded by the limit, whatever the clients do.

use crate::metrics::Metrics;
use prometheus::{IntCounter, IntGauge};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pauses after a failed accept: long enough not to spin while descriptors are exhausted,
/// short enough that a freed one is used soon.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub struct Slots {
    permits: Arc<Semaphore>,
    waited: IntCounter,
    accept_errors: IntCounter,
}

impl Slots {
    pub fn new(max_connections: usize, metrics: &Metrics) -> Self {
        let max = IntGauge::new(
            "llmgate_connections_max",
            "Client connections served at once ([server] max_connections).",
        )
        .expect("valid metric");
        max.set(i64::try_from(max_connections).unwrap_or(i64::MAX));
        let waited = IntCounter::new(
            "llmgate_connections_waited_total",
            "Times a new client connection had to wait for a free slot (max_connections reached).",
        )
        .expect("valid metric");
        let accept_errors = IntCounter::new(
            "llmgate_accept_errors_total",
            "Failed accepts on the proxy listener (e.g. out of file descriptors), retried.",
        )
        .expect("valid metric");
        for c in [
            Box::new(max) as Box<dyn prometheus::core::Collector>,
            Box::new(waited.clone()),
            Box::new(accept_errors.clone()),
        ] {
            metrics
                .registry
                .register(c)
                .expect("metric names are unique");
        }
        Self {
            permits: Arc::new(Semaphore::new(max_connections)),
            waited,
            accept_errors,
        }
    }

    /// The next client connection and its slot, which frees when the permit drops.
    pub async fn accept(
        &self,
        listener: &TcpListener,
    ) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.waited.inc();
                if self.waited.get() == 1 {
                    tracing::warn!("max_connections reached: new connections wait for a free slot");
                }
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => return (stream, peer, permit),
                Err(e) => {
                    self.accept_errors.inc();
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Raises the soft open-files limit to the hard one, so `max_connections` is not cut short by
/// a low default (often 1024), and warns when even that is too low for it: each served
/// connection may hold an upstream connection too.
pub fn raise_fd_limit(max_connections: usize) {
    let want = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(64);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < want => tracing::warn!(
            limit = n,
            max_connections,
            "the open file limit is below 2 x max_connections; beyond it accepts fail and are retried"
        ),
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}
