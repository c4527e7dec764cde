//! The LLM series — TTFT, inter-token gaps, tokens and cost — with `model` and `identity`
//! bounded by `[metrics] max_label_values`. Label handles are resolved once per response.

use super::pricing::Pricing;
use super::usage::{FrameTokens, UsageReport};
use crate::label_cap::LabelCap;
use prometheus::local::LocalHistogram;
use prometheus::{
    CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
};

/// `model` label when the upstream never named one.
pub const UNKNOWN_MODEL: &str = "unknown";
/// `identity` label before (or without) authentication.
pub const ANONYMOUS: &str = "anonymous";

const TTFT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0,
];
const GAP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

pub struct LlmSeries {
    pub ttft: HistogramVec,
    pub inter_token: HistogramVec,
    pub tokens: IntCounterVec,
    pub cost: CounterVec,
    pub models: LabelCap,
    pub identities: LabelCap,
}

/// Inter-token gaps are gathered per response and merged into the shared histogram this
/// often (and when the response ends): concurrent streams of one model would otherwise
/// contend on the same atomics for every token.
const FLUSH_EVERY: u32 = 64;

/// One response's TTFT and inter-token histograms.
pub struct Timers {
    ttft: Histogram,
    /// Flushed when dropped.
    inter: LocalHistogram,
    unflushed: u32,
}

impl Timers {
    #[inline]
    pub fn observe(&mut self, t: FrameTokens) {
        if let Some(d) = t.ttft {
            self.ttft.observe(d.as_secs_f64());
        }
        if let Some(d) = t.gap {
            self.inter.observe(d.as_secs_f64());
        }
        for _ in 0..t.same_frame {
            self.inter.observe(0.0);
        }
        self.unflushed += u32::from(t.gap.is_some()) + t.same_frame;
        if self.unflushed >= FLUSH_EVERY {
            self.inter.flush();
            self.unflushed = 0;
        }
    }
}

impl LlmSeries {
    pub fn new(registry: &Registry, max_label_values: usize) -> Self {
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["model"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("metric names are unique");
            h
        };
        let ttft = histogram(
            "llmgate_time_to_first_token_seconds",
            "Request arrival until the first content event of an SSE or NDJSON stream, by model.",
            TTFT_BUCKETS,
        );
        let inter_token = histogram(
            "llmgate_inter_token_seconds",
            "Gaps between consecutive content events of a stream, by model.",
            GAP_BUCKETS,
        );
        let tokens = IntCounterVec::new(
            Opts::new(
                "llmgate_tokens_total",
                "Tokens by model, identity, kind (prompt, completion) and source (reported by the upstream, or estimated for streams without usage).",
            ),
            &["model", "identity", "kind", "source"],
        )
        .expect("valid metric");
        let cost = CounterVec::new(
            Opts::new(
                "llmgate_cost_usd_total",
                "Spend in USD by model and identity, from the [[pricing]] table.",
            ),
            &["model", "identity"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(tokens.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(cost.clone()))
            .expect("metric names are unique");
        Self {
            ttft,
            inter_token,
            tokens,
            cost,
            models: LabelCap::new(max_label_values),
            identities: LabelCap::new(max_label_values),
        }
    }

    pub fn model_label<'a>(&self, model: Option<&'a str>) -> &'a str {
        model.map_or(UNKNOWN_MODEL, |m| self.models.admit(m))
    }

    pub fn identity_label<'a>(&self, identity: Option<&'a str>) -> &'a str {
        identity.map_or(ANONYMOUS, |i| self.identities.admit(i))
    }

    /// Histogram handles for one response, resolved when its first content event arrives.
    pub fn timers(&self, model: Option<&str>) -> Timers {
        let model = self.model_label(model);
        Timers {
            ttft: self.ttft.with_label_values(&[model]),
            inter: self.inter_token.with_label_values(&[model]).local(),
            unflushed: 0,
        }
    }

    /// Counts a finished response's tokens and, when its model is priced, its cost.
    pub fn record(&self, report: &UsageReport, identity: Option<&str>, pricing: &Pricing) {
        let Some(t) = report.tokens else {
            return;
        };
        let model = report.model.as_deref();
        let (model_label, identity) = (self.model_label(model), self.identity_label(identity));
        let source = t.source.as_str();
        for (kind, n) in [("prompt", t.prompt), ("completion", t.completion)] {
            self.tokens
                .with_label_values(&[model_label, identity, kind, source])
                .inc_by(n);
        }
        if let Some(usd) = model.and_then(|m| pricing.cost(m, t.prompt, t.completion)) {
            self.cost
                .with_label_values(&[model_label, identity])
                .inc_by(usd);
        }
    }
}
