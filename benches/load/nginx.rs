//! nginx, the reference proxy: finding it, its config (same job as llmgate's) and launch.

use crate::proc::{free_port, log_file, pinned, Proc};
use crate::procfs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn nginx_bin() -> Option<PathBuf> {
    [
        "/usr/sbin/nginx",
        "/usr/bin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

pub fn nginx_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("-v")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .map(|s| s.trim_start_matches("nginx version: ").to_string())
        .unwrap_or_else(|| "?".into())
}

pub async fn start_nginx(
    bin: &Path,
    tmp: &Path,
    mock_port: u16,
    pin: bool,
    nofile: u64,
) -> Result<(Proc, SocketAddr), String> {
    let dir = tmp.join("nginx");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\n\
         worker_rlimit_nofile {nofile};\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 30000; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 gzip off;\n\
         \x20 tcp_nodelay on;\n\
         \x20 keepalive_requests 10000000;\n\
         \x20 keepalive_timeout 75s;\n\
         \x20 client_body_temp_path {d}/client_body;\n\
         \x20 proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 upstream mock {{\n\
         \x20   server 127.0.0.1:{mock_port};\n\
         \x20   keepalive 64;\n\
         \x20   keepalive_requests 10000000;\n\
         \x20 }}\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port} backlog=4096;\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://mock;\n\
         \x20     proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n\
         \x20     proxy_buffering off;\n\
         \x20     proxy_request_buffering off;\n\
         \x20     proxy_buffer_size 16k;\n\
         \x20     proxy_buffers 4 16k;\n\
         \x20     proxy_read_timeout 600s;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let log = dir.join("stderr.log");
    let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
    let child = pinned(pin, 1, bin)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .arg("-g")
        .arg("daemon off;")
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .map_err(|e| format!("spawn nginx: {e}"))?;
    let mut p = Proc::new("nginx", child, dir.join("error.log"));
    p.term_grace = Some(Duration::from_secs(3));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    p.wait_ready(
        addr,
        "/api/models",
        Duration::from_secs(10),
        "nginx exited",
        "nginx not answering within 10 s",
    )
    .await?;
    p.extra = procfs::children(p.pid());
    Ok((p, addr))
}
