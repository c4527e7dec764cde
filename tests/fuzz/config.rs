//! Config parsing: arbitrary text, TOML-shaped text built from the real keys, and the shipped
//! config with random edits never panic; every refusal names a line or a key.

use crate::cases;
use proptest::prelude::*;
use std::sync::LazyLock;

const PERSIST: &str = "tests/fuzz-regressions/config.txt";
const SHIPPED: &str = include_str!("../../config/llmgate.toml");

fn env(var: &str) -> Option<String> {
    match var {
        "SET" => Some("value".into()),
        "QUOTE" => Some("a\"b\\c\n".into()),
        "URL" => Some("http://127.0.0.1:9".into()),
        _ => None,
    }
}

/// The config's name: a `keys_file` is read relative to it, in a directory with no files.
static FILE: LazyLock<(tempfile::TempDir, String)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.toml").display().to_string();
    (dir, file)
});

fn check(text: &str) -> Result<(), TestCaseError> {
    match llmgate::config::parse(&FILE.1, text, &env) {
        Ok(_) => {}
        Err(e) => {
            prop_assert!(
                e.line.is_some() || !e.key.is_empty(),
                "an error with neither line nor key: {e}\n--- input ---\n{text}"
            );
            prop_assert!(!e.message.is_empty(), "{text}");
            let shown = e.to_string();
            prop_assert!(!shown.is_empty());
            if let Some(line) = e.line {
                prop_assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{shown}"
                );
            }
        }
    }
    Ok(())
}

fn header() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "[server]",
        "[log]",
        "[[upstreams]]",
        "[[routes]]",
        "[auth]",
        "[[auth.keys]]",
        "[rate_limit]",
        "[model_cache]",
        "[model_routing]",
        "[metrics]",
        "[[pricing]]",
        "[upstreams]",
        "[[server]]",
        "[x]",
        "[routes.x]",
        "[ auth ]",
        "[[",
        "[]",
    ])
}

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "listen",
        "admin_listen",
        "header_read_timeout",
        "max_request_body",
        "level",
        "format",
        "name",
        "url",
        "host_header",
        "bearer",
        "connect_timeout",
        "response_timeout",
        "idle_timeout",
        "path",
        "path_prefix",
        "upstream",
        "rewrite_prefix",
        "public",
        "models",
        "identities",
        "roles",
        "id",
        "sha256",
        "role",
        "requests_per_minute",
        "burst",
        "requests_per_day",
        "tokens_per_minute",
        "max_concurrent_streams",
        "backend",
        "redis_url",
        "trusted_proxies",
        "exempt_routes",
        "openwebui_jwt_secret",
        "introspect_upstream",
        "keys_file",
        "ttl",
        "paths",
        "max_label_values",
        "model",
        "input_per_million",
        "output_per_million",
        "unknown",
        "é",
        "\"quoted key\"",
        "a.b",
    ])
}

fn value() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "\"owui\"",
        "\"http://127.0.0.1:8080\"",
        "\"https://relay.example/v1\"",
        "\"/\"",
        "\"/api/\"",
        "\"/v1\"",
        "\"\"",
        "\"10s\"",
        "\"0s\"",
        "\"1h\"",
        "\"-1s\"",
        "\"100MiB\"",
        "\"0B\"",
        "\"12 parsecs\"",
        "\"127.0.0.1:0\"",
        "\"[::1]:0\"",
        "\"0.0.0.0:99999\"",
        "\"info\"",
        "\"json\"",
        "\"llmgate=[\"",
        "\"memory\"",
        "\"redis\"",
        "\"redis://x\"",
        "\"${SET}\"",
        "\"${QUOTE}\"",
        "\"${URL}\"",
        "\"${UNSET}\"",
        "\"$${SET}\"",
        "\"${\"",
        "\"gpt-*\"",
        "\"[\"",
        "\"{a,b\"",
        "\"missing.keys\"",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "4294967296",
        "18446744073709551616",
        "1.5",
        "nan",
        "inf",
        "1979-05-27",
        "[]",
        "[\"gpt-*\", \"llama*\"]",
        "[1, \"x\"]",
        "{ a = 1 }",
        "{}",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "'literal'",
        "\"\"\"multi\nline\"\"\"",
        "\"unterminated",
        "\"0000000000000000000000000000000000000000000000000000000000000000\"",
        "\"zz\"",
    ]);
    prop_oneof![
        6 => fixed.prop_map(str::to_string),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[ -~]{0,20}".prop_map(|s| format!("{s:?}")),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => header().prop_map(str::to_string),
        6 => (key(), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,30}",
        1 => Just(String::new()),
        1 => Just("# comment".to_string()),
    ]
}

/// A plausible config to start from: it parses, so edits explore near-valid text.
fn base() -> &'static str {
    r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[[upstreams]]
name = "owui"
url = "http://127.0.0.1:8080"
[[routes]]
path_prefix = "/"
upstream = "owui"
"#
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
        (
            any::<usize>(),
            prop_oneof![
                line().prop_map(|l| format!("\n{l}\n")),
                value(),
                "[\\[\\]=\"\n#.$]{1,3}"
            ]
        )
            .prop_map(|(at, s)| Edit::Insert(at, s)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    let boundary = |s: &String, at: usize| {
        let mut at = at % (s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    for e in edits {
        match e {
            Edit::Delete(at, n) => {
                let from = boundary(&s, *at);
                let to = boundary(&s, from + n).max(from);
                s.replace_range(from..to, "");
            }
            Edit::Insert(at, t) => {
                let at = boundary(&s, *at);
                s.insert_str(at, t);
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(cases(1_000, PERSIST))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text)?;
    }

    #[test]
    fn toml_shaped_text_is_accepted_or_located(lines in prop::collection::vec(line(), 0..30)) {
        check(&lines.join("\n"))?;
    }

    #[test]
    fn edited_configs_are_accepted_or_located(
        shipped in any::<bool>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        check(&apply(if shipped { SHIPPED } else { base() }, &edits))?;
    }
}

#[test]
fn the_starting_points_parse() {
    let parse = |t| llmgate::config::parse("x.toml", t, &env);
    assert!(parse(base()).is_ok());
    // The shipped file names ${OPENAI_API_KEY}-style variables: it parses or says which is unset.
    if let Err(e) = parse(SHIPPED) {
        assert!(e.message.contains("environment variable"), "{e}");
    }
}

/// Found by `toml_shaped_text_is_accepted_or_located`: a `${VAR}` holding a newline was written
/// back as a multi-line string, so later errors named a line past the end of the file.
#[test]
fn expanded_newlines_keep_error_lines() {
    let text = "ttl = \"${QUOTE}\"\n[[routes]]";
    let e = llmgate::config::parse("x.toml", text, &env).unwrap_err();
    assert!(e.line.is_some_and(|l| l <= 2), "{e}");
    check(text).unwrap();
}
