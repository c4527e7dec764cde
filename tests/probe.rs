//! `llmgate probe URL`, the image's HEALTHCHECK: exit 0 only on a 2xx answer, within its deadline.

mod common;
use common::binary::{exe, Binary};
use common::*;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn probe(args: &[&str]) -> Output {
    Command::new(exe())
        .arg("probe")
        .args(args)
        // The probe must not read the config: a broken path here proves it.
        .env("LLMGATE_CONFIG", "/nonexistent/llmgate.toml")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn passes_on_ready_and_live_llmgate_without_reading_config() {
    let gate = Binary::start(
        "[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\n",
    );
    for path in ["/readyz", "/livez"] {
        let out = probe(&[&format!("http://{}{path}", gate.admin)]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", stderr(&out));
    }
    let out = probe(&[&format!("http://{}/nope", gate.admin)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("answered 404"), "{}", stderr(&out));
}

#[tokio::test]
async fn readiness_fails_while_draining_and_liveness_holds() {
    let (mock, rx_slot) = fed_upstream("text/event-stream").await;
    let mut gate = Binary::start(&format!(
        "drain_timeout = \"20s\"\n[[upstreams]]\nname = \"u\"\nurl = \"http://{}\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"u\"\n",
        mock.addr
    ));
    let resp = send(
        gate.addr,
        request("POST", "/v1/chat/completions", full("{}")),
    )
    .await;
    let upstream = rx_slot.await.unwrap();
    let mut body = resp.into_body();
    upstream.send(Ok(sse("one"))).await.unwrap();
    assert_eq!(next_chunk(&mut body).await.unwrap(), "data: one\n\n");

    gate.signal("TERM");
    let ready = format!("http://{}/readyz", gate.admin);
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = tokio::task::spawn_blocking({
            let ready = ready.clone();
            move || probe(&[&ready])
        })
        .await
        .unwrap();
        if out.status.code() != Some(0) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        out.status.code(),
        Some(1),
        "readyz never failed during drain"
    );
    assert!(stderr(&out).contains("answered 503"), "{}", stderr(&out));
    let live = format!("http://{}/livez", gate.admin);
    let out = tokio::task::spawn_blocking(move || probe(&[&live]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "livez failed while draining");

    drop(upstream);
    assert!(next_chunk(&mut body).await.is_none());
    let status = gate.wait_exit(Duration::from_secs(15)).expect("no exit");
    assert!(status.success());
}

#[test]
fn fails_when_nothing_listens() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = probe(&[&format!("http://127.0.0.1:{port}/readyz")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[test]
fn gives_up_on_a_silent_server_at_its_deadline() {
    // The kernel completes the handshake from the backlog; nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let out = probe(&[
        "--timeout",
        "300ms",
        &format!("http://{}/readyz", silent.local_addr().unwrap()),
    ]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        took < Duration::from_secs(5),
        "probe hung for {took:?} past its 300ms deadline"
    );
    assert!(
        took >= Duration::from_millis(300),
        "gave up early: {took:?}"
    );
}

#[test]
fn fails_on_an_answer_that_is_not_http() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
    });
    let out = probe(&[&format!("http://{addr}/")]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not HTTP"), "{}", stderr(&out));
}

#[test]
fn bad_url_is_a_usage_error_with_an_example() {
    for url in [
        "https://127.0.0.1:9100/readyz",
        "127.0.0.1:9100",
        "http://h:0/",
    ] {
        let out = probe(&[url]);
        assert_eq!(out.status.code(), Some(64), "{url}");
        assert!(
            stderr(&out).contains("http://127.0.0.1:9100/readyz"),
            "{}",
            stderr(&out)
        );
    }
}
