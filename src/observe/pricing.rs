//! The `[[pricing]]` table: USD per million prompt and completion tokens, by model glob.

use crate::config::PricingConfig;
use globset::{Glob, GlobMatcher};

pub struct Pricing {
    rows: Vec<(GlobMatcher, f64, f64)>,
}

impl Pricing {
    pub fn new(cfg: &[PricingConfig]) -> Self {
        let rows = cfg
            .iter()
            .map(|p| {
                let glob = Glob::new(p.model.get_ref()).expect("validated by config::validate");
                (
                    glob.compile_matcher(),
                    p.input_per_million,
                    p.output_per_million,
                )
            })
            .collect();
        Self { rows }
    }

    /// The cost in USD of a response, by the first row whose glob matches `model`.
    pub fn cost(&self, model: &str, prompt: u64, completion: u64) -> Option<f64> {
        let (_, input, output) = self.rows.iter().find(|(g, _, _)| g.is_match(model))?;
        Some((prompt as f64 * input + completion as f64 * output) / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins() {
        let cfg: crate::Config = toml::from_str(
            r#"
            [[pricing]]
            model = "gpt-4o-mini*"
            input_per_million = 0.15
            output_per_million = 0.6
            [[pricing]]
            model = "gpt-4o*"
            input_per_million = 2.5
            output_per_million = 10.0
            "#,
        )
        .unwrap();
        let p = Pricing::new(&cfg.pricing);
        assert_eq!(p.cost("gpt-4o-2024-08-06", 1_000_000, 0), Some(2.5));
        assert_eq!(p.cost("gpt-4o-mini", 0, 1_000_000), Some(0.6));
        assert_eq!(p.cost("llama3.2", 1, 1), None);
    }
}
