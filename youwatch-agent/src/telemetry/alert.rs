//! Detections as Falco JSON alerts: one line per alert, in the shape Falco's `json_output`
//! writes (`hostname, output, output_fields, priority, rule, source, tags, time`), so
//! falcosidekick, Falco Talon or a log pipeline built for Falco consume them unchanged.
//!
//! The writer is a best-effort listener of the detection bus: a dedicated thread writes
//! detections to stdout and/or a file, so a slow reader never stalls the exec path (which
//! drops alerts, counted, when the queue is full) while tailed inputs wait for it. Each
//! envelope is acknowledged once its line is written, so a tailed input's cursor never moves
//! past an alert that was not.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde::{Deserialize, Serialize};

use crate::{
    bus::{Envelope, Listener},
    detection::{Detection, Origin},
    stage::{StageHandle, StopSignal},
};

/// Alerts written per system call at most (a burst is written in one go).
const BATCH: usize = 256;

/// `telemetry.alerts:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Write each alert as one JSON line on stdout.
    pub stdout: bool,
    /// Also append each alert to this file. Empty: no file. A file renamed away (log
    /// rotation) is noticed and reopened at the path.
    pub file: PathBuf,
    /// Detections waiting for the writer. When full, tailed inputs (WAF, Falco file) wait;
    /// the exec path drops the alert (youwatch_bus_dropped_total{listener="alerts"}, and a
    /// warning at most every 10 s) rather than delay its response.
    pub queue: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            stdout: true,
            file: PathBuf::new(),
            queue: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("telemetry.alerts.file {path}: cannot open for appending: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("telemetry.alerts.queue must be at least 1")]
    ZeroQueue,
    #[error("starting the alert writer thread: {0}")]
    Thread(io::Error),
}

/// The alert output's metrics.
#[derive(Clone, Debug, Default)]
pub struct AlertMetrics {
    written: Counter,
    write_errors: Counter,
}

impl AlertMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_alerts_written",
            "Alerts written (Falco JSON lines)",
            self.written.clone(),
        );
        registry.register(
            "youwatch_alerts_write_errors",
            "Alerts that could not be written to stdout or the alert file",
            self.write_errors.clone(),
        );
    }
}

/// Checks the settings and opens the file (a bad path fails here, by name).
pub fn writer(
    config: &AlertConfig,
    hostname: String,
    metrics: AlertMetrics,
) -> Result<AlertWriter, AlertError> {
    if config.queue == 0 {
        return Err(AlertError::ZeroQueue);
    }
    AlertWriter::new(config, hostname, metrics)
}

/// Writes alerts to stdout and/or a file.
pub struct AlertWriter {
    stdout: bool,
    file: Option<AlertFile>,
    hostname: String,
    metrics: AlertMetrics,
}

impl AlertWriter {
    pub fn new(
        config: &AlertConfig,
        hostname: String,
        metrics: AlertMetrics,
    ) -> Result<Self, AlertError> {
        let file = if config.file.as_os_str().is_empty() {
            None
        } else {
            Some(AlertFile::open(&config.file)?)
        };
        Ok(Self {
            stdout: config.stdout,
            file,
            hostname,
            metrics,
        })
    }

    /// Starts the writer thread on the bus listener `alerts`; it ends when the bus closes,
    /// after writing what was queued.
    pub fn spawn(mut self, mut alerts: Listener) -> Result<StageHandle, AlertError> {
        let thread = std::thread::Builder::new()
            .name("alert-writer".into())
            .spawn(move || {
                let mut batch: Vec<Envelope> = Vec::with_capacity(BATCH);
                while let Some(first) = alerts.blocking_recv() {
                    batch.push(first);
                    while batch.len() < BATCH
                        && let Ok(next) = alerts.try_recv()
                    {
                        batch.push(next);
                    }
                    self.write_all(batch.iter().map(|e| &*e.detection));
                    batch.drain(..).for_each(Envelope::done);
                }
            })
            .map_err(AlertError::Thread)?;
        // The writer ends with the bus, not on request: it must write what is queued.
        Ok(StageHandle::thread("alerts", StopSignal::new(), thread))
    }

    pub fn write(&mut self, d: &Detection) {
        self.write_all(std::iter::once(d));
    }

    /// Writes the alerts, one line each, in one write per output.
    pub fn write_all<'a>(&mut self, detections: impl Iterator<Item = &'a Detection>) {
        let mut text = String::new();
        let mut count = 0;
        for d in detections {
            text.push_str(&to_json(d, &self.hostname));
            text.push('\n');
            count += 1;
        }
        let mut ok = true;
        if self.stdout {
            let mut out = io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "writing alerts to stdout");
                ok = false;
            }
        }
        if let Some(file) = &mut self.file
            && let Err(e) = file.append(text.as_bytes())
        {
            tracing::warn!(error = %e, path = %file.path.display(), "writing alerts to the alert file");
            ok = false;
        }
        if ok {
            self.metrics.written.inc_by(count);
        } else {
            self.metrics.write_errors.inc_by(count);
        }
    }
}

/// An append-only file that follows its path: when the path no longer names the open file
/// (rotated or deleted), it is reopened.
struct AlertFile {
    path: PathBuf,
    file: File,
    inode: (u64, u64),
}

impl AlertFile {
    fn open(path: &Path) -> Result<Self, AlertError> {
        let open_error = |source| AlertError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        // A kill in the middle of a write can leave a torn last line: end it, so the next
        // alert starts on a line of its own.
        if meta.len() > 0 {
            let mut last = [0u8; 1];
            use std::os::unix::fs::FileExt;
            file.read_exact_at(&mut last, meta.len() - 1)
                .map_err(open_error)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(open_error)?;
            }
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            inode: (meta.dev(), meta.ino()),
        })
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let current = std::fs::metadata(&self.path)
            .map(|m| (m.dev(), m.ino()))
            .ok();
        if current != Some(self.inode) {
            *self = Self::open(&self.path).map_err(|e| match e {
                AlertError::Open { source, .. } => source,
                other => io::Error::other(other.to_string()),
            })?;
        }
        self.file.write_all(bytes)
    }
}

/// Falco's JSON alert. Field order is Falco's (alphabetical).
#[derive(Serialize)]
struct FalcoAlert<'a> {
    hostname: &'a str,
    output: String,
    output_fields: &'a BTreeMap<String, serde_json::Value>,
    priority: &'a str,
    rule: &'a str,
    source: &'a str,
    tags: &'a [String],
    time: String,
}

/// One detection as Falco's JSON alert (without the trailing newline).
pub fn to_json(d: &Detection, hostname: &str) -> String {
    let nanos = d
        .time
        .duration_since(UNIX_EPOCH)
        .map(|t| i128::try_from(t.as_nanos()).unwrap_or(i128::MAX))
        .unwrap_or(0);
    let ts = jiff::Timestamp::from_nanosecond(nanos).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let alert = FalcoAlert {
        hostname,
        // Falco prefixes the text with the event time and the priority.
        output: format!(
            "{}: {} {}",
            ts.strftime("%H:%M:%S.%9f"),
            d.priority,
            d.output
        ),
        output_fields: &d.output_fields,
        priority: d.priority.as_str(),
        rule: &d.rule,
        source: source(d),
        tags: &d.tags,
        time: format!("{ts:.9}"),
    };
    serde_json::to_string(&alert).unwrap_or_default()
}

/// The event source: as the detection recorded it (`evt.source`), else by origin.
fn source(d: &Detection) -> &str {
    match d.output_fields.get("evt.source") {
        Some(serde_json::Value::String(s)) => s,
        _ => match d.origin {
            Origin::Rules | Origin::Falco => "syscall",
            Origin::Waf => "modsecurity",
            Origin::Response => "youwatch",
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::detection::{Priority, Subject};

    fn detection() -> Detection {
        Detection {
            time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_042),
            origin: Origin::Rules,
            rule: "Terminal shell in container".into(),
            priority: Priority::Notice,
            output: "A shell was spawned | user=root".into(),
            tags: vec!["container".into(), "shell".into()],
            output_fields: [("user.name".to_owned(), serde_json::json!("root"))].into(),
            subject: Subject::None,
        }
    }

    #[test]
    fn falco_json_shape() {
        let line = to_json(&detection(), "node-1");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.000000042Z");
        assert_eq!(v["rule"], "Terminal shell in container");
        assert_eq!(v["priority"], "Notice");
        assert_eq!(v["source"], "syscall");
        assert_eq!(v["hostname"], "node-1");
        assert_eq!(
            v["output"],
            "22:13:20.000000042: Notice A shell was spawned | user=root"
        );
        assert_eq!(v["output_fields"]["user.name"], "root");
        assert_eq!(v["tags"], serde_json::json!(["container", "shell"]));
        assert!(
            line.starts_with("{\"hostname\":"),
            "Falco's key order: {line}"
        );
    }

    #[test]
    fn file_output_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let config = AlertConfig {
            stdout: false,
            file: path.clone(),
            queue: 4,
        };
        let mut w = AlertWriter::new(&config, "n".into(), AlertMetrics::default()).unwrap();
        w.write(&detection());
        std::fs::rename(&path, dir.path().join("alerts.json.1")).unwrap();
        w.write(&detection());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("alerts.json.1"))
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert_eq!(w.metrics.written.get(), 2);
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_alert() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        std::fs::write(&path, b"{\"torn\":").unwrap();
        let config = AlertConfig {
            stdout: false,
            file: path.clone(),
            queue: 4,
        };
        let mut w = AlertWriter::new(&config, "n".into(), AlertMetrics::default()).unwrap();
        w.write(&detection());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"torn\":");
        assert!(
            serde_json::from_str::<serde_json::Value>(lines[1]).is_ok(),
            "{text}"
        );
    }

    #[test]
    fn unwritable_file_is_named() {
        let err = AlertWriter::new(
            &AlertConfig {
                stdout: false,
                file: "/nonexistent-dir/alerts.json".into(),
                queue: 1,
            },
            "n".into(),
            AlertMetrics::default(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent-dir/alerts.json"));
    }
}
