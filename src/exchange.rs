//! One request's bookkeeping: created when it arrives, carried by the response body, and
//! reported (access log line, stream metrics, in-flight count) when that body ends or drops.

use crate::access_log::{self, Line};
use crate::body::RequestTally;
use crate::headers::Peer;
use crate::state::Shared;
use http::{HeaderValue, Method, Uri};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    ClientCancel,
    UpstreamError,
    IdleTimeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::ClientCancel => "client_cancel",
            Self::UpstreamError => "upstream_error",
            Self::IdleTimeout => "idle_timeout",
        }
    }
}

pub struct Exchange {
    shared: Arc<Shared>,
    pub request_id: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    pub peer: Peer,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    /// Who asked (an identity name, never a credential), once authenticated.
    pub identity: Option<Arc<str>>,
    pub status: u16,
    pub start: Instant,
    pub head_at: Duration,
    first_byte: Option<Duration>,
    bytes_out: u64,
    pub request_tally: Option<Arc<RequestTally>>,
    pub outcome: Outcome,
    /// Set once the response is an upstream body, so it counts as an active stream.
    streaming: bool,
    /// The rate limit admission: its headers, and the stream slot given back on drop.
    pub limits: Option<crate::limits::Admission>,
}

impl Exchange {
    pub fn begin(
        shared: Arc<Shared>,
        request_id: HeaderValue,
        method: Method,
        uri: Uri,
        peer: Peer,
        start: Instant,
    ) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            shared,
            request_id,
            method,
            uri,
            peer,
            route: None,
            upstream: None,
            identity: None,
            status: 0,
            start,
            head_at: Duration::ZERO,
            first_byte: None,
            bytes_out: 0,
            request_tally: None,
            outcome: Outcome::Complete,
            streaming: false,
            limits: None,
        }
    }

    /// Marks the response head as sent and, for upstream bodies, the stream as active.
    pub fn respond(&mut self, status: u16, streaming: bool) {
        self.status = status;
        self.head_at = self.start.elapsed();
        if streaming {
            self.streaming = true;
            if let Some(up) = &self.upstream {
                self.shared
                    .metrics
                    .streams_active
                    .with_label_values(&[up])
                    .inc();
            }
        }
    }

    #[inline]
    pub fn on_data(&mut self, len: usize) {
        if self.first_byte.is_none() {
            self.first_byte = Some(self.start.elapsed());
        }
        self.bytes_out += len as u64;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let m = &self.shared.metrics;
        m.bytes_out.inc_by(self.bytes_out);
        let bytes_in = self
            .request_tally
            .as_ref()
            .map_or(0, |t| t.bytes.load(Ordering::Relaxed));
        m.bytes_in.inc_by(bytes_in);
        let draining = self.shared.is_draining();
        if self.streaming {
            if let Some(up) = &self.upstream {
                m.streams_active.with_label_values(&[up]).dec();
                m.stream_duration
                    .with_label_values(&[up])
                    .observe(elapsed.as_secs_f64());
                let reason = if draining && self.outcome == Outcome::ClientCancel {
                    "shutdown"
                } else {
                    self.outcome.as_str()
                };
                m.stream_ended.with_label_values(&[up, reason]).inc();
            }
        }
        if self.shared.access_log && access_log::enabled() {
            Line::emit(self.shared.log_format, |l| {
                l.str("request_id", self.request_id.to_str().unwrap_or("-"))
                    .str("peer", self.peer.ip_str())
                    .str("method", self.method.as_str())
                    .str("path", self.uri.path())
                    .str("route", self.route.as_deref().unwrap_or("-"))
                    .str("upstream", self.upstream.as_deref().unwrap_or("-"))
                    .str("identity", self.identity.as_deref().unwrap_or("-"))
                    .num("status", u64::from(self.status))
                    .num("bytes_in", bytes_in)
                    .num("bytes_out", self.bytes_out)
                    .ms("duration_ms", elapsed)
                    .ms("ttfb_ms", self.first_byte.unwrap_or(self.head_at))
                    .str("outcome", self.outcome.as_str());
            });
        }
        if self.shared.in_flight.fetch_sub(1, Ordering::Release) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}
