//! Events of each dialect, read one at a time.

use super::*;

/// The first event of a stream.
fn first(json: &[u8]) -> Option<Event<'_>> {
    inspect(json, true, &mut Dialect::Unknown)
}

#[test]
fn openai_chunks() {
    let mut dialect = Dialect::Unknown;
    let role = br#"{"id":"c","model":"gpt-4o","choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}"#;
    let ev = inspect(role, true, &mut dialect).unwrap();
    assert!(!ev.content);
    assert_eq!(ev.model, Some("gpt-4o"));
    assert!(!ev.usage.any());
    assert_eq!(dialect, Dialect::Chat);
    let tok = br#"{"choices":[{"delta":{"content":"Hi"}}]}"#;
    assert!(inspect(tok, false, &mut dialect).unwrap().content);
    let reasoning = br#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#;
    assert!(inspect(reasoning, false, &mut dialect).unwrap().content);
    let usage = br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    let u = inspect(usage, false, &mut dialect).unwrap().usage;
    assert_eq!((u.prompt, u.completion), (Some(9), Some(12)));
    let last = br#"{"choices":[{"delta":{"content":"!"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
    assert_eq!(
        inspect(last, false, &mut dialect).unwrap().usage.completion,
        Some(2)
    );
}

#[test]
fn quoted_text_is_not_a_key() {
    let tricky = br#"{"choices":[{"delta":{"content":"say \"usage\": {\"prompt_tokens\": 5}"}}]}"#;
    let ev = first(tricky).unwrap();
    assert!(ev.content);
    assert!(!ev.usage.any());
}

#[test]
fn open_webui_python_spacing_and_sources() {
    let mut dialect = Dialect::Unknown;
    let sources = br#"{"sources": [{"source": {"type": "file", "content": "x"}}]}"#;
    assert!(inspect(sources, true, &mut dialect).is_none());
    assert_eq!(dialect, Dialect::Unknown, "a sources line says nothing");
    let last = br#"{"id": "chatcmpl-1", "model": "llama3.2:latest", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"response_token/s": 62.2, "input_tokens": 26, "output_tokens": 282, "prompt_tokens": 26, "completion_tokens": 282, "eval_count": 282}}"#;
    let ev = inspect(last, true, &mut dialect).unwrap();
    assert_eq!(ev.model, Some("llama3.2:latest"));
    assert_eq!(ev.usage.prompt, Some(26));
    assert_eq!(ev.usage.completion, Some(282));
}

#[test]
fn ollama_lines() {
    let mut dialect = Dialect::Unknown;
    let tok = br#"{"model":"llama3.2","created_at":"t","message":{"role":"assistant","content":"The"},"done":false}"#;
    let ev = inspect(tok, true, &mut dialect).unwrap();
    assert!(ev.content && !ev.usage.any());
    assert_eq!(ev.model, Some("llama3.2"));
    assert_eq!(dialect, Dialect::Ollama);
    let fin = br#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"prompt_eval_duration":1,"eval_count":282,"eval_duration":2}"#;
    for mut d in [Dialect::Unknown, dialect] {
        let ev = inspect(fin, false, &mut d).unwrap();
        assert!(!ev.content);
        assert_eq!(ev.usage.prompt, Some(26));
        assert_eq!(ev.usage.completion, Some(282));
    }
    assert!(first(br#"{"status":"pulling manifest"}"#).is_none());
}

#[test]
fn responses_and_anthropic_events() {
    let d = br#"{"type":"response.output_text.delta","delta":"Hi"}"#;
    assert!(first(d).unwrap().content);
    let done = br#"{"type":"response.completed","response":{"model":"gpt-4o","usage":{"input_tokens":3,"output_tokens":4}}}"#;
    let ev = first(done).unwrap();
    assert_eq!(ev.model, Some("gpt-4o"));
    assert_eq!(ev.usage.completion, Some(4));
    let mut dialect = Dialect::Unknown;
    let start = br#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":7,"output_tokens":1}}}"#;
    let delta = br#"{"type":"message_delta","usage":{"output_tokens":30}}"#;
    let mut c = Counts::default();
    c.merge(inspect(start, true, &mut dialect).unwrap().usage);
    c.merge(inspect(delta, false, &mut dialect).unwrap().usage);
    assert_eq!((c.prompt, c.completion), (Some(7), Some(30)));
    assert!(first(br#"{"type":"file","name":"a"}"#).is_none());
}

#[test]
fn json_heads() {
    assert!(completion_head(
        br#"{"id":"x","object":"chat.completion","model":"m"#
    ));
    assert!(completion_head(br#" { "model": "llama3.2", "created_at""#));
    assert!(!completion_head(
        br#"{"id":"chat-uuid","title":"t","chat":{"messages":[{"model":"m","usage":{}}]}}"#
    ));
    assert!(!completion_head(br#"{"models":[{"name":"x"}]}"#));
}
