//! The agent binary as a child process: its stdout and stderr lines on channels, waits for a
//! log line or a JSON line, SIGINT/SIGTERM/SIGKILL.

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
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
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
        }
    }

    /// Waits for a log line containing `text`; panics with the log after 20 s.
    pub fn wait_log(&mut self, text: &str) -> String {
        self.wait_log_all(&[text])
    }

    /// Waits for a log line containing every one of `texts`; panics with the log after 20 s.
    pub fn wait_log_all(&mut self, texts: &[&str]) -> String {
        let text = texts.join(" + ");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if texts.iter().all(|t| line.contains(t)) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with {text:?}; log:\n{}", self.log.join("\n"));
    }

    /// The first stdout JSON line whose argv holds `marker`.
    pub fn exec_with(&mut self, marker: &str) -> Value {
        loop {
            let line = self
                .stdout
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no exec with {marker:?} on stdout"));
            let v: Value = serde_json::from_str(&line).expect("stdout lines are JSON");
            if v["event"]["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == marker))
            {
                return v;
            }
        }
    }

    pub fn stop(mut self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "agent exit {status}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent binary in `--dry-run` with `config` written to `dir/config.yaml`, no cluster
/// unless the caller sets KUBECONFIG, info logs.
pub fn agent_command(dir: &std::path::Path, config: &str) -> Command {
    let mut cmd = acting_command(dir, config);
    cmd.arg("--dry-run");
    cmd
}

/// The agent binary acting for real (no `--dry-run`), otherwise as [`agent_command`].
pub fn acting_command(dir: &std::path::Path, config: &str) -> Command {
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_youwatch-agent"));
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
    /// The first stdout JSON line for which `pred` holds, waiting up to `timeout`.
    pub fn stdout_json(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .unwrap_or_else(|| panic!("no matching stdout line within {timeout:?}"));
            let line = self
                .stdout
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no matching stdout line within {timeout:?}"));
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && pred(&v)
            {
                return v;
            }
        }
    }

    /// The log lines received so far (those not consumed by a wait).
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
