//! End to end with the official `openai` and `ollama` Python clients, through llmgate to an
//! in-process mock that speaks Open WebUI's OpenAI-compatible API and Ollama's NDJSON API.
//! The Python interpreter comes from `LLMGATE_PYTHON` or `target/pyenv` (made by tests/setup.sh).

mod common;
use common::*;
use http::Response;
use std::path::PathBuf;
use std::process::Command;

const WORDS: [&str; 4] = ["Hello", " from", " the", " mock"];

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LLMGATE_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/pyenv/bin/python"
    ));
    assert!(
        p.exists(),
        "no Python with openai and ollama: run tests/setup.sh (or set LLMGATE_PYTHON)"
    );
    p
}

async fn openwebui_and_ollama_mock() -> MockUpstream {
    MockUpstream::start(|req| async move {
        let path = req.uri().path().to_string();
        let body = body_string(req.into_body()).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let stream = v["stream"].as_bool();
        match path.as_str() {
            "/api/models" => json(200, r#"{"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"ollama"}]}"#),
            "/api/chat/completions" if v["model"] != "mock-model" => json(400, r#"{"detail":"Model not found"}"#),
            "/api/chat/completions" if stream == Some(true) => {
                let mut chunks: Vec<bytes::Bytes> = WORDS
                    .iter()
                    .map(|w| sse(&format!(r#"{{"id":"c1","object":"chat.completion.chunk","created":0,"model":"mock-model","choices":[{{"index":0,"delta":{{"content":"{w}"}},"finish_reason":null}}]}}"#)))
                    .collect();
                chunks.push(sse(r#"{"id":"c1","object":"chat.completion.chunk","created":0,"model":"mock-model","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12}}"#));
                chunks.push(sse("[DONE]"));
                Response::builder().header("content-type", "text/event-stream").body(stream_of(chunks)).unwrap()
            }
            "/api/chat/completions" => json(200, r#"{"id":"c1","object":"chat.completion","created":0,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12}}"#),
            "/ollama/api/tags" => json(200, r#"{"models":[{"name":"mock-model:latest","model":"mock-model:latest","modified_at":"2026-01-01T00:00:00Z","size":1,"digest":"abc","details":{"format":"gguf","family":"llama","parameter_size":"1B","quantization_level":"Q4"}}]}"#),
            "/ollama/api/chat" | "/ollama/api/generate" => {
                let chat = path.ends_with("chat");
                let line = |w: &str, done: bool| {
                    let content = if chat { format!(r#""message":{{"role":"assistant","content":"{w}"}}"#) } else { format!(r#""response":"{w}""#) };
                    let tail = if done { r#","done_reason":"stop","prompt_eval_count":8,"eval_count":4"# } else { "" };
                    bytes::Bytes::from(format!("{{\"model\":\"mock-model\",\"created_at\":\"2026-01-01T00:00:00Z\",{content},\"done\":{done}{tail}}}\n"))
                };
                if stream == Some(false) {
                    return Response::builder().header("content-type", "application/json").body(full(line("Hello from the mock", true))).unwrap();
                }
                let mut lines: Vec<_> = WORDS.iter().map(|w| line(w, false)).collect();
                lines.push(line("", true));
                Response::builder().header("content-type", "application/x-ndjson").body(stream_of(lines)).unwrap()
            }
            _ => json(404, r#"{"detail":"Not Found"}"#),
        }
    })
    .await
}

async fn run_client(script: &str, base: String) {
    let script = format!("{}/tests/e2e/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(base)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "client failed:\n{text}");
    assert!(text.contains(": ok"), "{text}");
}

#[tokio::test]
async fn official_openai_client_stream_and_non_stream() {
    let mock = openwebui_and_ollama_mock().await;
    let proxy = Proxy::to(mock.addr, "").await;
    run_client("openai_client.py", proxy.url("/api")).await;
    assert!(mock
        .seen()
        .iter()
        .all(|s| s.headers["authorization"] == "Bearer sk-test"));
    // One non-streamed and one streamed completion, 8 + 4 tokens each, one TTFT sample.
    assert_tokens(&proxy, 16.0, 8.0, 1.0).await;
}

async fn assert_tokens(proxy: &Proxy, prompt: f64, completion: f64, streams: f64) {
    let series = |kind: &str| {
        format!(
            r#"llmgate_tokens_total{{identity="anonymous",kind="{kind}",model="mock-model",source="reported"}}"#
        )
    };
    let (p, c) = (series("prompt"), series("completion"));
    let ttft = r#"llmgate_time_to_first_token_seconds_count{model="mock-model"}"#;
    llm::expect_metrics(proxy, &[(&p, prompt), (&c, completion), (ttft, streams)]).await;
}

#[tokio::test]
async fn official_ollama_client_stream_and_non_stream() {
    let mock = openwebui_and_ollama_mock().await;
    let proxy = Proxy::to(mock.addr, "").await;
    run_client("ollama_client.py", proxy.url("/ollama")).await;
    assert!(mock
        .seen()
        .iter()
        .any(|s| s.uri.path() == "/ollama/api/chat"));
    // chat (JSON), chat (NDJSON) and generate (NDJSON), 8 + 4 tokens each.
    assert_tokens(&proxy, 24.0, 12.0, 2.0).await;
}

/// An OpenAI-compatible relay that only accepts its own key.
async fn relay_mock() -> MockUpstream {
    MockUpstream::start(|req| async move {
        if req.headers()["authorization"] != "Bearer relay-key" {
            return json(401, r#"{"error":{"message":"bad key","type":"auth","code":null}}"#);
        }
        let path = req.uri().path().to_string();
        let body = body_string(req.into_body()).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let chunk = |delta: &str| format!(r#"{{"id":"r1","object":"chat.completion.chunk","created":0,"model":"gpt-4o","choices":[{{"index":0,"delta":{delta},"finish_reason":null}}]}}"#);
        match path.as_str() {
            "/v1/models" => json(200, r#"{"object":"list","data":[{"id":"gpt-4o","object":"model","created":0,"owned_by":"relay"}]}"#),
            "/v1/chat/completions" if v["stream"] == true => {
                let chunks = ["Hello", " from", " the", " relay"]
                    .iter()
                    .map(|w| sse(&chunk(&format!(r#"{{"content":"{w}"}}"#))))
                    .chain([sse("[DONE]")])
                    .collect();
                Response::builder().header("content-type", "text/event-stream").body(stream_of(chunks)).unwrap()
            }
            "/v1/chat/completions" => json(200, r#"{"id":"r1","object":"chat.completion","created":0,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the relay"},"finish_reason":"stop"}]}"#),
            _ => json(404, r#"{"error":{"message":"not found"}}"#),
        }
    })
    .await
}

#[tokio::test]
async fn official_openai_client_on_v1_reaches_local_and_relay_models() {
    let web = openwebui_and_ollama_mock().await;
    let relay = relay_mock().await;
    let proxy = Proxy::start(&format!(
        r#"
[[upstreams]]
name = "web"
url = "http://{}"
[[upstreams]]
name = "relay"
url = "http://{}/v1"
bearer = "relay-key"
models = ["gpt-*"]
[[routes]]
path_prefix = "/v1"
upstream = "web"
rewrite_prefix = "/api"
[[routes]]
path_prefix = "/v1/chat/completions"
models = ["gpt-*"]
upstream = "relay"
rewrite_prefix = "/chat/completions"
"#,
        web.addr, relay.addr
    ))
    .await;
    run_client("openai_v1_client.py", proxy.url("/v1")).await;
    let chats = |m: &MockUpstream| {
        m.seen()
            .iter()
            .filter(|s| s.uri.path().ends_with("/chat/completions"))
            .count()
    };
    assert_eq!((chats(&web), chats(&relay)), (2, 2));
}
