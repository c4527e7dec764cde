//! LLM metrics and access log after scripted traffic: tokens, cost, TTFT, inter-token gaps,
//! how streams ended, the label cap, and trace context passed through.

mod common;
use common::binary::Binary;
use common::llm::*;
use common::*;
use std::time::Duration;

const PRICING: &str = r#"
[[pricing]]
model = "gpt-4o*"
input_per_million = 2.5
output_per_million = 10.0
"#;

const TOKENS: &str = "llmgate_tokens_total";

fn tokens(model: &str, kind: &str, source: &str) -> String {
    format!(r#"{TOKENS}{{identity="anonymous",kind="{kind}",model="{model}",source="{source}"}}"#)
}

#[tokio::test]
async fn three_chunk_sse_stream_with_usage_gives_tokens_cost_and_one_ttft() {
    let mock = MockUpstream::start(|_| async {
        let frames = openai_stream("gpt-4o-mini", &["Hel", "lo", "!"], Some((9, 3)));
        paced("text/event-stream", frames, Duration::from_millis(20))
    })
    .await;
    let proxy = Proxy::to(mock.addr, PRICING).await;
    let resp = send(
        proxy.addr,
        request("POST", "/v1/chat/completions", full("{}")),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = read_to_end(resp).await;
    assert!(body.ends_with("data: [DONE]\n\n"), "stream arrived whole");

    let m = expect_metrics(
        &proxy,
        &[
            (&tokens("gpt-4o-mini", "prompt", "reported"), 9.0),
            (&tokens("gpt-4o-mini", "completion", "reported"), 3.0),
            // exactly one TTFT sample, and a gap between each of the 3 content events
            (
                r#"llmgate_time_to_first_token_seconds_count{model="gpt-4o-mini"}"#,
                1.0,
            ),
            (
                r#"llmgate_inter_token_seconds_count{model="gpt-4o-mini"}"#,
                2.0,
            ),
            (
                r#"llmgate_stream_ended_total{reason="complete",upstream="mock"}"#,
                1.0,
            ),
            (
                r#"llmgate_upstream_ttfb_seconds_count{upstream="mock"}"#,
                1.0,
            ),
        ],
    )
    .await;
    let gap_sum = metric(
        &m,
        r#"llmgate_inter_token_seconds_sum{model="gpt-4o-mini"}"#,
    )
    .unwrap();
    assert!(gap_sum >= 0.01, "two paced gaps of ~20 ms, got {gap_sum}");
    let cost = r#"llmgate_cost_usd_total{identity="anonymous",model="gpt-4o-mini"}"#;
    let usd = metric(&m, cost).unwrap();
    assert!(
        (usd - (9.0 * 2.5 + 3.0 * 10.0) / 1e6).abs() < 1e-12,
        "cost {usd}"
    );
}

#[tokio::test]
async fn tokens_and_cost_are_counted_per_identity() {
    let mock = MockUpstream::start(|_| async {
        let frames = openai_stream("gpt-4o", &["a"], Some((7, 1)));
        paced("text/event-stream", frames, Duration::ZERO)
    })
    .await;
    let (key, entry) = auth::new_key("team-a", "auth.keys");
    let proxy = Proxy::to(mock.addr, &format!("[auth]\n{entry}\n{PRICING}")).await;
    let mut req = request("POST", "/v1/chat/completions", full("{}"));
    let bearer = format!("Bearer {key}");
    req.headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    read_to_end(send(proxy.addr, req).await).await;
    let series = |kind: &str| {
        format!(r#"{TOKENS}{{identity="team-a",kind="{kind}",model="gpt-4o",source="reported"}}"#)
    };
    let m = expect_metrics(
        &proxy,
        &[(&series("prompt"), 7.0), (&series("completion"), 1.0)],
    )
    .await;
    let cost = r#"llmgate_cost_usd_total{identity="team-a",model="gpt-4o"}"#;
    assert!(metric(&m, cost).is_some_and(|usd| usd > 0.0), "{m}");
    assert!(!m.contains(&key), "the key never appears in the metrics");
}

#[tokio::test]
async fn cancelled_stream_counts_client_cancel_and_estimated_tokens() {
    let (mock, rx_slot) = fed_upstream("text/event-stream").await;
    let proxy = Proxy::to(mock.addr, PRICING).await;
    let request_body =
        r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = send(
        proxy.addr,
        request("POST", "/v1/chat/completions", full(request_body)),
    )
    .await;
    let upstream = rx_slot.await.unwrap();
    let mut body = resp.into_body();
    for frame in openai_stream("gpt-4o", &["a", "b"], None)
        .into_iter()
        .take(3)
    {
        upstream.send(Ok(frame)).await.unwrap();
        assert!(next_chunk(&mut body).await.is_some());
    }
    drop(body); // the client hangs up before any usage arrived

    let prompt = request_body.len().div_ceil(4) as f64;
    let m = expect_metrics(
        &proxy,
        &[
            (
                r#"llmgate_stream_ended_total{reason="client_cancel",upstream="mock"}"#,
                1.0,
            ),
            (&tokens("gpt-4o", "completion", "estimated"), 2.0),
            (&tokens("gpt-4o", "prompt", "estimated"), prompt),
        ],
    )
    .await;
    assert_eq!(metric(&m, &tokens("gpt-4o", "prompt", "reported")), None);
    assert!(
        metric(
            &m,
            r#"llmgate_cost_usd_total{identity="anonymous",model="gpt-4o"}"#
        )
        .unwrap()
            > 0.0
    );
}

#[tokio::test]
async fn ollama_ndjson_and_json_answers_are_counted() {
    let mock = MockUpstream::start(|req| async move {
        match req.uri().path() {
            "/api/chat" => paced(
                "application/x-ndjson",
                ollama_stream("llama3.2", &["The", " sky"], 26, 2),
                Duration::from_millis(5),
            ),
            _ => json(200, r#"{"id":"c2","object":"chat.completion","created":1,"model":"qwen3","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#),
        }
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await;
    post(&proxy, "/api/chat").await;
    post(&proxy, "/v1/chat/completions").await;

    let m = expect_metrics(
        &proxy,
        &[
            (&tokens("llama3.2", "prompt", "reported"), 26.0),
            (&tokens("llama3.2", "completion", "reported"), 2.0),
            (&tokens("qwen3", "prompt", "reported"), 5.0),
            (&tokens("qwen3", "completion", "reported"), 1.0),
            (
                r#"llmgate_time_to_first_token_seconds_count{model="llama3.2"}"#,
                1.0,
            ),
        ],
    )
    .await;
    assert!(
        !m.contains(r#"llmgate_time_to_first_token_seconds_count{model="qwen3"}"#),
        "a non-streamed answer has no TTFT"
    );
    assert!(
        !m.contains("llmgate_cost_usd_total{"),
        "no price table, no cost"
    );
}

#[tokio::test]
async fn llm_switch_off_records_no_llm_series() {
    let mock = MockUpstream::start(|_| async {
        paced(
            "text/event-stream",
            openai_stream("gpt-4o", &["x"], Some((1, 1))),
            Duration::ZERO,
        )
    })
    .await;
    let proxy = Proxy::to(mock.addr, "[metrics]\nllm = false\n").await;
    post(&proxy, "/v1/chat/completions").await;
    let ended = r#"llmgate_stream_ended_total{reason="complete",upstream="mock"}"#;
    let m = expect_metrics(&proxy, &[(ended, 1.0)]).await;
    assert!(!m.contains("llmgate_tokens_total{"), "{m}");
    assert!(!m.contains("llmgate_time_to_first_token_seconds_count{"));
}

#[tokio::test]
async fn model_label_is_capped_with_10000_distinct_models() {
    let mock = MockUpstream::start(|req| async move {
        let model = req.headers()["x-model"].to_str().unwrap().to_string();
        json(200, &format!(r#"{{"object":"chat.completion","model":"{model}","choices":[],"usage":{{"prompt_tokens":1,"completion_tokens":2}}}}"#))
    })
    .await;
    let proxy = Proxy::to(mock.addr, "").await; // default max_label_values = 200
    const N: usize = 10_000;
    const CLIENTS: usize = 8;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = proxy.addr;
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                for i in (c..N).step_by(CLIENTS) {
                    let mut req = request("POST", "/v1/chat/completions", full("{}"));
                    req.headers_mut()
                        .insert("x-model", format!("model-{i}").parse().unwrap());
                    sender.ready().await.unwrap();
                    read_to_end(sender.send_request(req).await.unwrap()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let other = tokens("other", "prompt", "reported");
    // Nothing is lost past the cap: the 9 800 later models are counted as `other`.
    let m = expect_metrics(&proxy, &[(&other, (N - 200) as f64)]).await;
    let models = label_values(&m, TOKENS, "model");
    assert_eq!(models.len(), 201, "200 models and `other`");
    assert!(models.contains("other"));
    let ttft_models = label_values(&m, "llmgate_time_to_first_token_seconds_bucket", "model");
    assert!(ttft_models.len() <= 201);
}

#[tokio::test]
async fn trace_context_reaches_the_upstream() {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let proxy = Proxy::to(mock.addr, "").await;
    let context = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ("baggage", "userId=alice,serverNode=DF%2028"),
    ];
    let mut req = request("POST", "/v1/chat/completions", full("{}"));
    for (name, value) in context {
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    assert_eq!(send(proxy.addr, req).await.status(), 200);
    let seen = &mock.seen()[0];
    for (name, value) in context {
        assert_eq!(seen.headers[name], value, "{name} passed through");
    }
}

#[tokio::test]
async fn access_log_has_model_ttft_tokens_and_how_the_stream_ended() {
    let mock = MockUpstream::start(|_| async {
        paced(
            "text/event-stream",
            openai_stream("gpt-4o-mini", &["a", "b", "c"], Some((9, 3))),
            Duration::from_millis(5),
        )
    })
    .await;
    let bin = Binary::start(&format!(
        "[[upstreams]]\nname = \"mock\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"mock\"\n",
        mock.addr
    ));
    let mut req = request("POST", "/v1/chat/completions?key=secret", full("{}"));
    req.headers_mut()
        .insert("x-request-id", "obs-log-1".parse().unwrap());
    read_to_end(send(bin.addr, req).await).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let line = loop {
        let found = bin
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("obs-log-1"))
            .cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line:\n{}",
            bin.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["target"], "llmgate::access", "{v}");
    assert_eq!(v["path"], "/v1/chat/completions", "never the query string");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["prompt_tokens"], 9);
    assert_eq!(v["completion_tokens"], 3);
    assert_eq!(v["tokens_source"], "reported");
    assert_eq!(v["outcome"], "complete");
    assert_eq!(v["identity"], "-");
    assert_eq!(v["route"], "/");
    assert_eq!(v["upstream"], "mock");
    let ttft = v["ttft_ms"].as_f64().unwrap();
    let duration = v["duration_ms"].as_f64().unwrap();
    assert!(
        ttft > 0.0 && ttft <= duration,
        "ttft {ttft} within duration {duration}"
    );
}
