//! `[auth]`, route and keys-file mistakes are explained (key, line, fix), the built-in default
//! config is valid without any environment, and `llmgate keys new|hash` work.

mod common;
use common::binary::exe;
use std::io::Write;
use std::process::{Command, Stdio};

const BASE: &str = r#"[[upstreams]]
name = "openwebui"
url = "http://127.0.0.1:8080"

[[routes]]
path_prefix = "/"
upstream = "openwebui"
"#;

/// `llmgate check` on `text` (with `keys` as keys.toml next to it): exit code and output.
fn check(text: &str, keys: Option<&str>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmgate.toml");
    std::fs::write(&path, text).unwrap();
    if let Some(k) = keys {
        std::fs::write(dir.path().join("keys.toml"), k).unwrap();
    }
    let out = Command::new(exe())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("WEBUI_SECRET_KEY")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

fn expect_error(text: &str, keys: Option<&str>, needles: &[&str]) {
    let (code, out) = check(text, keys);
    assert_eq!(code, 78, "accepted:\n{text}\n{out}");
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in: {out}");
    }
    assert!(out.contains("fix:"), "no fix in: {out}");
}

#[test]
fn built_in_default_is_valid_without_any_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(exe())
        .arg("check")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn auth_mistakes_name_key_line_and_fix() {
    let hash = "a".repeat(64);
    expect_error(
        &format!("{BASE}\n[auth]\n"),
        None,
        &["auth", "no identity source", ":9:"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\nopenwebui_jwt_secret = \"short\"\n"),
        None,
        &["auth.openwebui_jwt_secret", ":10:", "5 bytes"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\nopenwebui_jwt_secret = \"${{WEBUI_SECRET_KEY}}\"\n"),
        None,
        &["WEBUI_SECRET_KEY", "not set", ":10:"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\nintrospect_upstream = \"owui\"\n"),
        None,
        &["auth.introspect_upstream", "owui", ":10:"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\nintrospect_upstream = \"openwebui\"\nintrospect_tll = \"1s\"\n"),
        None,
        &["introspect_tll", ":11:"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\n[[auth.keys]]\nid = \"a b\"\nsha256 = \"{hash}\"\n"),
        None,
        &["keys.id", ":11:"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\n[[auth.keys]]\nid = \"a\"\nsha256 = \"{hash}\"\nrpm = 5\n"),
        None,
        &["rpm", ":13:"],
    );
    expect_error(
        &format!("{BASE}\n[auth]\nkeys_file = \"missing.toml\"\n"),
        None,
        &["missing.toml", "cannot read the keys file"],
    );
}

#[test]
fn keys_file_mistakes_name_the_file_and_line() {
    let with_file = format!("{BASE}\n[auth]\nkeys_file = \"keys.toml\"\n");
    let good = format!("[[keys]]\nid = \"a\"\nsha256 = \"{}\"\n", "a".repeat(64));
    assert_eq!(check(&with_file, Some(&good)).0, 0);
    assert_eq!(check(&with_file, Some("# no keys yet\n")).0, 0);
    let cases = [
        (
            good.replace("aaaa\"", "aaaa0\""),
            vec!["keys.toml:3", "keys.sha256", "64 hex"],
        ),
        (
            format!(
                "{good}\n[[keys]]\nid = \"a\"\nsha256 = \"{}\"\n",
                "b".repeat(64)
            ),
            vec!["keys.toml:6", "used twice"],
        ),
        (
            format!(
                "{good}\n[[keys]]\nid = \"b\"\nsha256 = \"{}\"\n",
                "A".repeat(64)
            ),
            vec!["keys.toml:7", "same hash"],
        ),
        (
            good.replace("id = \"a\"", "id = \"a\"\nmodels = [\"llama[\"]"),
            vec!["keys.models", "glob"],
        ),
        (good.replace("sha256", "key"), vec!["keys.toml:3", "key"]),
    ];
    for (keys, needles) in cases {
        expect_error(&with_file, Some(&keys), &needles);
    }
}

#[test]
fn route_mistakes_are_explained() {
    let route = |extra: &str| format!("{BASE}\n[[routes]]\nupstream = \"openwebui\"\n{extra}\n");
    expect_error(
        &route("path = \"/a\"\npath_prefix = \"/a\""),
        None,
        &["exactly one", ":10:"],
    );
    expect_error(&route(""), None, &["exactly one"]);
    expect_error(
        &route("path_prefix = \"/static/../api/\""),
        None,
        &["routes.path_prefix", "\"/api/\"", ":11:"],
    );
    expect_error(
        &route("path = \"/a/%2e%2e\""),
        None,
        &["routes.path", "canonical"],
    );
    expect_error(
        &route("path = \"/x\"\npublic = true\nroles = [\"admin\"]"),
        None,
        &["public"],
    );
    expect_error(
        &route("path = \"/x\"\nidentities = [\"team-a\"]"),
        None,
        &["no [auth]"],
    );
    // The same string as an exact path and as a prefix are two different routes.
    assert_eq!(check(&route("path = \"/\"\npublic = true"), None).0, 0);
    expect_error(&route("path_prefix = \"/\""), None, &["configured twice"]);
}

#[test]
fn keys_new_prints_a_key_once_and_its_entry() {
    let out = Command::new(exe())
        .args(["keys", "new", "--id", "team-a"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("no key printed")
        .to_string();
    assert!(key.starts_with("lg-") && key.len() == 67, "{key}");
    assert!(key[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    let entry_start = text.find("[[keys]]").expect("no entry printed");
    let file: toml::Table = toml::from_str(&text[entry_start..]).unwrap();
    let entry = &file["keys"].as_array().unwrap()[0];
    assert_eq!(entry["id"].as_str(), Some("team-a"));
    let hash = entry["sha256"].as_str().unwrap().to_string();
    assert!(
        !text[entry_start..].contains(&key),
        "the key itself is in the entry"
    );

    // `keys hash` agrees, with or without a trailing newline.
    for input in [key.clone(), format!("{key}\n")] {
        let mut child = Command::new(exe())
            .args(["keys", "hash"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), hash);
    }
    let other = Command::new(exe())
        .args(["keys", "new", "--id", "team-a"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8(other.stdout).unwrap().contains(&key),
        "keys repeat"
    );
    let bad = Command::new(exe())
        .args(["keys", "new", "--id", "user:x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
