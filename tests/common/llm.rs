//! LLM-shaped upstream answers and metric polling, for the observability tests.

use super::*;

/// `data: {chunk}` events of an OpenAI chat stream: an empty role chunk, one chunk per
/// content piece, then (if given) a usage chunk `(prompt, completion)`, then `[DONE]`.
pub fn openai_stream(model: &str, contents: &[&str], usage: Option<(u64, u64)>) -> Vec<Bytes> {
    let chunk = |delta: &str, usage: &str| {
        sse(&format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"{model}","choices":[{delta}],"usage":{usage}}}"#
        ))
    };
    let mut out = vec![chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":""}}"#,
        "null",
    )];
    for c in contents {
        out.push(chunk(
            &format!(r#"{{"index":0,"delta":{{"content":"{c}"}}}}"#),
            "null",
        ));
    }
    if let Some((p, c)) = usage {
        out.push(chunk(
            "",
            &format!(
                r#"{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{}}}"#,
                p + c
            ),
        ));
    }
    out.push(sse("[DONE]"));
    out
}

/// Ollama `/api/chat` NDJSON lines: one per content piece, then the `done` line.
pub fn ollama_stream(model: &str, contents: &[&str], prompt: u64, eval: u64) -> Vec<Bytes> {
    let line = |content: &str, tail: &str| {
        Bytes::from(format!(
            "{{\"model\":\"{model}\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{{\"role\":\"assistant\",\"content\":\"{content}\"}},{tail}}}\n"
        ))
    };
    let mut out: Vec<Bytes> = contents.iter().map(|c| line(c, "\"done\":false")).collect();
    out.push(line(
        "",
        &format!("\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":{prompt},\"eval_count\":{eval}"),
    ));
    out
}

/// A response whose body frames are sent `gap` apart, each as its own chunk.
pub fn paced(content_type: &str, frames: Vec<Bytes>, gap: Duration) -> Response<MockBody> {
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for f in frames {
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
    });
    Response::builder()
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

/// Reads a response body to its end.
pub async fn read_to_end(resp: Response<Incoming>) -> String {
    body_string(resp.into_body()).await
}

/// POSTs `{}` to `path` through the proxy on a fresh connection and reads the whole answer.
pub async fn post(proxy: &Proxy, path: &str) -> String {
    read_to_end(send(proxy.addr, request("POST", path, full("{}"))).await).await
}

/// Scrapes until every `(series, value)` holds (metrics are recorded as bodies end, a moment
/// after the client saw the end), for at most 5 s; returns the last scrape.
pub async fn scrape_until(proxy: &Proxy, want: &[(&str, f64)]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = proxy.metrics().await;
        let done = want.iter().all(|(s, v)| metric(&text, s) == Some(*v));
        if done || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every `(series, value)` holds (at most 5 s), asserts that they all do, and
/// returns the scrape.
pub async fn expect_metrics(proxy: &Proxy, want: &[(&str, f64)]) -> String {
    let text = scrape_until(proxy, want).await;
    for (series, value) in want {
        assert_eq!(metric(&text, series), Some(*value), "{series}\n{text}");
    }
    text
}

/// The distinct values of `label` over the samples of `family` in a scrape.
pub fn label_values(text: &str, family: &str, label: &str) -> std::collections::BTreeSet<String> {
    let key = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter_map(|l| {
            let at = l.find(&key)? + key.len();
            let end = l[at..].find('"')?;
            Some(l[at..at + end].to_string())
        })
        .collect()
}
