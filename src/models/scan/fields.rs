//! The top-level members token budgets read, found by the same scan as `model`.

/// Top-level members token budgets read (exact, case-sensitive keys, as OpenAI reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    MaxTokens,
    MaxCompletionTokens,
    Stream,
    StreamOptions,
    /// Ollama's `options` (for `num_predict`).
    Options,
}

impl Field {
    pub(super) fn of(key: &[u8]) -> Option<Self> {
        Some(match key {
            b"max_tokens" => Self::MaxTokens,
            b"max_completion_tokens" => Self::MaxCompletionTokens,
            b"stream" => Self::Stream,
            b"stream_options" => Self::StreamOptions,
            b"options" => Self::Options,
            _ => return None,
        })
    }
}

/// Where a top-level member's value lies in the body: bytes `start..end` from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub field: Field,
    pub start: u64,
    pub end: u64,
}
