//! The usage observers: a generated stream (OpenAI SSE, Anthropic SSE, Ollama NDJSON, or a
//! whole JSON answer) reports the same model and usage however it is cut into frames,
//! including cuts inside the usage event and inside multi-byte UTF-8; and bytes of any kind,
//! cut anywhere, never panic.

use crate::{cases, cut_points, frames};
use bytes::Bytes;
use llmgate::observe::{Format, TokenSource, Tokens, UsageObserver, UsageReport};
use proptest::prelude::*;
use tokio::time::Instant;

const PERSIST: &str = "tests/fuzz-regressions/observe.txt";

fn observe(format: Format, body: &[u8], cuts: &[usize]) -> UsageReport {
    let start = Instant::now();
    let mut o = UsageObserver::new(format, start);
    for f in frames(body, cuts) {
        o.on_frame(&Bytes::copy_from_slice(f), start);
    }
    o.finish(400)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    OpenAiSse,
    AnthropicSse,
    OllamaNdjson,
    OpenAiJson,
    OllamaJson,
}

#[derive(Debug, Clone)]
struct Stream {
    kind: Kind,
    model: String,
    chunks: Vec<String>,
    prompt: u32,
    completion: u32,
    crlf: bool,
    noise: bool,
}

fn text() -> impl Strategy<Value = String> {
    // Multi-byte characters, quotes, backslashes and key-like text inside values.
    prop_oneof![
        "[a-z ]{1,12}",
        "[é日🦙\"\\\\\n{}:,]{1,8}",
        Just("\"usage\": {\"prompt_tokens\": 1}".to_string()),
        Just("data: {\"model\":\"fake\"}\n\n".to_string()),
        "[ -~]{200,3000}",
    ]
}

/// Mostly short chunks; now and then one longer than the observer keeps of a split line.
fn chunk() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => text(),
        1 => ("[a-zé]{1,8}", 2_000usize..5_000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn stream() -> impl Strategy<Value = Stream> {
    (
        prop::sample::select(vec![
            Kind::OpenAiSse,
            Kind::AnthropicSse,
            Kind::OllamaNdjson,
            Kind::OpenAiJson,
            Kind::OllamaJson,
        ]),
        "[a-z0-9é日🦙._:/-]{1,40}",
        prop::collection::vec(chunk(), 1..12),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, model, chunks, prompt, completion, crlf, noise)| Stream {
                kind,
                model,
                chunks,
                prompt,
                completion,
                crlf,
                noise,
            },
        )
}

impl Stream {
    fn format(&self) -> Format {
        match self.kind {
            Kind::OpenAiSse | Kind::AnthropicSse => Format::Sse,
            Kind::OllamaNdjson => Format::Ndjson,
            Kind::OpenAiJson | Kind::OllamaJson => Format::Json,
        }
    }

    /// Keys in the order the real APIs send them (serde_json's `json!` would sort them).
    fn body(&self) -> Vec<u8> {
        let nl = if self.crlf { "\r\n" } else { "\n" };
        let q = |t: &str| serde_json::to_string(t).unwrap();
        let sse = |v: String| format!("data: {v}{nl}{nl}");
        let (m, p, c) = (q(&self.model), self.prompt, self.completion);
        let total = u64::from(p) + u64::from(c);
        let mut s = String::new();
        match self.kind {
            Kind::OpenAiSse => {
                for t in &self.chunks {
                    if self.noise {
                        s += &format!(": keep-alive{nl}id: 7{nl}");
                    }
                    s += &sse(format!(
                        r#"{{"id":"c1","object":"chat.completion.chunk","model":{m},"choices":[{{"index":0,"delta":{{"content":{}}}}}],"usage":null}}"#,
                        q(t)
                    ));
                }
                s += &sse(format!(
                    r#"{{"id":"c1","object":"chat.completion.chunk","model":{m},"choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{total}}}}}"#
                ));
                s += &format!("data: [DONE]{nl}{nl}");
            }
            Kind::AnthropicSse => {
                let ev = |name: &str, v: String| format!("event: {name}{nl}{}", sse(v));
                s += &ev(
                    "message_start",
                    format!(
                        r#"{{"type":"message_start","message":{{"id":"m1","type":"message","role":"assistant","model":{m},"content":[],"usage":{{"input_tokens":{p},"output_tokens":1}}}}}}"#
                    ),
                );
                for t in &self.chunks {
                    if self.noise {
                        s += &ev("ping", r#"{"type": "ping"}"#.into());
                    }
                    s += &ev(
                        "content_block_delta",
                        format!(
                            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
                            q(t)
                        ),
                    );
                }
                s += &ev(
                    "message_delta",
                    format!(
                        r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn"}},"usage":{{"output_tokens":{c}}}}}"#
                    ),
                );
                s += &ev("message_stop", r#"{"type":"message_stop"}"#.into());
            }
            Kind::OllamaNdjson => {
                for t in &self.chunks {
                    s += &format!(
                        r#"{{"model":{m},"created_at":"2025-01-01T00:00:00Z","message":{{"role":"assistant","content":{}}},"done":false}}{nl}"#,
                        q(t)
                    );
                }
                s += &format!(
                    r#"{{"model":{m},"created_at":"2025-01-01T00:00:01Z","message":{{"role":"assistant","content":""}},"done":true,"done_reason":"stop","total_duration":1,"prompt_eval_count":{p},"eval_count":{c}}}"#
                );
                if self.noise {
                    s += nl; // the last line's newline is optional
                }
            }
            Kind::OpenAiJson => {
                s = format!(
                    r#"{{"id":"c1","object":"chat.completion","created":1,"model":{m},"choices":[{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{total}}}}}"#,
                    q(&self.chunks.concat())
                );
            }
            Kind::OllamaJson => {
                s = format!(
                    r#"{{"model":{m},"created_at":"2025-01-01T00:00:00Z","message":{{"role":"assistant","content":{}}},"done":true,"prompt_eval_count":{p},"eval_count":{c}}}"#,
                    q(&self.chunks.concat())
                );
            }
        }
        if self.noise && matches!(self.kind, Kind::OpenAiJson | Kind::OllamaJson) {
            s = format!(" {s}\n");
        }
        s.into_bytes()
    }
}

/// Cut points that land where splitting is hardest: inside the usage event and inside
/// multi-byte characters, plus arbitrary ones.
fn hard_cuts(body: &[u8], raw: &[usize], near: &[usize]) -> Vec<usize> {
    let mut cuts = raw.to_vec();
    let usage = ["\"usage\"", "prompt_eval_count", "eval_count"]
        .iter()
        .filter_map(|k| memchr::memmem::rfind(body, k.as_bytes()))
        .min();
    if let Some(at) = usage {
        cuts.extend(near.iter().map(|d| at + d % 120));
    }
    let inside_chars: Vec<usize> = (0..body.len())
        .filter(|&i| (body[i] & 0xC0) == 0x80)
        .collect();
    if !inside_chars.is_empty() {
        cuts.extend(near.iter().map(|d| inside_chars[d % inside_chars.len()]));
    }
    cut_points(&cuts, body.len())
}

proptest! {
    #![proptest_config(cases(700, PERSIST))]

    #[test]
    fn any_split_gives_the_usage_of_the_whole(
        s in stream(),
        raw in prop::collection::vec(any::<usize>(), 0..30),
        near in prop::collection::vec(any::<usize>(), 1..6),
    ) {
        let body = s.body();
        let whole = observe(s.format(), &body, &[]);
        // The generated stream is read right when whole...
        prop_assert_eq!(whole.model.as_deref(), Some(s.model.as_str()));
        prop_assert_eq!(whole.tokens, Some(Tokens {
            prompt: s.prompt.into(),
            completion: s.completion.into(),
            source: TokenSource::Reported,
        }));
        // ...and the same however it is cut.
        let cuts = hard_cuts(&body, &raw, &near);
        let split = observe(s.format(), &body, &cuts);
        prop_assert_eq!(&split.model, &whole.model);
        prop_assert_eq!(split.tokens, whole.tokens);
        // Of a line longer than 16 KiB split across frames only the end is kept: its usage,
        // not whether it carried content.
        if !body.split(|&b| b == b'\n').any(|l| l.len() >= 16 * 1024) {
            prop_assert_eq!(split.content_events, whole.content_events);
        }
        // One byte per frame, the worst case for every partial-line path.
        if body.len() < 4_000 {
            let every: Vec<usize> = (1..body.len()).collect();
            let bytewise = observe(s.format(), &body, &every);
            prop_assert_eq!(&bytewise.model, &whole.model);
            prop_assert_eq!(bytewise.tokens, whole.tokens);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..3_000),
        raw in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let cuts = cut_points(&raw, body.len());
        for format in [Format::Sse, Format::Ndjson, Format::Json] {
            let r = observe(format, &body, &cuts);
            prop_assert!(!r.usage_seen());
        }
    }

    /// Valid-looking events with random fields around usage, cut anywhere: no panic, and
    /// the split result equals the whole one.
    #[test]
    fn mangled_events_split_like_the_whole(
        lines in prop::collection::vec(prop_oneof![
            "data: \\{\"choices\":\\[\\],\"usage\":\\{\"prompt_tokens\":[0-9]{1,3}\\}\\}",
            "data: \\{\"type\":\"message_delta\",\"usage\":[ -~]{0,20}",
            "\\{\"done\":true,\"eval_count\":[0-9a-z]{0,4},\"prompt_eval_count\":[ -~]{0,6}\\}",
            "[ -~é]{0,40}",
        ], 0..10),
        raw in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let body = lines.join("\n").into_bytes();
        let cuts = cut_points(&raw, body.len());
        for format in [Format::Sse, Format::Ndjson, Format::Json] {
            let whole = observe(format, &body, &[]);
            let split = observe(format, &body, &cuts);
            prop_assert_eq!(&split.model, &whole.model);
            prop_assert_eq!(split.tokens, whole.tokens);
        }
    }
}
