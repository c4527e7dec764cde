//! The scanner against hand-written edge cases and against serde_json on random documents.

use super::*;

/// Scans `json` split at every possible point, checking all splits agree.
fn scan(json: &str) -> (Status, Vec<Found>) {
    let whole = {
        let mut s = Scanner::new();
        s.feed(json.as_bytes());
        (s.status(), s.take_found())
    };
    for cut in 0..json.len() {
        let mut s = Scanner::new();
        s.feed(&json.as_bytes()[..cut]);
        let mut found = s.take_found();
        s.feed(&json.as_bytes()[cut..]);
        found.extend(s.take_found());
        assert_eq!((s.status(), found), whole, "split at {cut} of {json}");
    }
    whole
}

fn model(v: &str) -> Found {
    Found {
        exact: true,
        value: Some(v.into()),
    }
}

#[test]
fn finds_model_after_nested_values_and_escapes() {
    let json = r#" {"messages":[{"role":"user","content":"say \"model\": {\"x\"} ]"}],
        "temperature":0.5,"stream":true,"n":null,"model":"gpt\u002d4o\"x"}"#;
    assert_eq!(scan(json), (Status::Closed, vec![model("gpt-4o\"x")]));
}

#[test]
fn nested_model_keys_do_not_count() {
    let json = r#"{"metadata":{"model":"nested"},"x":["model"],"model":"top"}"#;
    assert_eq!(scan(json), (Status::Closed, vec![model("top")]));
}

#[test]
fn reports_every_spelling_and_duplicate() {
    let json = r#"{"model":"a","Model":"b","mod\u0065l":"c","MODEL":7,"models":"d"}"#;
    let (status, found) = scan(json);
    assert_eq!(status, Status::Closed);
    let want = vec![
        model("a"),
        Found {
            exact: false,
            value: Some("b".into()),
        },
        model("c"),
        Found {
            exact: false,
            value: None,
        },
    ];
    assert_eq!(found, want);
}

#[test]
fn unicode_values_and_surrogate_pairs() {
    let json = "{\"model\":\"mod\u{e8}le-\\ud83d\\ude00\"}";
    assert_eq!(scan(json).1, vec![model("mod\u{e8}le-\u{1F600}")]);
    let lone = r#"{"model":"x\ud800"}"#;
    assert_eq!(scan(lone).1[0].value, None);
    assert_eq!(scan(r#"{"model\ud800":"x"}"#).1, vec![]);
}

#[test]
fn not_objects_and_malformed_bodies() {
    assert_eq!(scan("--boundary\r\n").0, Status::NotObject);
    assert_eq!(scan(r#"[{"model":"x"}]"#).0, Status::NotObject);
    assert_eq!(
        scan("\u{feff}{\"model\":\"x\"}"),
        (Status::Closed, vec![model("x")])
    );
    // UTF-16 with and without a byte order mark, as Python's json.loads would accept.
    assert_eq!(scan_bytes(b"\xff\xfe{\0"), Status::Malformed);
    assert_eq!(scan_bytes(b"{\0\"\0m\0"), Status::Malformed);
    assert_eq!(scan_bytes(b"\0{\0\""), Status::Malformed);
    assert_eq!(scan(r#"{"model" "x"}"#).0, Status::Malformed);
    assert_eq!(scan(r#"{"a":1,}"#).0, Status::Malformed);
    assert_eq!(scan("{\"model\":\"a\nb\"}").0, Status::Malformed);
    assert_eq!(scan(r#"{"a":1"#).0, Status::Scanning);
}

fn scan_bytes(b: &[u8]) -> Status {
    let mut s = Scanner::new();
    s.feed(b);
    s.status()
}

#[test]
fn long_values_are_unreadable_not_truncated() {
    let long = "x".repeat(MAX_MODEL_LEN + 1);
    let mut s = Scanner::new();
    s.feed(format!(r#"{{"model":"{long}"}}"#).as_bytes());
    assert_eq!(s.take_found()[0].value, None);
}

/// Random documents, serialised by serde_json compact and pretty and fed in random
/// pieces, give exactly the top-level `model` members serde_json sees.
#[test]
fn agrees_with_serde_json_on_random_documents() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use serde_json::{Map, Value};
    const KEYS: [&str; 7] = [
        "model",
        "Model",
        "messages",
        "m\"odel",
        "mod\u{e9}l",
        "",
        "x",
    ];
    fn text(rng: &mut StdRng) -> String {
        let alphabet = [
            'a',
            '"',
            '\\',
            '{',
            '}',
            '[',
            ']',
            ':',
            ',',
            '\n',
            '\u{1}',
            '\u{e9}',
            '\u{1F600}',
        ];
        (0..rng.random_range(0..12))
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect()
    }
    fn key(rng: &mut StdRng) -> String {
        KEYS[rng.random_range(0..KEYS.len())].to_string()
    }
    fn value(rng: &mut StdRng, depth: u32) -> Value {
        match rng.random_range(0..if depth > 3 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => Value::from(rng.random_range(-1e6..1e6)),
            3 => Value::String(text(rng)),
            4 => (0..rng.random_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
            _ => Value::Object(
                (0..rng.random_range(0..4))
                    .map(|_| (key(rng), value(rng, depth + 1)))
                    .collect(),
            ),
        }
    }
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..2000 {
        let doc: Map<String, Value> = (0..rng.random_range(0..6))
            .map(|_| (key(&mut rng), value(&mut rng, 0)))
            .collect();
        let want: Vec<Found> = doc
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("model"))
            .map(|(k, v)| Found {
                exact: k == "model",
                value: v.as_str().map(str::to_string),
            })
            .collect();
        let doc = Value::Object(doc);
        let compact = serde_json::to_string(&doc).unwrap();
        let pretty = serde_json::to_string_pretty(&doc).unwrap();
        for json in [compact, pretty] {
            let mut s = Scanner::new();
            let mut found = Vec::new();
            let mut rest = json.as_bytes();
            while !rest.is_empty() {
                let (piece, tail) = rest.split_at(rng.random_range(1..=rest.len()));
                s.feed(piece);
                found.extend(s.take_found());
                rest = tail;
            }
            assert_eq!((s.status(), &found), (Status::Closed, &want), "{json}");
        }
    }
}

#[test]
fn budget_field_spans_agree_at_every_split() {
    let json = r#"{"messages":[{"max_tokens":1}],"max_tokens": 12 ,"stream":true,"stream_options":{"include_usage":false},"options":{"num_predict":5},"x":"max_tokens"}"#;
    let want = [
        (Field::MaxTokens, "12"),
        (Field::Stream, "true"),
        (Field::StreamOptions, r#"{"include_usage":false}"#),
        (Field::Options, r#"{"num_predict":5}"#),
    ];
    for cut in 0..json.len() {
        let mut s = Scanner::new();
        s.feed(&json.as_bytes()[..cut]);
        s.feed(&json.as_bytes()[cut..]);
        assert_eq!(s.open_at(), Some(0));
        let got: Vec<_> = s
            .spans()
            .iter()
            .map(|sp| (sp.field, &json[sp.start as usize..sp.end as usize]))
            .collect();
        assert_eq!(got, want, "split at {cut}");
    }
}
