//! llmgate: which binary and source tree are measured, its config and launch.

use crate::proc::{free_port, log_file, pinned, Proc};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The llmgate binary cargo built for this bench (`LLMGATE_BIN` overrides it).
pub fn llmgate_bin() -> PathBuf {
    std::env::var_os("LLMGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_llmgate")))
}

/// The llmgate source tree, to name the measured commit.
pub fn llmgate_src_dir() -> PathBuf {
    std::env::var_os("LLMGATE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub async fn start_llmgate(
    bin: &Path,
    tmp: &Path,
    tag: &str,
    mock_port: u16,
    access_log: bool,
    pin: bool,
) -> Result<(Proc, SocketAddr), String> {
    // The access log is written at info level, so that variant keeps
    // everything else at warn but lets the `llmgate::access` lines out.
    let level = if access_log {
        "warn,llmgate::access=info"
    } else {
        "warn"
    };
    let port = free_port().map_err(|e| e.to_string())?;
    let admin = free_port().map_err(|e| e.to_string())?;
    let cfg = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\n\
         [log]\nlevel = \"{level}\"\naccess_log = {access_log}\n\n\
         [[upstreams]]\nname = \"mock\"\nurl = \"http://127.0.0.1:{mock_port}\"\n\n\
         [[routes]]\npath_prefix = \"/\"\nupstream = \"mock\"\n"
    );
    let cfg_path = tmp.join(format!("{tag}.toml"));
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let log = tmp.join(format!("{tag}.log"));
    let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
    let child = pinned(pin, 1, bin)
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let mut p = Proc::new(tag, child, log);
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin}").parse().expect("addr");
    p.wait_ready(
        admin_addr,
        "/readyz",
        Duration::from_secs(20),
        "llmgate exited during start-up",
        "llmgate /readyz not 200 within 20 s",
    )
    .await?;
    Ok((p, format!("127.0.0.1:{port}").parse().expect("addr")))
}
