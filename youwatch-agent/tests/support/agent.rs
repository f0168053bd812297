//! The agent binary as a child process: its stdout and stderr lines on channels, waits for a
//! log line or a JSON line, signals; and the commands that start it.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

/// The agent, with its stdout and stderr lines arriving on channels.
pub struct Agent {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    pub log: Vec<String>,
    /// Every stdout JSON line read so far.
    pub out: Vec<Value>,
}

impl Agent {
    pub fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd
            .env("YOUWATCH_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting youwatch-agent");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Agent {
            child,
            stdout,
            stderr,
            log: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Waits for a log line containing `text`; panics with the log after 20 s.
    pub fn wait_log(&mut self, text: &str) -> String {
        self.wait_log_all(&[text])
    }

    /// Waits for a log line containing every one of `texts`; panics with the log after 20 s.
    pub fn wait_log_all(&mut self, texts: &[&str]) -> String {
        self.log_within_all(texts, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no log line with {texts:?}; log:\n{}", self.log.join("\n")))
    }

    /// The first log line containing `text` within `timeout`.
    pub fn log_within(&mut self, text: &str, timeout: Duration) -> Option<String> {
        self.log_within_all(&[text], timeout)
    }

    /// The first log line containing every one of `texts` (read before, or within `timeout`).
    pub fn log_within_all(&mut self, texts: &[&str], timeout: Duration) -> Option<String> {
        let all = |l: &String| texts.iter().all(|t| l.contains(t));
        if let Some(line) = self.log.iter().find(|l| all(l)) {
            return Some(line.clone());
        }
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let line = self.stderr.recv_timeout(left).ok()?;
            self.log.push(line.clone());
            if all(&line) {
                return Some(line);
            }
        }
        None
    }

    /// The first stdout JSON line whose argv holds `marker`.
    pub fn exec_with(&mut self, marker: &str) -> Value {
        self.stdout_json(Duration::from_secs(20), |v| {
            v["event"]["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == marker))
        })
        .unwrap_or_else(|| panic!("no exec with {marker:?} on stdout"))
    }

    /// The first stdout JSON line for which `wanted` holds (read before, or within `timeout`).
    pub fn stdout_json(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(v) = self.out.iter().find(|v| wanted(v)) {
            return Some(v.clone());
        }
        let deadline = std::time::Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let line = self.stdout.recv_timeout(left).ok()?;
            let v: Value = serde_json::from_str(&line).expect("stdout lines are JSON");
            self.out.push(v.clone());
            if wanted(&v) {
                return Some(v);
            }
        }
        None
    }

    /// The exit status if the agent ends within `timeout`; its log is collected meanwhile.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.log.push(line);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(line) = self.stderr.try_recv() {
                    self.log.push(line);
                }
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, then waits: the agent must exit cleanly. Returns its whole log.
    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.log.push(line);
        }
        assert!(
            status.success(),
            "agent exit {status}:\n{}",
            self.log.join("\n")
        );
        std::mem::take(&mut self.log)
    }
}

impl Agent {
    /// `GET path` on the agent's HTTP listener (found from its start-up log line): the
    /// status line and the body.
    pub fn http_get(&mut self, path: &str) -> (String, String) {
        use std::io::{Read, Write};
        let line = self.wait_log("HTTP listener started");
        let addr: Value = serde_json::from_str(&line).expect("JSON log lines");
        let addr = addr["addr"]
            .as_str()
            .expect("the listener's address")
            .to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.lines().next().unwrap_or_default().to_owned();
        (status, body.to_owned())
    }

    /// The log lines received so far.
    pub fn drain_log(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.try_recv() {
            self.log.push(line);
        }
        self.log.clone()
    }

    /// Sends `signal` and waits for the exit status.
    pub fn signal_and_wait(mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.child.wait().unwrap()
    }
}

/// The agent binary in `--dry-run` with `config` written to `dir/config.yaml`, no cluster
/// unless the caller sets KUBECONFIG, info logs.
pub fn agent_command(dir: &std::path::Path, config: &str) -> Command {
    let mut cmd = acting_command(dir, config);
    cmd.arg("--dry-run");
    cmd
}

/// The agent binary acting for real (no `--dry-run`), otherwise as [`agent_command`]
/// (`YOUWATCH_TEST_AGENT_LOG` sets its log filter, e.g. `youwatch_agent=debug`).
pub fn acting_command(dir: &std::path::Path, config: &str) -> Command {
    configured(Command::new(AGENT), dir, config)
}

/// The agent binary's path.
pub const AGENT: &str = env!("CARGO_BIN_EXE_youwatch-agent");

/// `cmd` (the agent binary, started some other way) set up as [`acting_command`] does.
pub fn configured(mut cmd: Command, dir: &std::path::Path, config: &str) -> Command {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    cmd.arg("--config")
        .arg(&path)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .env("HOME", dir)
        .env(
            "YOUWATCH_LOG",
            std::env::var("YOUWATCH_TEST_AGENT_LOG").unwrap_or_else(|_| "info".into()),
        );
    cmd
}

impl Agent {
    /// The address of the agent's HTTP listener (`telemetry.listen`), from its start-up log.
    pub fn http_addr(&mut self) -> String {
        let line = self.wait_log("HTTP listener started");
        let v: Value = serde_json::from_str(&line).expect("JSON log lines");
        v["addr"].as_str().expect("addr in the log line").to_owned()
    }
}

/// `GET path` on `addr` (plain HTTP/1.1); the response body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body)
        .to_owned())
}

/// The value of the sample `name` (with its labels, if any, as written) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
