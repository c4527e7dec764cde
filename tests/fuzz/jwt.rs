//! JWT parsing: no bearer string panics or authenticates unless it is a token signed with the
//! secret, in HS256, with a future `exp` — and no edit of such a token authenticates.

use crate::cases;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use llmgate::auth::jwt::{is_jwt_shaped, JwtVerifier};
use llmgate::auth::keys::sha256;
use proptest::prelude::*;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

const PERSIST: &str = "tests/fuzz-regressions/jwt.txt";
const SECRET: &str = "fuzz-secret-0123456789abcdef";

/// One verifier for the whole run, so its cache of verified tokens is warm with the genuine
/// tokens while forgeries are tried.
static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(|| JwtVerifier::new(SECRET));

fn verifies(token: &str) -> bool {
    VERIFIER.verify(token, &sha256(token)).is_ok()
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn genuine(id: &str) -> String {
    let claims = serde_json::json!({"id": id, "exp": now() + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,60}",
        prop::sample::select(vec![
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS512"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"HS256","crit":["x"]}"#,
            r#"{"id":"u1","exp":99999999999}"#,
            r#"{"id":"","exp":99999999999}"#,
            r#"{"id":"u1","exp":"99999999999"}"#,
            r#"{"id":"u1","exp":-1}"#,
            r#"{"id":1}"#,
            r#"{"id":"u1","exp":1e20}"#,
            "{}",
            "null",
            "[]",
            "",
        ])
        .prop_map(|s| b64(s.as_bytes())),
        any::<Vec<u8>>().prop_map(|b| b64(&b)),
    ]
}

/// Edits an attacker could make to a token they hold.
#[derive(Debug, Clone)]
enum Tamper {
    /// Replace one byte of the token with another base64url (or any) character.
    Byte(usize, char),
    Delete(usize),
    Insert(usize, char),
    /// Re-encode the header with another `alg` and keep the rest.
    Alg(&'static str),
    /// Swap in other claims (another id, a later exp) and keep the signature.
    Claims(String),
    /// Drop the signature, or the dot before it.
    Unsigned(bool),
    /// Add base64 padding or whitespace somewhere.
    Pad(usize, &'static str),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (
            any::<usize>(),
            prop_oneof![
                prop::sample::select(vec![
                    'A', 'B', 'Q', 'g', 'w', '0', '-', '_', '.', '=', '+', '/'
                ]),
                any::<char>(),
            ]
        )
            .prop_map(|(i, c)| Tamper::Byte(i, c)),
        any::<usize>().prop_map(Tamper::Delete),
        (
            any::<usize>(),
            prop::sample::select(vec!['A', 'a', '.', '=', ' ', '\n'])
        )
            .prop_map(|(i, c)| Tamper::Insert(i, c)),
        prop::sample::select(vec![
            "none", "None", "HS512", "HS384", "RS256", "ES256", "hs256", ""
        ])
        .prop_map(Tamper::Alg),
        "[a-z0-9]{0,8}"
            .prop_map(|id| Tamper::Claims(format!(r#"{{"id":"{id}","exp":99999999999}}"#))),
        any::<bool>().prop_map(Tamper::Unsigned),
        (
            any::<usize>(),
            prop::sample::select(vec!["=", "==", " ", "\t", "%3D"])
        )
            .prop_map(|(i, s)| Tamper::Pad(i, s)),
    ]
}

fn apply(token: &str, t: &Tamper) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = |i: usize, len: usize| i % len.max(1);
    let parts: Vec<&str> = token.split('.').collect();
    match t {
        Tamper::Byte(i, c) => {
            let i = at(*i, chars.len());
            chars[i] = *c;
            chars.into_iter().collect()
        }
        Tamper::Delete(i) => {
            let i = at(*i, chars.len());
            chars.remove(i);
            chars.into_iter().collect()
        }
        Tamper::Insert(i, c) => {
            chars.insert(at(*i, chars.len() + 1), *c);
            chars.into_iter().collect()
        }
        Tamper::Alg(alg) => {
            let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            format!("{header}.{}.{}", parts[1], parts[2])
        }
        Tamper::Claims(c) => format!("{}.{}.{}", parts[0], b64(c.as_bytes()), parts[2]),
        Tamper::Unsigned(keep_dot) => {
            format!(
                "{}.{}{}",
                parts[0],
                parts[1],
                if *keep_dot { "." } else { "" }
            )
        }
        Tamper::Pad(i, s) => {
            let mut out = token.to_string();
            let mut i = at(*i, out.len() + 1);
            while !out.is_char_boundary(i) {
                i -= 1;
            }
            out.insert_str(i, s);
            out
        }
    }
}

proptest! {
    #![proptest_config(cases(3_000, PERSIST))]

    #[test]
    fn arbitrary_bearer_strings_never_authenticate(s in any::<String>()) {
        let _ = is_jwt_shaped(&s);
        prop_assert!(!verifies(&s), "{s:?}");
    }

    #[test]
    fn jwt_shaped_forgeries_never_authenticate(
        header in part(), claims in part(), sig in part(),
    ) {
        let token = format!("{header}.{claims}.{sig}");
        prop_assert!(is_jwt_shaped(&token));
        prop_assert!(!verifies(&token), "{token}");
    }

    #[test]
    fn tampered_tokens_never_authenticate(
        id in "[a-z0-9-]{1,12}",
        edits in prop::collection::vec(tamper(), 1..4),
    ) {
        let good = genuine(&id);
        prop_assert!(verifies(&good));
        let mut token = good.clone();
        for e in &edits {
            if token.split('.').count() == 3 || !matches!(e, Tamper::Alg(_) | Tamper::Claims(_) | Tamper::Unsigned(_)) {
                token = apply(&token, e);
            }
        }
        if token != good {
            prop_assert!(!verifies(&token), "{good} edited by {edits:?} into {token} still verifies");
        }
    }
}
