//! Reloads of the real binary: the keys file is watched (edits, atomic renames, symlink swaps),
//! SIGHUP reloads routes and auth, and a broken file keeps the previous config in force.

mod common;
use common::auth::*;
use common::binary::Binary;
use common::*;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn status_with(addr: SocketAddr, path: &str, key: Option<&str>) -> u16 {
    let req = match key {
        Some(k) => bearer_get(path, k),
        None => request("GET", path, full("")),
    };
    let resp = send(addr, req).await;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// Polls until `path` with `key` answers `want`; false after 5 s.
async fn eventually(addr: SocketAddr, path: &str, key: Option<&str>, want: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if status_with(addr, path, key).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn reload_counts(bin: &Binary) -> (f64, f64) {
    let m = body_string(get(bin.admin, "/metrics").await.into_body()).await;
    let n = |r: &str| {
        metric(
            &m,
            &format!("llmgate_config_reloads_total{{result=\"{r}\"}}"),
        )
        .unwrap_or(0.0)
    };
    (n("ok"), n("error"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_file_changes_apply_without_restart_and_broken_files_keep_the_old_keys() {
    let up = MockUpstream::start(|_| async { json(200, "{}") }).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let (a, entry_a) = new_key("team-a", "keys");
    let (b, entry_b) = new_key("team-b", "keys");
    std::fs::write(&keys, &entry_a).unwrap();
    let bin = Binary::start_in(
        dir,
        &format!(
            "[[upstreams]]\nname = \"u\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\n[auth]\nkeys_file = \"keys.toml\"\n",
            up.addr
        ),
    );
    assert_eq!(status_with(bin.addr, "/x", Some(&a)).await, 200);
    assert_eq!(status_with(bin.addr, "/x", Some(&b)).await, 401);

    // An atomic rename adds team-b.
    write_atomically(&keys, &format!("{entry_a}\n{entry_b}"));
    assert!(
        eventually(bin.addr, "/x", Some(&b), 200).await,
        "new key not picked up"
    );
    assert!(bin
        .wait_log("keys file reloaded", Duration::from_secs(2))
        .is_some());

    // A broken file (bad hash on line 7) changes nothing, and says where and why.
    let broken = format!(
        "{entry_a}\n{}",
        entry_b.replace("sha256 = \"", "sha256 = \"zz")
    );
    write_atomically(&keys, &broken);
    let line = bin
        .wait_log("keys file reload failed", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", bin.log_text()));
    assert!(
        line.contains("keys.toml:7") && line.contains("keys.sha256"),
        "{line}"
    );
    assert_eq!(status_with(bin.addr, "/x", Some(&a)).await, 200);
    assert_eq!(status_with(bin.addr, "/x", Some(&b)).await, 200);

    // A Kubernetes-style symlink swap to a file with only team-b.
    let data = bin.dir().join("..data-2");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("keys.toml"), &entry_b).unwrap();
    let link = bin.dir().join("keys.toml.new");
    std::os::unix::fs::symlink(data.join("keys.toml"), &link).unwrap();
    std::fs::rename(&link, &keys).unwrap();
    assert!(
        eventually(bin.addr, "/x", Some(&a), 401).await,
        "removed key still accepted"
    );
    assert_eq!(status_with(bin.addr, "/x", Some(&b)).await, 200);

    let (ok, err) = reload_counts(&bin).await;
    assert_eq!((ok, err), (2.0, 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes_and_a_broken_config_keeps_the_old_one() {
    // Streams five chunks, 200 ms apart, so one is in flight across the reload.
    let up = MockUpstream::start(|_| async {
        let chunks = futures_util::stream::unfold(0, |i| async move {
            if i == 5 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((
                Ok(hyper::body::Frame::data(bytes::Bytes::from(format!(
                    "c{i};"
                )))),
                i + 1,
            ))
        });
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(http_body_util::StreamBody::new(chunks).boxed())
            .unwrap()
    })
    .await;
    let (key, entry) = new_key("ops", "auth.keys");
    let upstream = format!(
        "[[upstreams]]\nname = \"u\"\nurl = \"http://{}\"\n",
        up.addr
    );
    let bin = Binary::start(&format!(
        "{upstream}[[routes]]\npath_prefix = \"/a/\"\nupstream = \"u\"\n[auth]\n{entry}"
    ));
    assert_eq!(status_with(bin.addr, "/b/x", None).await, 404);

    let addr = bin.addr;
    let k = key.clone();
    let stream = tokio::spawn(async move {
        let resp = send(addr, bearer_get("/a/stream", &k)).await;
        assert_eq!(resp.status(), 200);
        body_string(resp.into_body()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    bin.rewrite_config(&format!(
        "header_read_timeout = \"5s\"\n{upstream}[[routes]]\npath_prefix = \"/b/\"\nupstream = \"u\"\npublic = true\n[auth]\n{entry}"
    ));
    bin.signal("HUP");
    assert!(
        bin.wait_log("configuration reloaded", Duration::from_secs(5))
            .is_some(),
        "{}",
        bin.log_text()
    );
    assert!(
        bin.wait_log("server.header_read_timeout", Duration::from_secs(1))
            .is_some(),
        "no restart warning"
    );
    assert_eq!(status_with(bin.addr, "/b/x", None).await, 200);
    assert_eq!(status_with(bin.addr, "/a/x", Some(&key)).await, 404);
    assert_eq!(
        stream.await.unwrap(),
        "c0;c1;c2;c3;c4;",
        "the stream in flight finished on the config it started with"
    );

    // Line 9 of the file misspells a key: nothing changes, and the log says where.
    bin.rewrite_config(&format!(
        "{upstream}[[routes]]\npath_prefix = \"/c/\"\nupstreem = \"u\"\n"
    ));
    bin.signal("HUP");
    let line = bin
        .wait_log("configuration reload failed", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", bin.log_text()));
    assert!(
        line.contains("llmgate.toml:9") && line.contains("upstreem"),
        "{line}"
    );
    assert_eq!(status_with(bin.addr, "/b/x", None).await, 200);
    assert_eq!(status_with(bin.addr, "/c/x", None).await, 404);
    assert_eq!(reload_counts(&bin).await, (1.0, 1.0));
}
