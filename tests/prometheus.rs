//! llmgate against the Prometheus tool chain: `promtool` lints a real scrape and the alert
//! rules, a real Prometheus server scrapes the admin port and answers every dashboard query,
//! and the dashboard and alerts only name series llmgate exports.
//! `promtool` and `prometheus` come from the Debian package `prometheus` (tests/setup.sh).

mod common;
use common::llm::*;
use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// llmgate after traffic that touches every series: a priced SSE stream with usage, an
/// NDJSON stream, and a request to an upstream that is down.
async fn busy_proxy() -> (MockUpstream, Proxy) {
    let mock = MockUpstream::start(|req| async move {
        if req.uri().path() == "/api/chat" {
            return paced(
                "application/x-ndjson",
                ollama_stream("llama3.2", &["a", "b"], 4, 2),
                Duration::from_millis(2),
            );
        }
        let frames = openai_stream("gpt-4o-mini", &["a", "b", "c"], Some((9, 3)));
        paced("text/event-stream", frames, Duration::from_millis(2))
    })
    .await;
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start(&format!(
        r#"
[[upstreams]]
name = "mock"
url = "http://{}"
[[upstreams]]
name = "down"
url = "http://{down}"
[[routes]]
path_prefix = "/"
upstream = "mock"
[[routes]]
path_prefix = "/down"
upstream = "down"
[[pricing]]
model = "gpt-4o*"
input_per_million = 0.15
output_per_million = 0.6
"#,
        mock.addr
    ))
    .await;
    for path in ["/v1/chat/completions", "/api/chat"] {
        post(&proxy, path).await;
    }
    assert_eq!(get(proxy.addr, "/down/x").await.status(), 502);
    let want = [(
        r#"llmgate_stream_ended_total{reason="complete",upstream="mock"}"#,
        2.0,
    )];
    scrape_until(&proxy, &want).await;
    (mock, proxy)
}

/// Scrapes of llmgate after refusals: a missing credential (401) and a request over its rate
/// limit (429) on one instance; a rate limit decision its Redis (down) could not make on another.
async fn refusal_scrapes() -> Vec<String> {
    let mock = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let (key, entry) = auth::new_key("team-a", "auth.keys");
    let guarded = Proxy::to(
        mock.addr,
        &format!("[auth]\n{entry}\n[rate_limit]\nrequests_per_minute = 1\nburst = 0\n"),
    )
    .await;
    assert_eq!(get(guarded.addr, "/x").await.status(), 401);
    assert_eq!(auth::bearer_status(guarded.addr, "/x", &key).await, 200);
    assert_eq!(auth::bearer_status(guarded.addr, "/x", &key).await, 429);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unbacked = Proxy::to(
        mock.addr,
        &format!("[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://{dead}\"\nredis_timeout = \"100ms\"\non_backend_error = \"allow\"\n"),
    )
    .await;
    assert_eq!(get(unbacked.addr, "/x").await.status(), 200);
    vec![
        expect_metrics(
            &guarded,
            &[(
                r#"llmgate_ratelimited_total{limit="requests_per_minute"}"#,
                1.0,
            )],
        )
        .await,
        expect_metrics(
            &unbacked,
            &[(
                r#"llmgate_ratelimit_backend_errors_total{action="allow"}"#,
                1.0,
            )],
        )
        .await,
    ]
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (run tests/setup.sh): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.into_owned())
}

#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    let (_mock, proxy) = busy_proxy().await;
    let scrape = proxy.metrics().await;
    assert!(scrape.contains("llmgate_tokens_total{"), "{scrape}");
    for scrape in [vec![scrape], refusal_scrapes().await].concat() {
        let (ok, out) = run_with_stdin(
            Command::new("promtool").args(["check", "metrics"]),
            scrape.as_bytes(),
        );
        assert!(ok, "promtool check metrics:\n{out}\n{scrape}");
    }
}

#[tokio::test]
async fn promtool_accepts_the_alert_rules() {
    let rules = format!("{ROOT}/deploy/prometheus/alerts.yml");
    let (ok, out) = run_with_stdin(
        Command::new("promtool").args(["check", "rules", &rules]),
        b"",
    );
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every `llmgate_*` and `process_*` name in `text`.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["llmgate_", "process_"] {
        for (at, _) in text.match_indices(prefix) {
            let boundary = text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            let len = text[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - at);
            if boundary {
                names.insert(text[at..at + len].to_string());
            }
        }
    }
    names
}

/// The sample names of a scrape (histograms give `_bucket`, `_sum` and `_count`).
fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The dashboard's panel queries (PromQL) and its variable queries (Grafana's `label_values`).
fn dashboard_queries() -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(format!("{ROOT}/deploy/grafana/llmgate.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap().iter();
    let targets = panels.flat_map(|p| p["targets"].as_array().into_iter().flatten());
    let exprs = targets
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let vars = dash["templating"]["list"].as_array().unwrap().iter();
    let var_queries = vars
        .filter_map(|v| v["definition"].as_str().map(str::to_string))
        .collect();
    (exprs, var_queries)
}

#[tokio::test]
async fn dashboard_and_alerts_only_use_exported_series() {
    let (_mock, proxy) = busy_proxy().await;
    let mut exported = exported(&proxy.metrics().await);
    for scrape in refusal_scrapes().await {
        exported.extend(self::exported(&scrape));
    }
    let alerts = std::fs::read_to_string(format!("{ROOT}/deploy/prometheus/alerts.yml")).unwrap();
    let alert_lines: String = alerts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let (exprs, vars) = dashboard_queries();
    assert!(exprs.len() >= 20, "the dashboard has its panels");
    let dashboard = format!("{}\n{}", exprs.join("\n"), vars.join("\n"));
    for (what, text) in [("dashboard", dashboard), ("alerts.yml", alert_lines)] {
        let used = series_names(&text);
        assert!(used.len() >= 5, "{what} uses llmgate series");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses series llmgate does not export: {unknown:?}"
        );
    }
}

/// A Prometheus server, killed when dropped.
struct PromServer(Child, tempfile::TempDir);

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn query(prom: std::net::SocketAddr, expr: &str) -> serde_json::Value {
    let resp = get(
        prom,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )
    .await;
    serde_json::from_str(&body_string(resp.into_body()).await).unwrap()
}

#[tokio::test]
async fn real_prometheus_scrapes_llmgate_and_answers_dashboard_queries() {
    let (_mock, proxy) = busy_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: llmgate\n    static_configs:\n      - targets: [\"{}\"]\n",
            proxy.admin
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus is installed by tests/setup.sh");
    let server = PromServer(child, dir);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Refused until Prometheus listens; then empty until its first scrape of llmgate.
        let ready = tokio::net::TcpStream::connect(port).await.is_ok()
            && query(port, "llmgate_build_info").await["data"]["result"][0]["metric"]["job"]
                == "llmgate";
        if ready {
            break;
        }
        let log =
            std::fs::read_to_string(server.1.path().join("prometheus.log")).unwrap_or_default();
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never returned an llmgate series:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let v = query(
        port,
        r#"llmgate_tokens_total{kind="completion",model="gpt-4o-mini"}"#,
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "3", "{v}");

    for expr in dashboard_queries().0 {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$instance", ".*")
            .replace("$job", ".*")
            .replace("$model", ".*");
        let v = query(port, &expr).await;
        assert_eq!(v["status"], "success", "dashboard query {expr} failed: {v}");
    }
}
