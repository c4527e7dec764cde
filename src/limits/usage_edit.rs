//! The one body edit llmgate makes, on routes with a token budget: a streaming request that
//! did not ask for usage gets `stream_options.include_usage = true` (spliced into the frames
//! read ahead, without copying them), and the usage-only chunk this makes the upstream send
//! is taken out of the stream again, so the client receives exactly the stream it asked for.

use super::tokens::value_bytes;
use crate::models::{BodyFacts, Field};
use bytes::Bytes;
use http_body::Frame;
use memchr::memchr;
use memchr::memmem::Finder;
use std::collections::VecDeque;
use std::sync::LazyLock;

static CHOICES: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""choices""#));
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""usage""#));

const MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;
/// Longest first line of an event held back while deciding whether it is the usage chunk.
const MAX_HELD: usize = 64 << 10;

/// Asks the upstream for usage in the stream; returns how many bytes the body grew by, or
/// `None` when it was left alone (not read ahead whole, or `stream_options` unreadable).
pub fn include_usage(facts: &BodyFacts, frames: &mut VecDeque<Frame<Bytes>>) -> Option<i64> {
    if !facts.closed {
        return None;
    }
    let (start, end, insert) = match facts
        .spans
        .iter()
        .rev()
        .find(|s| s.field == Field::StreamOptions)
    {
        // Python and Go take the last of duplicate keys, so the last one is rewritten.
        Some(span) => {
            let v = value_bytes(frames, span)?;
            let mut opts = match serde_json::from_slice::<serde_json::Value>(&v).ok()? {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            opts.insert("include_usage".into(), true.into());
            let text = serde_json::to_vec(&opts).ok()?;
            (span.start, span.end, Bytes::from(text))
        }
        None => {
            let at = facts.open_at? + 1;
            (at, at, Bytes::from_static(MEMBER))
        }
    };
    let grew = insert.len() as i64 - (end - start) as i64;
    splice(frames, start, end, insert);
    Some(grew)
}

/// Replaces body bytes `start..end` with `insert`; frames are sliced, not copied.
fn splice(frames: &mut VecDeque<Frame<Bytes>>, start: u64, end: u64, insert: Bytes) {
    let mut out = VecDeque::with_capacity(frames.len() + 2);
    let mut at = 0u64;
    let mut inserted = false;
    for frame in frames.drain(..) {
        let Some(data) = frame.data_ref() else {
            out.push_back(frame);
            continue;
        };
        let len = data.len() as u64;
        let frame_end = at + len;
        let mut push = |b: Bytes| {
            if !b.is_empty() {
                out.push_back(Frame::data(b));
            }
        };
        if at < start {
            push(data.slice(..(start.min(frame_end) - at) as usize));
        }
        if !inserted && frame_end >= start {
            push(insert.clone());
            inserted = true;
        }
        if frame_end > end {
            push(data.slice((end.max(at) - at) as usize..));
        }
        at = frame_end;
    }
    *frames = out;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// Before an event's first line ends: undecided.
    Fresh,
    Pass,
    Drop,
}

/// Takes the usage-only chunk (`"choices": []` with a `usage` object) out of an SSE stream;
/// every other frame passes as it is.
#[derive(Debug)]
pub struct UsageStrip {
    event: Event,
    in_line: bool,
    line_blank: bool,
    /// The start of an event's first line, split across frames, until it can be judged.
    held: Vec<u8>,
}

enum Piece {
    Range(usize, usize),
    Held(Vec<u8>),
}

impl Default for UsageStrip {
    fn default() -> Self {
        Self {
            event: Event::Fresh,
            in_line: false,
            line_blank: true,
            held: Vec::new(),
        }
    }
}

impl UsageStrip {
    /// `None` when the frame passes unchanged, else what the client gets instead (possibly
    /// nothing).
    pub fn frame(&mut self, d: &Bytes) -> Option<Bytes> {
        let mut pieces: Vec<Piece> = Vec::new();
        let mut changed = false;
        let keep = |pieces: &mut Vec<Piece>, a: usize, b: usize| match pieces.last_mut() {
            Some(Piece::Range(_, end)) if *end == a => *end = b,
            _ => pieces.push(Piece::Range(a, b)),
        };
        let mut pos = 0;
        while pos < d.len() {
            let (end, complete) = match memchr(b'\n', &d[pos..]) {
                Some(k) => (pos + k + 1, true),
                None => (d.len(), false),
            };
            let seg = &d[pos..end];
            let blank = seg.iter().all(|&b| b == b'\r' || b == b'\n');
            match self.event {
                Event::Fresh if !self.in_line && complete && blank => keep(&mut pieces, pos, end),
                Event::Fresh if complete => {
                    let held = std::mem::take(&mut self.held);
                    let usage = if held.is_empty() {
                        usage_only(seg)
                    } else {
                        usage_only(&[&held[..], seg].concat())
                    };
                    if usage {
                        self.event = Event::Drop;
                        changed = true;
                    } else {
                        self.event = Event::Pass;
                        if !held.is_empty() {
                            pieces.push(Piece::Held(held));
                            changed = true;
                        }
                        keep(&mut pieces, pos, end);
                    }
                    self.in_line = false;
                }
                Event::Fresh => {
                    self.held.extend_from_slice(seg);
                    self.in_line = true;
                    changed = true;
                    if self.held.len() > MAX_HELD {
                        self.event = Event::Pass;
                        self.line_blank = false;
                        pieces.push(Piece::Held(std::mem::take(&mut self.held)));
                    }
                }
                Event::Pass | Event::Drop => {
                    let blank = blank && (!self.in_line || self.line_blank);
                    if self.event == Event::Pass {
                        keep(&mut pieces, pos, end);
                    } else {
                        changed = true;
                    }
                    self.in_line = !complete;
                    self.line_blank = blank;
                    if complete && blank {
                        self.event = Event::Fresh;
                    }
                }
            }
            pos = end;
        }
        if !changed {
            return None;
        }
        Some(match pieces.as_slice() {
            [] => Bytes::new(),
            [Piece::Range(a, b)] => d.slice(*a..*b),
            _ => {
                let mut out = Vec::new();
                for p in &pieces {
                    match p {
                        Piece::Range(a, b) => out.extend_from_slice(&d[*a..*b]),
                        Piece::Held(h) => out.extend_from_slice(h),
                    }
                }
                Bytes::from(out)
            }
        })
    }
}

/// Whether an event's first line is a chunk with `"choices": []` and a `usage` object.
fn usage_only(line: &[u8]) -> bool {
    let Some(json) = line.strip_prefix(b"data:") else {
        return false;
    };
    let after = |key: &Finder| -> Option<&[u8]> {
        let at = key.find(json)?;
        let rest = json[at + key.needle().len()..].trim_ascii_start();
        Some(rest.strip_prefix(b":")?.trim_ascii_start())
    };
    let empty_choices = after(&CHOICES)
        .and_then(|v| v.strip_prefix(b"["))
        .is_some_and(|v| v.trim_ascii_start().starts_with(b"]"));
    empty_choices && after(&USAGE).is_some_and(|v| v.starts_with(b"{"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ReadAhead;

    fn frames(parts: &[&str]) -> VecDeque<Frame<Bytes>> {
        parts
            .iter()
            .map(|p| Frame::data(Bytes::copy_from_slice(p.as_bytes())))
            .collect()
    }

    fn joined(q: &VecDeque<Frame<Bytes>>) -> String {
        q.iter()
            .map(|f| std::str::from_utf8(f.data_ref().unwrap()).unwrap())
            .collect()
    }

    fn edit(parts: &[&str]) -> (Option<i64>, String) {
        let facts = ReadAhead::facts_of(parts.iter().map(|p| p.as_bytes()));
        let mut q = frames(parts);
        let grew = include_usage(&facts, &mut q);
        (grew, joined(&q))
    }

    #[test]
    fn include_usage_is_spliced_after_the_brace_or_into_stream_options() {
        let (g, body) = edit(&[" {\"model\":\"m\",", "\"stream\":true}"]);
        assert_eq!(
            body,
            r#" {"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        assert_eq!(g, Some(MEMBER.len() as i64));
        let (_, body) = edit(&[
            r#"{"stream":true,"stream_options":{"include_usage":false,"#,
            r#""x":1},"n":2}"#,
        ]);
        assert_eq!(
            body,
            r#"{"stream":true,"stream_options":{"include_usage":true,"x":1},"n":2}"#
        );
        assert_eq!(edit(&[r#"{"stream":true"#]).0, None, "not read whole");
    }

    fn strip(frames: &[&str]) -> Vec<String> {
        let mut s = UsageStrip::default();
        frames
            .iter()
            .map(|f| {
                let b = Bytes::copy_from_slice(f.as_bytes());
                let out = s.frame(&b).unwrap_or(b);
                String::from_utf8(out.to_vec()).unwrap()
            })
            .collect()
    }

    #[test]
    fn only_the_usage_chunk_is_removed_even_when_split_or_joined() {
        let usage = r#"data: {"id":"c","choices":[],"usage":{"prompt_tokens":1}}"#;
        let content = r#"data: {"id":"c","choices":[{"delta":{"content":"hi"}}],"usage":null}"#;
        let out = strip(&[
            &format!("{content}\n\n"),
            &format!("{usage}\n\ndata: [DONE]\n\n"),
        ]);
        assert_eq!(out, [format!("{content}\n\n"), "data: [DONE]\n\n".into()]);
        let (a, b) = usage.split_at(20);
        let out = strip(&[
            &format!("{content}\n\n{a}"),
            &format!("{b}\n\n"),
            "data: [DONE]\n\n",
        ]);
        assert_eq!(
            out,
            [
                format!("{content}\n\n"),
                String::new(),
                "data: [DONE]\n\n".into()
            ]
        );
        let (a, b) = content.split_at(30);
        let out = strip(&[a, &format!("{b}\n\n")]);
        assert_eq!(out.concat(), format!("{content}\n\n"));
    }
}
