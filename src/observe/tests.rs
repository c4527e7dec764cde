//! The observer against the stream shapes it must read, and the same streams cut into
//! frames at arbitrary points.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use std::time::Duration;
use tokio::time::Instant;

fn openai_sse() -> Vec<u8> {
    [
        r#"data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#,
        r#"data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}"#,
        r#"data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"lo"}}],"usage":null}"#,
        r#"data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],"usage":null}"#,
        r#"data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
        "data: [DONE]",
    ]
    .iter()
    .map(|l| format!("{l}\n\n"))
    .collect::<String>()
    .into_bytes()
}

fn open_webui_sse() -> Vec<u8> {
    [
        r#"data: {"sources": [{"source": {"type": "file", "name": "a.pdf"}, "document": ["the \"content\": \"x\" of a.pdf"]}]}"#,
        r#"data: {"id": "chatcmpl-9", "created": 1, "model": "llama3.2:latest", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The"}}], "object": "chat.completion.chunk"}"#,
        r#"data: {"id": "chatcmpl-9", "created": 1, "model": "llama3.2:latest", "choices": [{"index": 0, "delta": {"content": " sky"}}], "object": "chat.completion.chunk"}"#,
        r#"data: {"id": "chatcmpl-9", "created": 1, "model": "llama3.2:latest", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "object": "chat.completion.chunk", "usage": {"response_token/s": 62.2, "prompt_token/s": 75.9, "total_duration": 4883583458, "eval_count": 282, "input_tokens": 26, "output_tokens": 282, "total_tokens": 308, "prompt_tokens": 26, "completion_tokens": 282}}"#,
        "data: [DONE]",
    ]
    .iter()
    .map(|l| format!("{l}\r\n\r\n"))
    .collect::<String>()
    .into_bytes()
}

fn ollama_ndjson(context_ints: usize) -> Vec<u8> {
    let mut s = String::new();
    for t in ["The", " sky", " is"] {
        s += &format!(
            r#"{{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","response":"{t}","done":false}}"#
        );
        s.push('\n');
    }
    let context: Vec<String> = (0..context_ints).map(|i| (i * 7919).to_string()).collect();
    s += &format!(
        r#"{{"model":"llama3.2","created_at":"2025-01-01T00:00:01Z","response":"","done":true,"done_reason":"stop","context":[{}],"total_duration":4883583458,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":3,"eval_duration":4535599000}}"#,
        context.join(",")
    );
    s.push('\n');
    s.into_bytes()
}

fn openai_json(content_len: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":11,"completion_tokens":700,"total_tokens":711}},"system_fingerprint":"fp"}}"#,
        "x".repeat(content_len)
    )
    .into_bytes()
}

/// Feeds `body` cut at `cuts`, one frame every 10 ms, and returns every frame's ticks.
fn run(format: Format, body: &[u8], cuts: &[usize]) -> (UsageReport, Vec<FrameTokens>) {
    let start = Instant::now();
    let mut obs = UsageObserver::new(format, start);
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(body.len())).collect();
    bounds.extend([0, body.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let ticks = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let frame = Bytes::copy_from_slice(&body[w[0]..w[1]]);
            obs.on_frame(&frame, start + Duration::from_millis(10 * (i as u64 + 1)))
        })
        .collect();
    (obs.finish(400), ticks)
}

/// Frames at SSE event boundaries (what a well-behaved server sends).
fn event_cuts(body: &[u8]) -> Vec<usize> {
    body.windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\n\n")
        .map(|(i, _)| i + 2)
        .collect()
}

fn reported(prompt: u64, completion: u64) -> Option<Tokens> {
    Some(Tokens {
        prompt,
        completion,
        source: TokenSource::Reported,
    })
}

#[test]
fn three_chunk_sse_stream_gives_usage_and_one_ttft() {
    let body = openai_sse();
    let (r, ticks) = run(Format::Sse, &body, &event_cuts(&body));
    assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(r.tokens, reported(9, 3));
    assert!(r.usage_seen());
    assert_eq!(r.content_events, 3);
    // Frame 1 is the empty role chunk; the first content arrives with frame 2 at 20 ms.
    assert_eq!(r.ttft, Some(Duration::from_millis(20)));
    assert_eq!(ticks.iter().filter(|t| t.ttft.is_some()).count(), 1);
    let gaps: Vec<_> = ticks.iter().filter_map(|t| t.gap).collect();
    assert_eq!(gaps, [Duration::from_millis(10); 2]);
}

#[test]
fn events_in_one_frame_give_zero_gaps() {
    let (r, ticks) = run(Format::Sse, &openai_sse(), &[]);
    assert_eq!(r.content_events, 3);
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0].ttft, Some(Duration::from_millis(10)));
    assert_eq!((ticks[0].gap, ticks[0].same_frame), (None, 2));
}

#[test]
fn open_webui_stream_skips_sources_and_reads_converted_usage() {
    let (r, _) = run(Format::Sse, &open_webui_sse(), &[]);
    assert_eq!(r.model.as_deref(), Some("llama3.2:latest"));
    assert_eq!(r.tokens, reported(26, 282));
    assert_eq!(r.content_events, 2);
}

#[test]
fn ollama_stream_reads_eval_counts_even_after_a_huge_context() {
    let body = ollama_ndjson(20_000); // a done line of ~150 KB, longer than any kept tail
    let cuts: Vec<usize> = (1..body.len()).step_by(1500).collect();
    let (r, _) = run(Format::Ndjson, &body, &cuts);
    assert_eq!(r.model.as_deref(), Some("llama3.2"));
    assert_eq!(r.tokens, reported(26, 3));
    assert_eq!(r.content_events, 3);
}

#[test]
fn stream_cut_before_usage_is_estimated() {
    let body = openai_sse();
    let cut = memchr::memmem::find(&body, b"\"finish_reason\"").unwrap();
    let (r, _) = run(Format::Sse, &body[..cut], &[]);
    assert_eq!(
        r.tokens,
        Some(Tokens {
            prompt: 100, // 400 request bytes / 4
            completion: 2,
            source: TokenSource::Estimated,
        })
    );
    assert!(!r.usage_seen());
}

#[test]
fn non_llm_bodies_have_no_tokens() {
    let status = b"data: {\"status\":\"pending\"}\n\ndata: {\"status\":\"completed\"}\n\n";
    assert_eq!(run(Format::Sse, status, &[]).0, UsageReport::default());
    let pull = b"{\"status\":\"pulling manifest\"}\n{\"status\":\"success\"}\n";
    assert_eq!(run(Format::Ndjson, pull, &[]).0, UsageReport::default());
    // An Open WebUI chat stores usage in its messages; it is not a completion.
    let chat = br#"{"id":"6f1","title":"t","chat":{"messages":[{"model":"m","usage":{"prompt_tokens":5,"completion_tokens":6}}]}}"#;
    assert_eq!(run(Format::Json, chat, &[]).0, UsageReport::default());
}

#[test]
fn json_completion_usage_is_found_in_the_tail() {
    let body = openai_json(100_000);
    let (r, _) = run(Format::Json, &body, &[3, 40, 70_000, body.len() - 30]);
    assert_eq!(r.model.as_deref(), Some("gpt-4o"));
    assert_eq!(r.tokens, reported(11, 700));
    assert_eq!(r.ttft, None);
}

#[test]
fn content_types() {
    assert_eq!(
        Format::from_content_type(b"text/event-stream; charset=utf-8"),
        Some(Format::Sse)
    );
    assert_eq!(
        Format::from_content_type(b"application/x-ndjson"),
        Some(Format::Ndjson)
    );
    assert_eq!(
        Format::from_content_type(b"Application/JSON"),
        Some(Format::Json)
    );
    assert_eq!(Format::from_content_type(b"text/html"), None);
}

/// What must not depend on where frames were cut.
fn essence(r: &UsageReport) -> (Option<&str>, Option<Tokens>, u64, bool) {
    (
        r.model.as_deref(),
        r.tokens,
        r.content_events,
        r.ttft.is_some(),
    )
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..200_000, 0..40)
}

proptest! {
    #[test]
    fn any_frame_split_gives_the_same_report(cuts in cuts(), small in proptest::collection::vec(0usize..2_000, 0..20)) {
        let cases: [(Format, Vec<u8>); 5] = [
            (Format::Sse, openai_sse()),
            (Format::Sse, open_webui_sse()),
            (Format::Ndjson, ollama_ndjson(10)),
            (Format::Ndjson, ollama_ndjson(12_000)),
            (Format::Json, openai_json(20_000)),
        ];
        for (format, body) in cases {
            let whole = run(format, &body, &[]).0;
            let scaled: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).chain(small.iter().copied()).collect();
            let split = run(format, &body, &scaled).0;
            prop_assert_eq!(essence(&split), essence(&whole));
            prop_assert!(whole.tokens.is_some_and(|t| t.source == TokenSource::Reported));
        }
    }

    /// Garbage never panics, and never claims reported usage it did not see.
    #[test]
    fn arbitrary_bytes_are_harmless(body in proptest::collection::vec(any::<u8>(), 0..4_000), cuts in cuts()) {
        for format in [Format::Sse, Format::Ndjson, Format::Json] {
            let scaled: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
            let r = run(format, &body, &scaled).0;
            prop_assert!(!r.usage_seen());
        }
    }
}
