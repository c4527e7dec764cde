//! The usage observer: sees each response body frame by reference, as it passes, and keeps
//! what LLM accounting needs — the model, when content events arrive, and the final usage.
//!
//! Streams (SSE, NDJSON) are read line by line inside each frame; only a line split across
//! frames is kept, and only its last `MAX_LINE` bytes (usage sits at the end of its event).
//! JSON bodies keep their first `HEAD` bytes (is this a completion? which model?) and their
//! last `TAIL` bytes (the usage object); large frames are held by reference, not copied.

use super::event::{self, Counts, Dialect};
use bytes::Bytes;
use memchr::memchr;
use std::time::Duration;
use tokio::time::Instant;

const MAX_LINE: usize = 16 * 1024;
const HEAD: usize = 512;
const TAIL: usize = 8 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/event-stream`: OpenAI-style `data: {...}` events.
    Sse,
    /// `application/x-ndjson`: Ollama's native streams.
    Ndjson,
    /// `application/json`: a whole, non-streamed answer.
    Json,
}

impl Format {
    pub fn from_content_type(value: &[u8]) -> Option<Self> {
        let essence = value.split(|&b| b == b';').next()?.trim_ascii();
        let is = |s: &str| essence.eq_ignore_ascii_case(s.as_bytes());
        if is("text/event-stream") {
            Some(Self::Sse)
        } else if is("application/x-ndjson") || is("application/jsonl") {
            Some(Self::Ndjson)
        } else if is("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }
}

/// Content-event timing found in one frame, for the TTFT and inter-token histograms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameTokens {
    /// Set when the stream's first content event is in this frame.
    pub ttft: Option<Duration>,
    /// The gap before this frame's first content event, when it is not the stream's first.
    pub gap: Option<Duration>,
    /// Further content events in the same frame: gaps of zero.
    pub same_frame: u32,
}

impl FrameTokens {
    pub fn is_empty(&self) -> bool {
        self.ttft.is_none() && self.gap.is_none() && self.same_frame == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// From the upstream's usage object or Ollama's counters.
    Reported,
    /// Usage never arrived (stream cut, or not reported): completion = content events,
    /// prompt ≈ request body bytes / 4.
    Estimated,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Estimated => "estimated",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub source: TokenSource,
}

/// What a response said about LLM usage, once its body ended or was dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageReport {
    /// As the upstream named it in its first event or its JSON answer.
    pub model: Option<Box<str>>,
    /// `None` when the response was not a completion (or a non-stream one without usage).
    pub tokens: Option<Tokens>,
    /// Request arrival to the first content event (streams only).
    pub ttft: Option<Duration>,
    pub content_events: u64,
}

impl UsageReport {
    pub fn usage_seen(&self) -> bool {
        self.tokens
            .is_some_and(|t| t.source == TokenSource::Reported)
    }
}

pub struct UsageObserver {
    format: Format,
    start: Instant,
    /// An LLM event was seen (streams only).
    llm: bool,
    dialect: Dialect,
    model: Option<Box<str>>,
    counts: Counts,
    content_events: u64,
    ttft: Option<Duration>,
    last_content: Option<Instant>,
    /// Streams: the unfinished line (its last MAX_LINE bytes). JSON: body bytes before `last`.
    buf: Vec<u8>,
    /// The unfinished line lost its beginning.
    cut: bool,
    /// JSON: the first HEAD bytes.
    head: Vec<u8>,
    /// JSON: the latest frame, held by reference.
    last: Bytes,
}

impl UsageObserver {
    /// `start` is the request's arrival, the origin of TTFT.
    pub fn new(format: Format, start: Instant) -> Self {
        Self {
            format,
            start,
            llm: false,
            dialect: Dialect::Unknown,
            model: None,
            counts: Counts::default(),
            content_events: 0,
            ttft: None,
            last_content: None,
            buf: Vec::new(),
            cut: false,
            head: Vec::new(),
            last: Bytes::new(),
        }
    }

    /// The model named so far, if any.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Looks at one body frame that arrived at `at`; never copies it whole or delays it.
    #[inline]
    pub fn on_frame(&mut self, data: &Bytes, at: Instant) -> FrameTokens {
        match self.format {
            Format::Json => {
                self.json_frame(data);
                FrameTokens::default()
            }
            Format::Sse | Format::Ndjson => self.stream_frame(data, at),
        }
    }

    /// Ends observation; `request_bytes` is the request body size, for estimates.
    pub fn finish(&mut self, request_bytes: u64) -> UsageReport {
        if self.format == Format::Json {
            self.json_end();
        } else if self.format == Format::Ndjson && !self.buf.is_empty() {
            // A last line without its newline. (An SSE event is only complete at its blank
            // line, so an unfinished one is dropped, as clients drop it.)
            let line = std::mem::take(&mut self.buf);
            let at = self.last_content.unwrap_or(self.start);
            self.line(&line, at, &mut FrameTokens::default());
        }
        let tokens = if self.counts.any() {
            Some(Tokens {
                prompt: self.counts.prompt.unwrap_or(0),
                completion: self.counts.completion.unwrap_or(0),
                source: TokenSource::Reported,
            })
        } else if self.llm {
            Some(Tokens {
                prompt: request_bytes.div_ceil(4),
                completion: self.content_events,
                source: TokenSource::Estimated,
            })
        } else {
            None
        };
        UsageReport {
            model: self.model.clone(),
            tokens,
            ttft: self.ttft,
            content_events: self.content_events,
        }
    }

    fn stream_frame(&mut self, data: &[u8], at: Instant) -> FrameTokens {
        let mut ticks = FrameTokens::default();
        let mut rest = data;
        if !self.buf.is_empty() || self.cut {
            let Some(nl) = memchr(b'\n', rest) else {
                self.keep_partial(rest);
                return ticks;
            };
            self.keep_partial(&rest[..nl]);
            let mut line = std::mem::take(&mut self.buf);
            self.line(&line, at, &mut ticks);
            line.clear();
            self.buf = line; // keeps its capacity for the next split line
            self.cut = false;
            rest = &rest[nl + 1..];
        }
        while let Some(nl) = memchr(b'\n', rest) {
            self.line(&rest[..nl], at, &mut ticks);
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            self.keep_partial(rest);
        }
        ticks
    }

    fn keep_partial(&mut self, piece: &[u8]) {
        if piece.len() >= MAX_LINE {
            self.buf.clear();
            self.buf.extend_from_slice(&piece[piece.len() - MAX_LINE..]);
            self.cut = true;
            return;
        }
        let over = (self.buf.len() + piece.len()).saturating_sub(MAX_LINE);
        if over > 0 {
            self.buf.drain(..over);
            self.cut = true;
        }
        self.buf.extend_from_slice(piece);
    }

    fn line(&mut self, raw: &[u8], at: Instant, ticks: &mut FrameTokens) {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if self.cut {
            // Only the end of a long event is left: its usage, if it has any.
            if self.llm {
                self.counts.merge(event::any_usage(line));
            }
            return;
        }
        let json = match self.format {
            Format::Sse => match line.strip_prefix(b"data:") {
                Some(d) => d.trim_ascii_start(),
                None => return, // event:, id:, comments and blank separators
            },
            _ => line,
        };
        if json.first() != Some(&b'{') {
            return; // [DONE], blank lines
        }
        let Some(ev) = event::inspect(json, self.model.is_none(), &mut self.dialect) else {
            return;
        };
        self.llm = true;
        if let Some(m) = ev.model {
            self.model = Some(m.into());
        }
        self.counts.merge(ev.usage);
        if ev.content {
            self.content(at, ticks);
        }
    }

    fn content(&mut self, at: Instant, ticks: &mut FrameTokens) {
        self.content_events += 1;
        match self.last_content {
            None => {
                let ttft = at.saturating_duration_since(self.start);
                self.ttft = Some(ttft);
                ticks.ttft = Some(ttft);
            }
            Some(prev) if ticks.is_empty() => ticks.gap = Some(at.saturating_duration_since(prev)),
            Some(_) => ticks.same_frame += 1,
        }
        self.last_content = Some(at);
    }

    fn json_frame(&mut self, data: &Bytes) {
        if self.head.len() < HEAD {
            let n = (HEAD - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
        }
        if data.len() >= TAIL {
            self.buf.clear();
        } else if !self.last.is_empty() {
            // Only what the tail can still need of the previous frame is copied.
            let keep = TAIL - data.len();
            let prev = &self.last[self.last.len().saturating_sub(keep)..];
            let over = (self.buf.len() + prev.len()).saturating_sub(keep);
            self.buf.drain(..over.min(self.buf.len()));
            self.buf.extend_from_slice(prev);
        }
        self.last = data.clone();
    }

    fn json_end(&mut self) {
        if !event::completion_head(&self.head) {
            return;
        }
        let tail: Vec<u8> = if self.last.len() >= TAIL {
            self.last[self.last.len() - TAIL..].to_vec()
        } else {
            [&self.buf[..], &self.last[..]].concat()
        };
        self.counts = event::any_usage(&tail);
        if self.counts.any() {
            let model = event::model_in(&self.head).or_else(|| event::last_model_in(&tail));
            self.model = model.map(Into::into);
        }
    }
}
