//! Model-field peeking: the incremental scanner finds the same top-level `model` members
//! whether a body arrives whole or cut anywhere, agrees with serde_json on every document
//! serde_json accepts (generated, and generated then mangled), and never panics on bytes.

use crate::{cases, cut_points, frames};
use llmgate::models::{Found, Scanner, Status};
use proptest::prelude::*;
use serde_json::{Map, Value};

const PERSIST: &str = "tests/fuzz-regressions/models.txt";

fn scan(body: &[u8], cuts: &[usize]) -> (Status, Vec<Found>) {
    let mut s = Scanner::new();
    let mut found = Vec::new();
    for f in frames(body, cuts) {
        s.feed(f);
        found.extend(s.take_found());
    }
    (s.status(), found)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["model", "Model", "MODEL", "mOdEl", "models", "messages",
            "m\"odel", "mod\u{e9}l", "model ", "", "stream"]).prop_map(str::to_string),
        1 => "[a-zé\"\\\\]{0,6}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.:-]{0,20}",
        "[a\"\\\\{}\\[\\]:,\n\u{1}é😀\u{7f}]{0,12}",
        "x{1020,1030}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), json_value()), 0..6).prop_map(|m| m.into_iter().collect())
}

/// The top-level `model` members serde_json reads, in its order; duplicates cannot occur in
/// a `Map`.
fn expected(doc: &Map<String, Value>) -> Vec<Found> {
    doc.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("model"))
        .map(|(k, v)| Found {
            exact: k == "model",
            value: v.as_str().filter(|s| s.len() <= 1024).map(str::to_string),
        })
        .collect()
}

/// serde_json's object, when it reads `body` as one; duplicate keys as the last one wins.
fn serde_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn mangle() -> impl Strategy<Value = (usize, usize, &'static str)> {
    (
        any::<usize>(),
        0usize..4,
        prop::sample::select(vec![
            "",
            "\"",
            "\\",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "model",
            "\"model\":",
            "\"Model\":\"y\",",
            "\\u006d",
            "\\ud800",
            "\\\"",
            "é",
            "0",
            "null",
            "\u{feff}",
            "\"model\":\"dup\",",
            "\t",
            "\\u0000",
        ]),
    )
}

proptest! {
    #![proptest_config(cases(2_000, PERSIST))]

    #[test]
    fn generated_bodies_agree_with_serde_json_however_cut(
        doc in document(),
        pretty in any::<bool>(),
        raw in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let want = expected(&doc);
        let value = Value::Object(doc);
        let json = if pretty {
            serde_json::to_vec_pretty(&value).unwrap()
        } else {
            serde_json::to_vec(&value).unwrap()
        };
        let whole = scan(&json, &[]);
        prop_assert_eq!(&whole, &(Status::Closed, want));
        let split = scan(&json, &cut_points(&raw, json.len()));
        prop_assert_eq!(&split, &whole);
        if json.len() < 3_000 {
            let every: Vec<usize> = (1..json.len()).collect();
            prop_assert_eq!(&scan(&json, &every), &whole);
        }
    }

    /// Documents with bytes inserted and removed: whatever serde_json still reads as an object,
    /// the scanner reads the same way (the model a route is chosen by is the first exact one;
    /// an access check sees every one, including the duplicate serde_json keeps).
    #[test]
    fn mangled_bodies_agree_with_serde_json_when_it_accepts_them(
        doc in document(),
        edits in prop::collection::vec(mangle(), 1..4),
        raw in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut json = serde_json::to_vec(&Value::Object(doc)).unwrap();
        for (at, del, ins) in edits {
            let at = at % (json.len() + 1);
            let end = (at + del).min(json.len());
            json.splice(at..end, ins.bytes());
        }
        let whole = scan(&json, &[]);
        prop_assert_eq!(&scan(&json, &cut_points(&raw, json.len())), &whole);
        if let Some(obj) = serde_object(&json) {
            prop_assert_eq!(whole.0, Status::Closed, "{}", String::from_utf8_lossy(&json));
            let readable = |v: &Value| v.as_str().filter(|s| s.len() <= 1024).map(str::to_string);
            // serde_json keeps the last of duplicate keys: the scanner's last exact one.
            let last_exact = whole.1.iter().rev().find(|f| f.exact).map(|f| f.value.clone());
            prop_assert_eq!(last_exact, obj.get("model").map(readable), "{}", String::from_utf8_lossy(&json));
            let other_case = |k: &String| k != "model" && k.eq_ignore_ascii_case("model");
            for v in obj.iter().filter(|(k, _)| other_case(k)).map(|(_, v)| v) {
                let want = readable(v);
                prop_assert!(
                    whole.1.iter().any(|f| !f.exact && f.value == want),
                    "{want:?} not found in {}", String::from_utf8_lossy(&json)
                );
            }
            prop_assert_eq!(whole.1.iter().any(|f| !f.exact), obj.keys().any(other_case));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..2_000),
        raw in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let whole = scan(&body, &[]);
        prop_assert_eq!(&scan(&body, &cut_points(&raw, body.len())), &whole);
    }
}
