//! `[metrics]` and `[[pricing]]`: how much the LLM series may grow, and what tokens cost.

use super::ConfigError;
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;

/// Distinct `model` (and `identity`) label values kept before the rest are counted as `other`.
pub const DEFAULT_MAX_LABEL_VALUES: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Distinct values each of the `model` and `identity` labels may take; later ones are `other`.
    pub max_label_values: usize,
    /// Watch response bodies on the side for model, TTFT, inter-token gaps and token usage.
    pub llm: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_label_values: DEFAULT_MAX_LABEL_VALUES,
            llm: true,
        }
    }
}

/// One row of the price table; the first row whose glob matches the model wins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// A glob over model names as upstreams report them, e.g. "gpt-4o*" or "llama3.*".
    pub model: Spanned<String>,
    /// USD per million prompt (input) tokens.
    #[serde(default)]
    pub input_per_million: f64,
    /// USD per million completion (output) tokens.
    #[serde(default)]
    pub output_per_million: f64,
}

/// Builds a located error: (span or none, key, message, fix).
pub(super) type ErrAt<'a> = dyn Fn(Option<Range<usize>>, &str, String, &str) -> ConfigError + 'a;

pub(super) fn validate(
    metrics: &MetricsConfig,
    pricing: &[PricingConfig],
    err: &ErrAt,
) -> Result<(), ConfigError> {
    if metrics.max_label_values == 0 {
        return Err(err(
            None,
            "metrics.max_label_values",
            "must be at least 1".into(),
            "use e.g. 200 (values past the limit are counted as \"other\")",
        ));
    }
    for p in pricing {
        let glob = p.model.get_ref();
        if let Err(e) = globset::Glob::new(glob) {
            return Err(err(
                Some(p.model.span()),
                "pricing.model",
                format!("{glob:?} is not a valid glob: {}", e.kind()),
                "write a model name or a glob such as \"gpt-4o*\"",
            ));
        }
        for (key, price) in [
            ("pricing.input_per_million", p.input_per_million),
            ("pricing.output_per_million", p.output_per_million),
        ] {
            if !price.is_finite() || price < 0.0 {
                return Err(err(
                    Some(p.model.span()),
                    key,
                    format!("price {price} for {glob:?} must be a non-negative number"),
                    "give USD per million tokens, e.g. 2.5",
                ));
            }
        }
    }
    Ok(())
}
