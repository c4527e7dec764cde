//! Token budgets: what a request reserves before it is forwarded (its worst case), and the
//! settlement that replaces the reservation with what it really used once its response ends.
//!
//! The reservation is read from the body prefix the model scanner already read ahead (value
//! spans of `max_tokens`, `stream`, ...), never from a parse of the body: only the few bytes
//! of those values are looked at.

use super::gcra::{Window, TOK_DAY, TOK_MINUTE};
use super::{usage_edit, Key, Store};
use crate::body::RequestBody;
use crate::models::{BodyFacts, Field, Span};
use crate::observe::{TokenSource, UsageReport};
use crate::state::Shared;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue};
use http_body::Frame;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How far a budgeted request's body is read ahead to find `max_tokens` and `stream`.
pub const READ_AHEAD: u64 = 1 << 20;
/// Longest member value looked at (`options` and `stream_options` are small objects).
const MAX_VALUE: u64 = 16 << 10;

/// What a request asks of a token budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    pub completion: u64,
    /// Body bytes / 4.
    pub prompt: u64,
    /// `"stream": true`.
    pub stream: bool,
    /// `stream_options.include_usage` is already true: the client wants the usage chunk.
    pub client_usage: bool,
}

impl Ask {
    pub fn cost(&self) -> u64 {
        self.completion.saturating_add(self.prompt)
    }

    /// Reads a request's reservation; `None` when the body is not a JSON object (such
    /// requests make no completion and spend no tokens).
    pub fn of(
        facts: &BodyFacts,
        frames: &VecDeque<Frame<Bytes>>,
        content_length: Option<u64>,
        default_completion: u64,
    ) -> Option<Self> {
        facts.open_at?;
        let value = |f: Field| {
            let span = facts.spans.iter().rev().find(|s| s.field == f)?;
            value_bytes(frames, span)
        };
        let count = |f: Field| {
            let v = value(f)?;
            std::str::from_utf8(&v).ok()?.parse::<u64>().ok()
        };
        let predict = || {
            #[derive(Deserialize)]
            struct Options {
                num_predict: Option<i64>,
            }
            let o: Options = serde_json::from_slice(&value(Field::Options)?).ok()?;
            u64::try_from(o.num_predict?).ok()
        };
        let completion = count(Field::MaxCompletionTokens)
            .or_else(|| count(Field::MaxTokens))
            .or_else(predict)
            .filter(|&n| n > 0)
            .unwrap_or(default_completion);
        let client_usage = value(Field::StreamOptions).is_some_and(|v| {
            #[derive(Deserialize)]
            struct StreamOptions {
                include_usage: Option<bool>,
            }
            serde_json::from_slice::<StreamOptions>(&v).is_ok_and(|o| o.include_usage == Some(true))
        });
        Some(Self {
            completion,
            prompt: content_length.unwrap_or(facts.read).div_ceil(4),
            stream: value(Field::Stream).is_some_and(|v| v == b"true"),
            client_usage,
        })
    }
}

/// The bytes of one member value from the frames read ahead (a small copy); `None` when it
/// is too long or was not read ahead whole.
pub fn value_bytes(frames: &VecDeque<Frame<Bytes>>, span: &Span) -> Option<Vec<u8>> {
    if span.end - span.start > MAX_VALUE {
        return None;
    }
    let mut out = Vec::with_capacity((span.end - span.start) as usize);
    let mut at = 0u64;
    for data in frames.iter().filter_map(Frame::data_ref) {
        let end = at + data.len() as u64;
        if end > span.start && at < span.end {
            let from = span.start.saturating_sub(at) as usize;
            let to = (span.end.min(end) - at) as usize;
            out.extend_from_slice(&data[from..to]);
        }
        at = end;
    }
    (out.len() as u64 == span.end - span.start).then_some(out)
}

/// A reservation held by an admitted request, settled when its response ends.
pub struct Budget {
    pub(super) ledger: Store,
    pub(super) key: Key,
    /// The minute and day token windows (`None` where no budget is set).
    pub(super) windows: [Option<Window>; 2],
    pub(super) ask: Ask,
    /// The request went out with `include_usage` added, so the usage chunk is llmgate's.
    pub strip_usage: bool,
}

impl Budget {
    /// Replaces the reservation with what the response used: the upstream's usage, else
    /// (a stream cut short, or one without usage) the content events delivered plus the
    /// prompt estimate, marked estimated. `cut_short`: a successful upstream answer ended
    /// early, so even a cut before the first event is charged the prompt; other answers
    /// that are not completions (errors, non-LLM APIs) are charged nothing.
    pub fn settle(self, report: &UsageReport, cut_short: bool, shared: &Arc<Shared>) {
        let (used, source) = match report.tokens {
            Some(t) => (t.prompt.saturating_add(t.completion), t.source),
            None if cut_short => (self.ask.prompt, TokenSource::Estimated),
            None => (0, TokenSource::Reported),
        };
        if used > 0 {
            shared
                .metrics
                .ratelimit_tokens
                .with_label_values(&[source.as_str()])
                .inc_by(used);
        }
        let delta = i64::try_from(used)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(self.ask.cost()).unwrap_or(i64::MAX));
        if delta == 0 {
            return;
        }
        match &self.ledger {
            Store::Memory(m) => {
                let now = m.now();
                for (slot, w) in [TOK_MINUTE, TOK_DAY].into_iter().zip(self.windows) {
                    if let Some(w) = w {
                        m.adjust(&self.key, slot, w, delta, now);
                    }
                }
            }
            Store::Redis(r) => {
                let Ok(rt) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                // Counted as in flight, so a graceful shutdown waits for the settlement.
                let pending = Pending::new(shared.clone());
                let (r, key, windows) = (r.clone(), self.key.clone(), self.windows);
                rt.spawn(async move {
                    if let Err(e) = r.reconcile(&key, windows, delta).await {
                        // The reservation stays: the identity is over-charged, never under.
                        pending
                            .0
                            .metrics
                            .ratelimit_backend_errors
                            .with_label_values(&["unsettled"])
                            .inc();
                        tracing::warn!(error = %e, delta, "rate limit: token usage not settled in Redis");
                    }
                    drop(pending);
                });
            }
        }
    }
}

/// Books an admitted request's reservation. Its upstream is asked for an uncompressed answer
/// (compressed SSE delays frames and hides usage) and, for a streaming completion that did
/// not ask for usage, to report it anyway.
pub(super) fn admitted(
    store: &Store,
    key: Key,
    windows: [Option<Window>; 2],
    ask: Ask,
    facts: Option<BodyFacts>,
    parts: &mut Parts,
    body: &mut RequestBody,
) -> Budget {
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let mut strip_usage = false;
    if ask.stream && !ask.client_usage && parts.uri.path().ends_with("/completions") {
        let edited = facts.and_then(|f| usage_edit::include_usage(&f, body.buffered_mut()));
        if let Some(grew) = edited {
            strip_usage = true;
            if let Some(len) = crate::app::content_length(&parts.headers) {
                let len = len.saturating_add_signed(grew);
                parts.headers.insert(header::CONTENT_LENGTH, len.into());
            }
        }
    }
    Budget {
        ledger: store.clone(),
        key,
        windows,
        ask,
        strip_usage,
    }
}

/// Holds a shutdown open (as one more request in flight) until dropped.
struct Pending(Arc<Shared>);

impl Pending {
    fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Release) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ReadAhead;

    fn facts(frames: &[&str]) -> (BodyFacts, VecDeque<Frame<Bytes>>) {
        let q: VecDeque<_> = frames
            .iter()
            .map(|f| Frame::data(Bytes::copy_from_slice(f.as_bytes())))
            .collect();
        (ReadAhead::facts_of(frames.iter().map(|f| f.as_bytes())), q)
    }

    #[test]
    fn reservation_reads_max_tokens_split_across_frames() {
        let (f, q) = facts(&[
            r#"{"messages":[{"max_tokens":9}],"max_to"#,
            r#"kens":12"#,
            "0,\"stream\":true}",
        ]);
        let ask = Ask::of(&f, &q, None, 256).unwrap();
        assert_eq!(ask.completion, 120);
        assert!(ask.stream && !ask.client_usage);
        let body: usize = q.iter().map(|d| d.data_ref().unwrap().len()).sum();
        assert_eq!(ask.prompt, (body as u64).div_ceil(4));
    }

    #[test]
    fn reservation_prefers_max_completion_tokens_then_num_predict_then_default() {
        let one = |s: &str| {
            let (f, q) = facts(&[s]);
            Ask::of(&f, &q, Some(400), 256).unwrap()
        };
        let a = one(r#"{"max_tokens":5,"max_completion_tokens":7}"#);
        assert_eq!((a.completion, a.prompt), (7, 100));
        assert_eq!(
            one(r#"{"options":{"num_predict":33,"x":[1]}}"#).completion,
            33
        );
        assert_eq!(one(r#"{"options":{"num_predict":-1}}"#).completion, 256);
        assert_eq!(one(r#"{"max_tokens":"lots"}"#).completion, 256);
        let u = one(r#"{"stream":true,"stream_options":{"include_usage":true}}"#);
        assert!(u.stream && u.client_usage);
        let (f, q) = facts(&["[1,2]"]);
        assert!(Ask::of(&f, &q, None, 256).is_none());
    }
}
