//! The real binary's JSON log: access lines name the identity and never hold a credential,
//! buffered lines are all written before the process exits, and a config without `[auth]` is
//! announced at startup.

mod common;
use common::auth::*;
use common::binary::Binary;
use common::*;
use http_body_util::BodyExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_names_the_identity_and_never_a_credential() {
    let owui = open_webui(Duration::ZERO).await;
    let (key, entry) = new_key("team-a", "auth.keys");
    let bin = Binary::start(&format!(
        "[[upstreams]]\nname = \"owui\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"owui\"\n[auth]\nintrospect_upstream = \"owui\"\nopenwebui_jwt_secret = \"{JWT_SECRET}\"\n{entry}",
        owui.addr
    ));
    let token = jwt(JWT_SECRET, "u7", 600);
    let wrong_key = "lg-ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    let bad_sk = "sk-badbadbadbadbadbadbadbadbadbadb";
    let requests: Vec<(&str, &str, String)> = vec![
        ("/api/models", "authorization", format!("Bearer {key}")),
        ("/api/v1/chats/", "cookie", format!("token={token}")),
        ("/api/models", "x-api-key", SK_GOOD.to_string()),
        (
            "/api/models",
            "authorization",
            format!("Bearer {wrong_key}"),
        ),
        ("/api/models", "authorization", format!("Bearer {bad_sk}")),
        (
            "/ws/socket.io/?EIO=4&transport=polling&token=",
            "x-none",
            String::new(),
        ),
    ];
    for (path, header, value) in &requests {
        let path = if path.ends_with("token=") {
            format!("{path}{token}")
        } else {
            path.to_string()
        };
        let mut req = request("GET", &path, full(""));
        if !value.is_empty() {
            req.headers_mut().insert(*header, value.parse().unwrap());
        }
        let resp = send(bin.addr, req).await;
        let _ = resp.into_body().collect().await;
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let access: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = bin
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "llmgate::access")
            .collect();
        if lines.len() >= requests.len() || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let got: Vec<(&str, u64)> = access
        .iter()
        .map(|v| {
            (
                v["identity"].as_str().unwrap(),
                v["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("team-a", 200),
            ("user:u7", 200),
            ("user:u1", 200),
            ("-", 401),
            ("-", 401),
            ("user:u7", 200)
        ]
    );
    let log = bin.log_text();
    for secret in [
        key.as_str(),
        token.as_str(),
        SK_GOOD,
        wrong_key,
        bad_sk,
        JWT_SECRET,
    ] {
        assert!(
            !log.contains(secret),
            "a credential is in the log: {secret}"
        );
    }
    // Not even a prefix long enough to narrow a guess.
    assert!(!log.contains(&key[..12]) && !log.contains(&SK_GOOD[..12]));
}

#[test]
fn startup_without_auth_warns_that_nothing_is_authenticated() {
    let bin = Binary::start(
        "[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\n",
    );
    let log = bin.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("no [auth] section"))
        .expect("no warning");
    assert!(line.contains("WARN"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_access_lines_are_written_before_exit() {
    let up = MockUpstream::start(|_req| async { json(200, r#"{"ok":true}"#) }).await;
    // An hour-long flush interval: only the shutdown flush can write these lines.
    let mut bin = Binary::start(&format!(
        "[[upstreams]]\nname = \"u\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\n\
         [log]\nformat = \"json\"\nlevel = \"info\"\naccess_log_flush = \"1h\"\n",
        up.addr
    ));
    for i in 0..3 {
        let resp = send(bin.addr, request("GET", &format!("/v1/x{i}"), full(""))).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let access = |log: &str| log.matches("\"target\":\"llmgate::access\"").count();
    assert_eq!(access(&bin.log_text()), 0, "written before the interval");

    bin.signal("TERM");
    assert!(bin
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    let log = bin.log_text();
    assert_eq!(access(&log), 3, "{log}");
    let stopped = log.find("llmgate stopped").expect("stop line");
    assert!(log.rfind("llmgate::access").unwrap() < stopped, "{log}");
}
