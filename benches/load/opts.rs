//! Command-line options and the scenario sizes they select (quick or full run).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Opts {
    pub quick: bool,
    pub only: Option<Vec<String>>,
    pub held: Option<usize>,
    pub held_cycles: Option<usize>,
    pub keep: bool,
}

impl Opts {
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            quick: false,
            only: None,
            held: None,
            held_cycles: None,
            keep: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--keep" => o.keep = true,
                "--held-cycles" => {
                    let v = it.next().ok_or("--held-cycles needs a number")?;
                    o.held_cycles = Some(v.parse().map_err(|_| "--held-cycles needs a number")?);
                }
                "--only" => {
                    let v = it.next().ok_or("--only needs a list")?;
                    o.only = Some(v.split(',').map(|s| s.trim().to_string()).collect());
                }
                "--held" => {
                    let v = it.next().ok_or("--held needs a number")?;
                    o.held = Some(v.parse().map_err(|_| "--held needs a number")?);
                }
                // `cargo bench` passes `--bench`; ignore it and anything unknown.
                _ => {}
            }
        }
        Ok(o)
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == scenario))
    }
}

#[derive(Clone, Copy)]
pub struct Cfg {
    pub dur: Duration,
    pub warm: Duration,
    pub conns: usize,
    pub sse_streams: usize,
    pub sse_chunks: u64,
    pub sse_gap_ms: u64,
    pub sse_rounds: usize,
    pub tput_chunks: u64,
    pub tput_dur: Duration,
    pub held: usize,
    pub held_cycles: usize,
    pub hold_s: u64,
    pub held_limit: Duration,
}

impl Cfg {
    pub fn new(o: &Opts) -> Cfg {
        let mut c = if o.quick {
            Cfg {
                dur: Duration::from_secs(1),
                warm: Duration::from_millis(200),
                conns: 64,
                sse_streams: 200,
                sse_chunks: 16,
                sse_gap_ms: 20,
                sse_rounds: 1,
                tput_chunks: 64,
                tput_dur: Duration::from_secs(1),
                held: 1000,
                held_cycles: 1,
                hold_s: 60,
                held_limit: Duration::from_secs(20),
            }
        } else {
            Cfg {
                dur: Duration::from_secs(5),
                warm: Duration::from_millis(500),
                conns: 64,
                sse_streams: 200,
                sse_chunks: 64,
                sse_gap_ms: 20,
                sse_rounds: 4,
                tput_chunks: 64,
                tput_dur: Duration::from_secs(4),
                held: 5000,
                held_cycles: 1,
                hold_s: 120,
                held_limit: Duration::from_secs(60),
            }
        };
        if let Some(h) = o.held {
            c.held = h;
        }
        if let Some(n) = o.held_cycles {
            c.held_cycles = n.clamp(1, 5);
        }
        c
    }
}
