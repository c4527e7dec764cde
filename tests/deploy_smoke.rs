//! The compose stack's processes, for real, on loopback: deploy/smoke/run.sh starts llmgate with
//! deploy/llmgate.toml, Debian's Prometheus with deploy/prometheus/prometheus.yml, Redis and a
//! stand-in Open WebUI, and checks the health check, authentication (llmgate key, Open WebUI
//! JWT, none), limits kept in Redis, the scrape and alert rules, and the drain on SIGTERM.

mod common;
use common::binary::exe;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn compose_topology_serves_and_prometheus_scrapes_llmgate() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/smoke/run.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .arg(exe())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            // SIGTERM lets the script's trap stop what it started.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "smoke failed:\n{stdout}\n{stderr}");
    for line in [
        "smoke: redis answers PONG",
        "smoke: HEALTHCHECK passes",
        "a chat gets 401 without one and streams with an llmgate key and with an Open WebUI JWT",
        "smoke: Prometheus scrapes llmgate: up{job=\"llmgate\"} = 1",
        "alert rules from alerts.yml",
        "smoke: rate limits were decided in Redis",
        "smoke: llmgate drained and exited 0 on SIGTERM",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
