//! Prometheus series, registered once; hot-path handles are resolved ahead of time.

use crate::config::DEFAULT_MAX_LABEL_VALUES;
use crate::observe::LlmSeries;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_ttfb: HistogramVec,
    pub streams_active: IntGaugeVec,
    pub stream_duration: HistogramVec,
    pub stream_ended: IntCounterVec,
    pub bytes: IntCounterVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub connections_active: IntGauge,
    pub websockets_active: IntGauge,
    pub config_reloads: IntCounterVec,
    /// `llmgate_model_cache_total` by result: hit, stale, miss (resolved once).
    model_cache: [IntCounter; 3],
    pub auth_failures: IntCounterVec,
    pub ratelimited: IntCounterVec,
    pub ratelimit_backend_errors: IntCounterVec,
    pub ratelimit_tokens: IntCounterVec,
    /// Access lines dropped because stdout fell 8 MiB behind (copied from the log writer).
    access_log_dropped: IntCounter,
    /// TTFT, inter-token gaps, tokens and cost, with bounded `model` and `identity` labels.
    pub llm: LlmSeries,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
const STREAM_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

impl Metrics {
    /// With the default bound on the `model` and `identity` labels.
    pub fn new() -> Self {
        Self::with_max_label_values(DEFAULT_MAX_LABEL_VALUES)
    }

    /// `max_label_values` bounds the `model` and `identity` labels (`[metrics]`).
    pub fn with_max_label_values(max_label_values: usize) -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let requests = IntCounterVec::new(
            Opts::new(
                "llmgate_requests_total",
                "Requests answered, by route, upstream, method and status code.",
            ),
            &["route", "upstream", "method", "code"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "llmgate_request_duration_seconds",
                "Time from request arrival until response headers are sent.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "llmgate_upstream_errors_total",
                "Upstream failures before a response, by kind (connect, timeout, reset, protocol).",
            ),
            &["upstream", "kind"],
        )
        .expect("valid metric");
        let upstream_ttfb = HistogramVec::new(
            HistogramOpts::new(
                "llmgate_upstream_ttfb_seconds",
                "Time from sending a request upstream until its response headers arrived.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )
        .expect("valid metric");
        let streams_active = IntGaugeVec::new(
            Opts::new(
                "llmgate_streams_active",
                "Upstream response bodies currently flowing to clients.",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let stream_duration = HistogramVec::new(
            HistogramOpts::new(
                "llmgate_stream_duration_seconds",
                "Time from request arrival until the upstream response body ended.",
            )
            .buckets(STREAM_BUCKETS.to_vec()),
            &["upstream"],
        )
        .expect("valid metric");
        let stream_ended = IntCounterVec::new(
            Opts::new("llmgate_stream_ended_total", "Upstream response bodies ended, by reason (complete, client_cancel, upstream_error, idle_timeout, shutdown)."),
            &["upstream", "reason"],
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "llmgate_bytes_total",
                "Body bytes proxied, by direction (in = from clients, out = to clients).",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let connections_active = IntGauge::new(
            "llmgate_connections_active",
            "Client connections currently open on the proxy listener.",
        )
        .expect("valid metric");
        let websockets_active = IntGauge::new(
            "llmgate_websockets_active",
            "Upgraded (WebSocket) connections currently relayed.",
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "llmgate_config_reloads_total",
                "Configuration reloads, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let ratelimited = IntCounterVec::new(
            Opts::new(
                "llmgate_ratelimited_total",
                "Requests refused with 429, by the limit that refused them (its config key).",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let ratelimit_backend_errors = IntCounterVec::new(
            Opts::new(
                "llmgate_ratelimit_backend_errors_total",
                "Rate limit calls the backend (Redis) could not answer: decisions, by what on_backend_error did (deny, allow), and token settlements left at their reservation (unsettled).",
            ),
            &["action"],
        )
        .expect("valid metric");
        let ratelimit_tokens = IntCounterVec::new(
            Opts::new(
                "llmgate_ratelimit_tokens_total",
                "Tokens charged to token budgets, by source (reported by the upstream, or estimated for responses cut short or without usage).",
            ),
            &["source"],
        )
        .expect("valid metric");
        let model_cache = IntCounterVec::new(
            Opts::new(
                "llmgate_model_cache_total",
                "Model-list requests answered by the cache, by result (hit, stale, miss).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "llmgate_auth_failures_total",
                "Requests refused by authentication, by reason (missing, invalid, expired, forbidden, throttled, unavailable).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "llmgate_build_info",
                "Always 1; the version label says which llmgate runs.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Both results exist from the start, so `increase(...{result="error"})` sees the first.
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }

        reg(Box::new(requests.clone()));
        reg(Box::new(request_duration.clone()));
        reg(Box::new(upstream_errors.clone()));
        reg(Box::new(upstream_ttfb.clone()));
        reg(Box::new(streams_active.clone()));
        reg(Box::new(stream_duration.clone()));
        reg(Box::new(stream_ended.clone()));
        reg(Box::new(bytes.clone()));
        reg(Box::new(connections_active.clone()));
        reg(Box::new(websockets_active.clone()));
        reg(Box::new(config_reloads.clone()));
        reg(Box::new(model_cache.clone()));
        reg(Box::new(auth_failures.clone()));
        reg(Box::new(ratelimited.clone()));
        reg(Box::new(ratelimit_backend_errors.clone()));
        reg(Box::new(ratelimit_tokens.clone()));
        let access_log_dropped = IntCounter::new(
            "llmgate_access_log_dropped_total",
            "Access-log lines dropped because stdout fell more than 8 MiB behind.",
        )
        .expect("valid metric");
        reg(Box::new(access_log_dropped.clone()));
        reg(Box::new(build_info));
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        let llm = LlmSeries::new(&registry, max_label_values);
        Self {
            bytes_in: bytes.with_label_values(&["in"]),
            bytes_out: bytes.with_label_values(&["out"]),
            registry,
            requests,
            request_duration,
            upstream_errors,
            upstream_ttfb,
            streams_active,
            stream_duration,
            stream_ended,
            bytes,
            connections_active,
            websockets_active,
            config_reloads,
            model_cache: crate::models::Freshness::ALL
                .map(|f| f.as_str())
                .map(|r| model_cache.with_label_values(&[r])),
            auth_failures,
            ratelimited,
            ratelimit_backend_errors,
            ratelimit_tokens,
            access_log_dropped,
            llm,
        }
    }

    /// Counts one model-list answer.
    pub fn model_cache(&self, result: crate::models::Freshness) {
        self.model_cache[result as usize].inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        let dropped = crate::log_writer::DROPPED.load(std::sync::atomic::Ordering::Relaxed);
        let seen = self.access_log_dropped.get();
        self.access_log_dropped.inc_by(dropped.saturating_sub(seen));
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
