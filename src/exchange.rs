//! One request's bookkeeping: created when it arrives, carried by the response body, and
//! reported (access log line, stream and LLM metrics, in-flight count) when that body ends
//! or drops.

use crate::access_log::{self, Line};
use crate::body::RequestTally;
use crate::headers::Peer;
use crate::limits::UsageStrip;
use crate::observe::{Format, Timers, UsageObserver, UsageReport};
use crate::state::Shared;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Uri};
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
    sent_upstream: Option<Instant>,
    /// Watches a successful upstream body for model, content events and usage.
    usage: Option<UsageObserver>,
    /// TTFT and inter-token histograms for this response's model, resolved at first content.
    timers: Option<Timers>,
    /// The rate limit admission: its headers, the stream slot given back on drop, and the
    /// token reservation settled on drop.
    pub limits: Option<crate::limits::Admission>,
    /// Takes out the usage chunk llmgate asked for on the client's behalf.
    strip: Option<UsageStrip>,
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
            sent_upstream: None,
            usage: None,
            timers: None,
            limits: None,
            strip: None,
        }
    }

    /// Marks the moment the request went upstream, for `llmgate_upstream_ttfb_seconds`.
    pub fn sent_upstream(&mut self) {
        self.sent_upstream = Some(Instant::now());
    }

    /// Marks the response head as sent and, for upstream bodies, the stream as active and
    /// (for successful SSE, NDJSON and JSON answers) watched for LLM usage.
    pub fn respond(&mut self, status: u16, headers: &HeaderMap, streaming: bool) {
        self.status = status;
        self.head_at = self.start.elapsed();
        if !streaming {
            return;
        }
        self.streaming = true;
        let m = &self.shared.metrics;
        if let Some(up) = &self.upstream {
            m.streams_active.with_label_values(&[up]).inc();
            if let Some(sent) = self.sent_upstream {
                m.upstream_ttfb
                    .with_label_values(&[up])
                    .observe(sent.elapsed().as_secs_f64());
            }
        }
        let budget = self.limits.as_ref().and_then(|a| a.budget.as_ref());
        if (self.shared.observe_llm || budget.is_some()) && (200..300).contains(&status) {
            let format = headers
                .get(header::CONTENT_TYPE)
                .and_then(|ct| Format::from_content_type(ct.as_bytes()));
            self.usage = format.map(|f| UsageObserver::new(f, self.start));
            if format == Some(Format::Sse) && budget.is_some_and(|b| b.strip_usage) {
                self.strip = Some(UsageStrip::default());
            }
        }
    }

    /// What the client gets of an upstream frame instead, when llmgate edits the stream:
    /// `None` when the frame passes as it is.
    #[inline]
    pub fn edit_frame(&mut self, data: &Bytes) -> Option<Bytes> {
        self.strip.as_mut()?.frame(data)
    }

    /// One response body frame on its way to the client, which arrived at `at`.
    #[inline]
    pub fn on_frame(&mut self, data: &Bytes, at: Instant) {
        if self.first_byte.is_none() {
            self.first_byte = Some(at.saturating_duration_since(self.start));
        }
        self.bytes_out += data.len() as u64;
        if let Some(obs) = &mut self.usage {
            let ticks = obs.on_frame(data, at);
            if !ticks.is_empty() && self.shared.observe_llm {
                self.timers
                    .get_or_insert_with(|| self.shared.metrics.llm.timers(obs.model()))
                    .observe(ticks);
            }
        }
    }

    /// How the response ended, as `llmgate_stream_ended_total{reason}` and the log say it.
    fn end_reason(&self) -> &'static str {
        if self.shared.is_draining() && self.outcome == Outcome::ClientCancel {
            "shutdown"
        } else {
            self.outcome.as_str()
        }
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
        let reason = self.end_reason();
        if self.streaming {
            if let Some(up) = &self.upstream {
                m.streams_active.with_label_values(&[up]).dec();
                m.stream_duration
                    .with_label_values(&[up])
                    .observe(elapsed.as_secs_f64());
                m.stream_ended.with_label_values(&[up, reason]).inc();
            }
        }
        self.timers.take(); // flushes this response's inter-token gaps
        let report = self
            .usage
            .as_mut()
            .map_or_else(UsageReport::default, |u| u.finish(bytes_in));
        if let Some(budget) = self.limits.as_mut().and_then(|a| a.budget.take()) {
            // Cut short: a successful answer that did not finish, or a client that left while
            // the upstream was still working on the request.
            let ok = self.streaming && (200..300).contains(&self.status);
            let waiting = self.status == 0 && self.sent_upstream.is_some();
            let cut_short = (ok && self.outcome != Outcome::Complete) || waiting;
            budget.settle(&report, cut_short, &self.shared);
        }
        if report.tokens.is_some() && self.shared.observe_llm {
            let pricing = &self.shared.snapshot.load().pricing;
            m.llm.record(&report, self.identity.as_deref(), pricing);
        }
        if self.shared.access_log && access_log::enabled() {
            Line::emit(self.shared.log_format, |l| {
                l.str("request_id", self.request_id.to_str().unwrap_or("-"))
                    .str("peer", self.peer.ip_str())
                    .str("method", self.method.as_str())
                    .str("path", self.uri.path())
                    .str("route", self.route.as_deref().unwrap_or("-"))
                    .str("upstream", self.upstream.as_deref().unwrap_or("-"))
                    .str("identity", self.identity.as_deref().unwrap_or("-"));
                if let Some(model) = &report.model {
                    l.str("model", model);
                }
                l.num("status", u64::from(self.status))
                    .num("bytes_in", bytes_in)
                    .num("bytes_out", self.bytes_out)
                    .ms("duration_ms", elapsed)
                    .ms("ttfb_ms", self.first_byte.unwrap_or(self.head_at));
                if let Some(ttft) = report.ttft {
                    l.ms("ttft_ms", ttft);
                }
                if let Some(t) = report.tokens {
                    l.num("prompt_tokens", t.prompt)
                        .num("completion_tokens", t.completion)
                        .str("tokens_source", t.source.as_str());
                }
                l.str("outcome", reason);
            });
        }
        if self.shared.in_flight.fetch_sub(1, Ordering::Release) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}
