//! WebSocket (and any HTTP/1.1 upgrade) passthrough: once both sides have switched
//! protocols, bytes are copied both ways until either side closes.

use crate::state::Shared;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

pub fn relay(
    shared: &Arc<Shared>,
    client: OnUpgrade,
    upstream: OnUpgrade,
    upstream_name: Arc<str>,
) {
    let stop = shared.hard_stop.clone();
    let sh = shared.clone();
    shared.upgrades.spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(upstream = %upstream_name, error = %e, "upgrade did not complete");
                return;
            }
        };
        sh.metrics.websockets_active.inc();
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            res = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = res {
                    tracing::debug!(upstream = %upstream_name, error = %e, "upgraded connection ended with an error");
                }
            }
            _ = stop.cancelled() => {}
        }
        sh.metrics.websockets_active.dec();
    });
}
