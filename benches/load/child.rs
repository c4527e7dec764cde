//! What the two helper servers this executable can become (the mock upstream, the bare hyper
//! proxy) share: a lifetime tied to the benchmark, a listener announced through a port file,
//! an accept loop that survives EMFILE, and their launch from the benchmark.

use crate::proc::{log_file, pinned, Proc};
use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Runs `serve` on a current-thread runtime until the benchmark (our parent) closes our stdin.
pub fn run<F: Future<Output = io::Result<()>>>(name: &str, serve: F) {
    std::thread::spawn(|| {
        let mut b = [0u8; 64];
        let mut stdin = io::stdin();
        while let Ok(n) = stdin.read(&mut b) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(serve) {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// A loopback listener on a free port, written to `portfile` once it is ready.
pub fn listen(portfile: &Path) -> io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind("127.0.0.1:0".parse().expect("addr"))?;
    let listener = sock.listen(8192)?;
    let tmp = portfile.with_extension("tmp");
    std::fs::write(&tmp, listener.local_addr()?.port().to_string())?;
    std::fs::rename(&tmp, portfile)?;
    Ok(listener)
}

/// The next connection, with Nagle off; EMFILE and friends back off a little and go on.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Starts this executable with `args` (pinned on CPU 1) and waits for the port file it writes.
pub async fn start(
    tmp: &Path,
    pin: bool,
    tag: &str,
    args: &[String],
) -> Result<(Proc, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let portfile = tmp.join(format!("{tag}.port"));
    let log = tmp.join(format!("{tag}.log"));
    let (o, e) = log_file(&log).map_err(|e| e.to_string())?;
    let child = pinned(pin, 1, &exe)
        .args(args.iter().map(|a| {
            if a == "PORTFILE" {
                portfile.as_os_str().to_owned()
            } else {
                a.into()
            }
        }))
        .stdin(Stdio::piped())
        .stdout(o)
        .stderr(e)
        .spawn()
        .map_err(|e| format!("spawn {tag}: {e}"))?;
    let p = Proc::new(tag, child, log);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Some(port) = std::fs::read_to_string(&portfile)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            return Ok((p, SocketAddr::from(([127, 0, 0, 1], port))));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{tag} did not start"))
}
