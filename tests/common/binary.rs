//! The real `llmgate` binary as a child process, for signals, exit codes and RSS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_llmgate"))
}

impl Binary {
    /// Runs `llmgate --config FILE` where FILE holds `extra` after a [server] table with free
    /// ports and JSON logs; returns once it logged its listening addresses.
    pub fn start(extra: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Like `start`, with the config written into `dir` (where a test may put a keys file).
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Self {
        Self::spawn(dir, extra, None)
    }

    /// Like `start`, with the open-file limit (soft and hard) set to `nofile`.
    pub fn start_with_fd_limit(extra: &str, nofile: u32) -> Self {
        Self::spawn(tempfile::tempdir().unwrap(), extra, Some(nofile))
    }

    fn spawn(dir: tempfile::TempDir, extra: &str, nofile: Option<u32>) -> Self {
        let path = dir.path().join("llmgate.toml");
        std::fs::write(&path, config_text(extra)).unwrap();
        let mut cmd = match nofile {
            None => Command::new(exe()),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(exe());
                sh
            }
        };
        let mut child = cmd
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("llmgate listening") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("llmgate did not report its listeners");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = v["listen"].as_str().unwrap().parse().unwrap();
        let admin = v["admin"].as_str().unwrap().parse().unwrap();
        Self {
            child,
            addr,
            admin,
            log,
            _dir: dir,
        }
    }

    /// The directory holding the config file.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Replaces the config file (same [server] and [log] tables as `start`), e.g. before SIGHUP.
    pub fn rewrite_config(&self, extra: &str) {
        std::fs::write(self.dir().join("llmgate.toml"), config_text(extra)).unwrap();
    }

    /// Waits until a log line contains `needle` and returns it; `None` on timeout.
    pub fn wait_log(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// A field of /proc/PID/status in KiB, e.g. "VmRSS" or "VmHWM".
    pub fn status_kib(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// `extra` may bring its own `[log]` table (JSON at info level, like the default here).
fn config_text(extra: &str) -> String {
    let log = if extra.contains("[log]") {
        ""
    } else {
        "[log]\nformat = \"json\"\nlevel = \"info\"\n"
    };
    format!("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra}\n{log}")
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
