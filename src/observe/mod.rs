//! LLM observation on the side of a response body: which model answered, when content
//! events arrived (TTFT, inter-token gaps) and how many tokens it used — without copying a
//! frame, delaying it, or parsing more than one small `usage` object per response.
//!
//! `UsageObserver` is the reusable core (token budgets read its `UsageReport`); `LlmSeries`
//! turns what it sees into Prometheus series; `Pricing` turns tokens into USD.

mod event;
mod pricing;
mod series;
mod usage;

#[cfg(test)]
mod tests;

pub use pricing::Pricing;
pub use series::{LlmSeries, Timers, ANONYMOUS, UNKNOWN_MODEL};
pub use usage::{Format, FrameTokens, TokenSource, Tokens, UsageObserver, UsageReport};
