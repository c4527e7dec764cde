//! `llmgate check` accepts good configs and explains bad ones: key, line and fix.

mod common;
use common::binary::exe;
use std::process::Command;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(exe())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("LLMGATE_TEST_UNSET")
        .env("LLMGATE_TEST_SECRET", "s3cret")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8000"

[[upstreams]]
name = "openwebui"
url = "http://127.0.0.1:8080"

[[routes]]
path_prefix = "/"
upstream = "openwebui"
"#;

#[test]
fn shipped_config_is_valid() {
    let out = Command::new(exe())
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/llmgate.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = check(GOOD);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("valid"));
}

#[test]
fn unknown_key_names_key_line_and_fix() {
    let (code, text) = check(&GOOD.replace("listen = ", "lisen = "));
    assert_ne!(code, 0);
    assert!(text.contains(":3:"), "no line number in: {text}");
    assert!(text.contains("lisen"), "key not named in: {text}");
    assert!(text.contains("fix:"), "no fix in: {text}");
}

#[test]
fn bad_duration_is_explained() {
    let (code, text) = check(&GOOD.replace(
        "url = \"http://127.0.0.1:8080\"",
        "url = \"http://127.0.0.1:8080\"\nconnect_timeout = \"2 fortnights\"",
    ));
    assert_ne!(code, 0);
    assert!(text.contains("connect_timeout"), "{text}");
    assert!(text.contains(":8:"), "{text}");
    assert!(
        text.contains("\"2s\""),
        "example of a valid duration missing: {text}"
    );
}

#[test]
fn route_to_unknown_upstream_is_explained() {
    let (code, text) = check(&GOOD.replace("upstream = \"openwebui\"", "upstream = \"openwebiu\""));
    assert_ne!(code, 0);
    assert!(
        text.contains("routes.upstream") && text.contains("openwebiu"),
        "{text}"
    );
    assert!(text.contains(":11:"), "{text}");
    assert!(
        text.contains("openwebui"),
        "known names not offered: {text}"
    );
}

#[test]
fn missing_env_var_is_a_config_error() {
    let (code, text) = check(&format!(
        "{GOOD}\n[log]\nlevel = \"${{LLMGATE_TEST_UNSET}}\"\n"
    ));
    assert_ne!(code, 0);
    assert!(
        text.contains("LLMGATE_TEST_UNSET") && text.contains("not set"),
        "{text}"
    );
    assert!(text.contains("log.level"), "{text}");
    let (code, text) = check(&format!(
        "{GOOD}\n[log]\nlevel = \"info\" # ${{LLMGATE_TEST_SECRET}}\n"
    ));
    assert_eq!(code, 0, "{text}");
}

#[test]
fn other_mistakes_are_explained() {
    let cases = [
        (
            GOOD.replace("http://127.0.0.1:8080", "ftp://x"),
            "upstreams.url",
        ),
        (
            GOOD.replace("path_prefix = \"/\"", "path_prefix = \"api\""),
            "routes.path_prefix",
        ),
        (
            GOOD.replace("[server]", "[server]\nmax_request_body = \"10 parsecs\""),
            "max_request_body",
        ),
        (
            GOOD.replace("[server]", "[server]\nadmin_listen = \"127.0.0.1:8000\""),
            "server.admin_listen",
        ),
        (
            GOOD.replace("[server]", "[server]\nworker_threads = 0"),
            "server.worker_threads",
        ),
        (
            format!("{GOOD}\n[[upstreams]]\nname = \"openwebui\"\nurl = \"http://h\"\n"),
            "upstreams.name",
        ),
        ("[server\n".to_string(), "TOML"),
        (
            GOOD.replace("[server]", "[server]\nmax_header_bytes = \"1KiB\""),
            "server.max_header_bytes",
        ),
        (
            GOOD.replace("[server]", "[server]\nmax_headers = 0"),
            "server.max_headers",
        ),
        (
            GOOD.replace("[server]", "[server]\nrequest_body_timeout = \"0s\""),
            "server.request_body_timeout",
        ),
        (
            GOOD.replace("[server]", "[server]\nmax_connections = 0"),
            "server.max_connections",
        ),
        (
            GOOD.replace("[server]", "[server]\nwebsocket_paths = [\"ws\"]"),
            "server.websocket_paths",
        ),
    ];
    for (text, expect) in cases {
        let (code, out) = check(&text);
        assert_ne!(code, 0, "accepted: {text}");
        assert!(
            out.contains(expect) || out.to_lowercase().contains(&expect.to_lowercase()),
            "expected {expect:?} in: {out}"
        );
        assert!(out.contains("fix:"), "no fix in: {out}");
    }
}

#[test]
fn version_flag() {
    let out = Command::new(exe()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("llmgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn metrics_and_pricing_mistakes_name_key_line_and_fix() {
    let good = format!(
        "{GOOD}\n[metrics]\nmax_label_values = 50\n\n[[pricing]]\nmodel = \"gpt-4o*\"\ninput_per_million = 2.5\noutput_per_million = 10.0\n"
    );
    assert_eq!(check(&good).0, 0, "{}", check(&good).1);
    let pricing_line = good.lines().position(|l| l.starts_with("model =")).unwrap() + 1;
    let cases = [
        (
            good.replace("max_label_values = 50", "max_label_values = 0"),
            "metrics.max_label_values",
            None,
        ),
        (
            good.replace("max_label_values = 50", "max_labels = 50"),
            "metrics.max_labels",
            None,
        ),
        (
            good.replace("\"gpt-4o*\"", "\"gpt-[4o\""),
            "pricing.model",
            Some(pricing_line),
        ),
        (
            good.replace("= 10.0", "= -1.0"),
            "pricing.output_per_million",
            Some(pricing_line),
        ),
    ];
    for (text, key, line) in cases {
        let (code, out) = check(&text);
        assert_eq!(code, 78, "accepted: {text}");
        assert!(
            out.contains(&format!("`{key}`")),
            "expected {key:?} in: {out}"
        );
        assert!(out.contains("fix:"), "no fix in: {out}");
        if let Some(line) = line {
            assert!(
                out.contains(&format!(":{line}:")),
                "expected line {line} in: {out}"
            );
        }
    }
}

#[test]
fn rate_limit_mistakes_name_key_line_and_fix() {
    let cases = [
        (
            "backend = \"redis\"\nredis_url = \"http://nope\"",
            "rate_limit.redis_url",
            ":15:",
        ),
        (
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "rate_limit.trusted_proxies",
            ":14:",
        ),
        (
            "exempt_routes = [\"ui\"]",
            "rate_limit.exempt_routes",
            ":14:",
        ),
        (
            "tokens_per_minute = 1000\ndefault_completion_reservation = 0",
            "rate_limit.default_completion_reservation",
            ":15:",
        ),
        ("on_backend_error = \"maybe\"", "on_backend_error", ":14:"),
        ("burts = 5", "burts", ":14:"),
    ];
    for (section, key, line) in cases {
        let text = format!("{GOOD}\n[rate_limit]\n{section}\n");
        let (code, out) = check(&text);
        assert_ne!(code, 0, "accepted: {text}");
        assert!(out.contains(key), "expected {key:?} in: {out}");
        assert!(out.contains(line), "expected line {line} in: {out}");
        assert!(out.contains("fix:"), "no fix in: {out}");
        assert!(
            !out.contains("nope"),
            "the Redis URL may hold a password: {out}"
        );
    }
    let (code, out) = check(&format!(
        "{GOOD}\n[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\nexempt_routes = [\"/\"]\n"
    ));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn model_settings_are_explained() {
    let relay = "\n[[upstreams]]\nname = \"relay\"\nurl = \"https://relay.example/v1\"\n";
    // (config, key named, the text on the line the error must point at)
    let cases = [
        (format!("{GOOD}{relay}models = [\"gpt-[\"]\n"), "upstreams.models", "models ="),
        (
            format!("{GOOD}{relay}ca_file = \"/nonexistent/ca.pem\"\n"),
            "upstreams.ca_file",
            "ca_file",
        ),
        (
            format!("{GOOD}\n[[routes]]\npath_prefix = \"/\"\nupstream = \"openwebui\"\n"),
            "routes.path_prefix",
            "path_prefix = \"/\"",
        ),
        (
            format!("{GOOD}\n[[routes]]\npath_prefix = \"/v1\"\nupstream = \"openwebui\"\nmodels = []\n"),
            "routes.models",
            "models = []",
        ),
        (format!("{GOOD}\n[model_routing]\npeek_window = 0\n"), "model_routing.peek_window", ""),
        (format!("{GOOD}\n[model_cache]\nttl = \"0s\"\n"), "model_cache.ttl", ""),
        (format!("{GOOD}\n[model_cache]\nmax_size = \"1KiB\"\n"), "model_cache.max_size", ""),
        (
            format!("{GOOD}\n[model_cache]\nvary_headers = [\"bad header\"]\n"),
            "model_cache.vary_headers",
            "",
        ),
    ];
    for (text, key, at) in cases {
        let (code, out) = check(&text);
        assert_ne!(code, 0, "accepted: {text}");
        assert!(out.contains(key), "expected {key:?} in: {out}");
        assert!(out.contains("fix:"), "no fix in: {out}");
        if !at.is_empty() {
            let line = text[..text.rfind(at).unwrap()].matches('\n').count() + 1;
            assert!(
                out.contains(&format!(":{line}:")),
                "expected line {line} in: {out}"
            );
        }
    }
    // A relay beside the route without `models` on the same prefix is fine.
    let ok = format!(
        "{GOOD}{relay}models = [\"gpt-*\"]\nmodel_list = [\"gpt-4o\"]\n\n[[routes]]\npath_prefix = \"/\"\nupstream = \"relay\"\nmodels = [\"gpt-*\"]\n"
    );
    let (code, out) = check(&ok);
    assert_eq!(code, 0, "{out}");
}
