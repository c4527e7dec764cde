//! Child processes (mock, llmgate, nginx): kill-on-drop handle, pinning, ports and logs.

use crate::http::http_get;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped (also while unwinding from a panic).
pub struct Proc {
    pub name: String,
    child: Child,
    /// Kept open so that the mock exits if this process dies.
    _stdin: Option<ChildStdin>,
    /// Send SIGTERM first and give it this long before SIGKILL.
    pub term_grace: Option<Duration>,
    /// Processes the child forked (nginx workers), killed last.
    pub extra: Vec<u32>,
    pub log: PathBuf,
}

impl Proc {
    /// Takes the child's stdin (if piped) so that it stays open as long as `Proc`.
    pub fn new(name: &str, mut child: Child, log: PathBuf) -> Proc {
        let stdin = child.stdin.take();
        Proc {
            name: name.into(),
            child,
            _stdin: stdin,
            term_grace: None,
            extra: Vec::new(),
            log,
        }
    }

    /// Polls `path` at `addr` until it answers 200, the process exits, or
    /// `limit` passes; the errors start with `exited` or `timeout` and end
    /// with the log tail.
    pub async fn wait_ready(
        &mut self,
        addr: SocketAddr,
        path: &str,
        limit: Duration,
        exited: &str,
        timeout: &str,
    ) -> Result<(), String> {
        let until = Instant::now() + limit;
        loop {
            if let Some(st) = self.exited() {
                return Err(format!("{exited} ({st}): {}", self.log_tail(10)));
            }
            if let Ok((200, _)) = http_get(addr, path, Duration::from_secs(1)).await {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(format!("{timeout}: {}", self.log_tail(10)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            if let Some(grace) = self.term_grace {
                let _ = Command::new("kill")
                    .args(["-TERM", &self.pid().to_string()])
                    .stderr(Stdio::null())
                    .status();
                let until = Instant::now() + grace;
                while Instant::now() < until {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for pid in &self.extra {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "nginx")
                .unwrap_or(false);
            if alive {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Builds a command pinned on CPU `cpu` with taskset when available.
pub fn pinned(pin: bool, cpu: u32, prog: &Path) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub fn log_file(path: &Path) -> io::Result<(Stdio, Stdio)> {
    let f = std::fs::File::create(path)?;
    Ok((Stdio::from(f.try_clone()?), Stdio::from(f)))
}
