//! The agent under test, as a user runs it: `youwatch-agent --dry-run -c CONFIG`, the WAF
//! reporting every attack entry to an alert file, the same `agent.state_dir` across restarts,
//! stopped with SIGTERM (it drains and saves its cursor) or SIGKILL.

use std::{
    fs::OpenOptions,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// How the agent is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Term,
    Kill,
}

/// Counters read from `/metrics` just before a stop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub rotations: u64,
    pub truncations: u64,
    pub alerts_dropped: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        self.rotations += o.rotations;
        self.truncations += o.truncations;
        self.alerts_dropped += o.alerts_dropped;
    }
}

/// Everything that stays the same across the restarts of one run.
#[derive(Clone, Debug)]
pub struct AgentSetup {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub alerts: PathBuf,
    /// The agent's stderr, appended across runs.
    pub log: PathBuf,
    pub metrics: SocketAddr,
}

impl AgentSetup {
    /// Writes the configuration for following `audit_log` in `dir`.
    pub fn write(bin: &Path, dir: &Path, audit_log: &Path, extra_yaml: &str) -> AgentSetup {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let setup = AgentSetup {
            bin: bin.to_owned(),
            config: dir.join("agent.yaml"),
            alerts: dir.join("alerts.jsonl"),
            log: dir.join("agent.log"),
            metrics: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let yaml = format!(
            "agent:\n  state_dir: {state}\n\
             inventory:\n  mode: node-local\n\
             telemetry:\n  listen: {addr}\n  alerts:\n    stdout: false\n    file: {alerts}\n\
             waf:\n  audit_log: {log}\n  report: attacks\n  follow:\n    start_at: beginning\n{extra_yaml}",
            state = dir.join("state").display(),
            addr = setup.metrics,
            alerts = setup.alerts.display(),
            log = audit_log.display(),
        );
        std::fs::write(&setup.config, yaml).unwrap();
        setup
    }

    pub fn start(&self) -> Agent {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["--dry-run", "--config"])
            .arg(&self.config)
            .env("YOUWATCH_LOG_FORMAT", "text")
            .env("YOUWATCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        Agent {
            child,
            metrics: self.metrics,
        }
    }
}

/// The agent's log line once its WAF input follows the audit log.
const FOLLOWING: &str = "following a file";

pub struct Agent {
    child: Child,
    metrics: SocketAddr,
}

/// How a stop went.
#[derive(Clone, Copy, Debug)]
pub struct Stopped {
    pub how: Stop,
    pub status: ExitStatus,
    /// Signal to exit.
    pub took: Duration,
    pub counters: Counters,
}

/// A SIGTERM'd agent that has not exited by then is killed (and the stop reported).
const TERM_LIMIT: Duration = Duration::from_secs(30);

impl Agent {
    /// Fails when the agent has exited on its own (a crash or a refused configuration).
    pub fn assert_running(&mut self, setup: &AgentSetup) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the agent exited by itself ({status}); its log:\n{}",
                tail_of(&setup.log)
            );
        }
    }

    /// Waits until the agent follows the audit log (its first run: before, nothing says
    /// where it starts, and a first run reads only the file the path names).
    pub fn wait_following(&mut self, setup: &AgentSetup) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&setup.log).is_ok_and(|log| log.contains(FOLLOWING)) {
            self.assert_running(setup);
            assert!(
                Instant::now() < deadline,
                "the agent did not start following the audit log within 60 s; its log:\n{}",
                tail_of(&setup.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn counters(&self) -> Counters {
        scrape(self.metrics).unwrap_or_default()
    }

    pub fn stop(mut self, how: Stop) -> Stopped {
        let counters = self.counters();
        let start = Instant::now();
        match how {
            // SAFETY: signalling our own child by its pid.
            Stop::Term => unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            },
            Stop::Kill => self.child.kill().unwrap(),
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > TERM_LIMIT {
                self.child.kill().unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Stopped {
            how,
            status,
            took: start.elapsed(),
            counters,
        }
    }
}

/// The last lines of a log file (for failure messages).
pub fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn scrape(addr: SocketAddr) -> Option<Counters> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: agent\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let value = |name: &str, label: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Some(Counters {
        rotations: value("youwatch_tail_rotations_total", "source=\"waf\""),
        truncations: value("youwatch_tail_truncations_total", "source=\"waf\""),
        alerts_dropped: value("youwatch_bus_dropped_total", "listener=\"alerts\""),
    })
}
