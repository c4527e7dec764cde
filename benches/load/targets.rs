//! The measured targets (mock directly, llmgate, llmgate with access log, the bare hyper proxy,
//! nginx): start-up and liveness.

use crate::facts::cmd_out;
use crate::http::http_get;
use crate::llmgate::{llmgate_bin, start_llmgate};
use crate::mock::{mock_port, start_mock};
use crate::nginx::{nginx_bin, nginx_version, start_nginx};
use crate::proc::Proc;
use crate::procfs::{self, Snap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Direct,
    Proxy,
}

impl Target {
    fn new(label: &str, addr: SocketAddr, kind: Kind, pids: Vec<u32>) -> Target {
        Target {
            label: label.into(),
            addr,
            kind,
            pids,
            proc_idx: None,
            rr_only: false,
            dead: None,
            idle_rss_kib: 0,
        }
    }

    /// Whether the target takes part in a scenario (streams: not `rr_only`).
    pub fn measured(&self, streams: bool) -> bool {
        self.dead.is_none() && !(streams && self.rr_only)
    }
}

pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
    pub kind: Kind,
    /// Processes whose CPU and memory are "the proxy" (empty for direct).
    pub pids: Vec<u32>,
    /// Index in the process list, to notice crashes.
    pub proc_idx: Option<usize>,
    /// Only in the request/response scenarios (the access-log variant).
    pub rr_only: bool,
    pub dead: Option<String>,
    pub idle_rss_kib: u64,
}

pub struct Env {
    pub clk_tck: u64,
    pub mock_pid: u32,
}

impl Env {
    pub fn ms(&self, ticks: u64) -> f64 {
        ticks as f64 * 1000.0 / self.clk_tck as f64
    }

    /// A reading of the target's proxy processes and of the mock's CPU time.
    pub fn usage(&self, t: &Target) -> Usage {
        Usage {
            proxy: procfs::snap(&t.pids),
            mock_ticks: procfs::cpu_sum(&[self.mock_pid]),
        }
    }
}

/// What a scenario cost the proxy and the mock between two readings.
#[derive(Clone, Copy)]
pub struct Usage {
    pub proxy: Snap,
    pub mock_ticks: u64,
}

impl Usage {
    pub fn since(self, before: Usage) -> Usage {
        Usage {
            proxy: self.proxy.since(before.proxy),
            mock_ticks: self.mock_ticks - before.mock_ticks,
        }
    }
}

/// Every started process and target, and what went wrong while starting them.
pub struct Lineup {
    pub procs: Vec<Proc>,
    pub targets: Vec<Target>,
    pub env: Env,
    pub problems: Vec<String>,
    pub llmgate_version: String,
    pub nginx_version: String,
}

impl Lineup {
    /// Starts the mock, both llmgate variants and nginx. Only a mock that
    /// does not start is fatal; a proxy that does not is noted in `problems`.
    pub async fn start(tmp: &Path, pin: bool, nofile: u64) -> Result<Lineup, String> {
        let mock = start_mock(tmp, pin).await?;
        let mut l = Lineup {
            procs: Vec::new(),
            targets: Vec::new(),
            env: Env {
                clk_tck: procfs::clk_tck(),
                mock_pid: mock.pid(),
            },
            problems: Vec::new(),
            llmgate_version: String::from("not measured"),
            nginx_version: String::from("not installed"),
        };
        l.procs.push(mock);
        let mport = mock_port(tmp);
        let mock_addr: SocketAddr = format!("127.0.0.1:{mport}").parse().expect("addr");
        l.targets
            .push(Target::new("direct", mock_addr, Kind::Direct, Vec::new()));
        l.start_llmgates(tmp, mport, pin).await;
        match crate::bare::start_bare(tmp, pin, mport).await {
            Ok((p, addr)) => {
                let pid = p.pid();
                l.add_proxy(p, "hyper (bare)", addr, vec![pid], false);
            }
            Err(e) => l.not_measured("hyper (bare)", e),
        }
        l.start_nginx(tmp, mport, pin, nofile).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for t in l.targets.iter_mut() {
            if t.kind == Kind::Proxy {
                t.idle_rss_kib = procfs::rss_kib(&t.pids);
            }
        }
        Ok(l)
    }

    fn add_proxy(&mut self, p: Proc, label: &str, addr: SocketAddr, pids: Vec<u32>, rr_only: bool) {
        self.procs.push(p);
        let mut t = Target::new(label, addr, Kind::Proxy, pids);
        t.proc_idx = Some(self.procs.len() - 1);
        t.rr_only = rr_only;
        self.targets.push(t);
    }

    fn not_measured(&mut self, label: &str, e: String) {
        eprintln!("!! {label} not measured: {e}");
        self.problems.push(format!("{label} not measured: {e}"));
    }

    /// llmgate: plain, and with the access log on (request/response rows only).
    async fn start_llmgates(&mut self, tmp: &Path, mport: u16, pin: bool) {
        let bin = llmgate_bin();
        if !bin.exists() {
            self.problems
                .push(format!("llmgate binary {} not found", bin.display()));
            return;
        }
        self.llmgate_version =
            cmd_out(&bin.display().to_string(), &["--version"]).unwrap_or_default();
        for (tag, label, access, rr_only) in [
            ("llmgate", "llmgate", false, false),
            ("llmgate-log", "llmgate+accesslog", true, true),
        ] {
            match start_llmgate(&bin, tmp, tag, mport, access, pin).await {
                Ok((p, addr)) => {
                    // Sanity check: a model list must come back (llmgate answers it from its
                    // model-list cache, in Open WebUI's `{"data":[...]}` shape).
                    match http_get(addr, "/api/models", Duration::from_secs(5)).await {
                        Ok((200, b)) if b.starts_with(b"{\"data\":[{") => {}
                        other => {
                            let msg = match other {
                                Ok((s, b)) => format!(
                                    "{label}: GET /api/models gave {s}: {}",
                                    String::from_utf8_lossy(&b[..b.len().min(200)])
                                ),
                                Err(e) => format!("{label}: GET /api/models failed: {e}"),
                            };
                            eprintln!("!! {msg}");
                            self.problems.push(msg);
                        }
                    }
                    let pid = p.pid();
                    self.add_proxy(p, label, addr, vec![pid], rr_only);
                }
                Err(e) => self.not_measured(label, e),
            }
        }
    }

    async fn start_nginx(&mut self, tmp: &Path, mport: u16, pin: bool, nofile: u64) {
        let Some(nb) = nginx_bin() else {
            self.problems
                .push("nginx not installed (apt-get install -y nginx)".into());
            return;
        };
        self.nginx_version = nginx_version(&nb);
        match start_nginx(&nb, tmp, mport, pin, nofile).await {
            Ok((p, addr)) => {
                let mut pids = vec![p.pid()];
                pids.extend(p.extra.iter().copied());
                self.add_proxy(p, "nginx", addr, pids, false);
            }
            Err(e) => self.not_measured("nginx", e),
        }
    }

    /// Marks targets whose process exited (listed under "Problems" at the end).
    pub fn check_alive(&mut self) {
        for t in self.targets.iter_mut() {
            if t.dead.is_some() {
                continue;
            }
            if let Some(i) = t.proc_idx {
                if let Some(st) = self.procs[i].exited() {
                    let msg = format!(
                        "{} exited ({st}); log tail:\n{}",
                        t.label,
                        self.procs[i].log_tail(20)
                    );
                    eprintln!("!! {msg}");
                    t.dead = Some(msg);
                }
            }
        }
    }
}
