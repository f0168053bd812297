//! `youwatch-agent rules replay`: evaluates recorded exec events (the JSON lines the agent
//! prints with `--dry-run`) against rule files offline and prints the alerts as the agent
//! writes them (Falco's JSON alert lines). How to test rules before deploying them, like
//! replaying a capture file with Falco.

use std::io::{BufRead, Read, Write};

use super::{Engine, RuleMatching, RuleSet, RulesConfig, RulesMetrics, output::OutField};
use crate::{event::EnrichedExec, telemetry::alert};

/// Event lines longer than this are skipped (with an error naming the line): a recorded exec
/// is a few KiB, and memory stays bounded whatever the input.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What a replay saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub alerts: u64,
    /// The other JSON lines `--dry-run` prints (alerts, would-be actions), skipped.
    pub other_records: u64,
    /// Lines that are not exec events (reported on `errors` with their number).
    pub bad_lines: u64,
}

/// Evaluates every event of `events` (JSON lines; `name` is how messages call it) with the
/// rules of `set`, which loaded without errors. Alerts go to `out`, one per line; lines that
/// are not events are reported on `errors` and skipped.
pub fn replay(
    set: &RuleSet,
    matching: RuleMatching,
    hostname: &str,
    events: impl BufRead,
    name: &str,
    out: &mut impl Write,
    errors: &mut impl Write,
) -> std::io::Result<Summary> {
    let extra = RulesConfig::default()
        .extra_output_fields
        .iter()
        .filter_map(|f| OutField::named(f).ok())
        .collect();
    let engine = Engine::new(
        set,
        matching,
        extra,
        hostname.to_owned(),
        RulesMetrics::default(),
    );
    let mut summary = Summary::default();
    let mut lines = Lines::new(events);
    let mut number = 0u64;
    while let Some(line) = lines.next_line()? {
        number += 1;
        let exec = match line {
            Line::TooLong => Err(format!("longer than {MAX_LINE_BYTES} bytes")),
            Line::Text(text) if text.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Text(text) => match serde_json::from_slice::<EnrichedExec>(text) {
                Ok(exec) => Ok(exec),
                Err(_) if is_other_record(text) => {
                    summary.other_records += 1;
                    continue;
                }
                Err(e) => Err(format!("not an exec event as the agent records them: {e}")),
            },
        };
        let exec = match exec {
            Ok(exec) => exec,
            Err(e) => {
                summary.bad_lines += 1;
                writeln!(
                    errors,
                    "{name}:{number}: {e} (write events with `youwatch-agent --dry-run`, one JSON object per line)"
                )?;
                continue;
            }
        };
        summary.events += 1;
        for detection in engine.evaluate(&exec) {
            summary.alerts += 1;
            writeln!(out, "{}", alert::to_json(&detection, hostname))?;
        }
    }
    Ok(summary)
}

/// A JSON object that is not an exec record (no `event` or `process`): an alert or an
/// action line, which `--dry-run` prints among the execs.
fn is_other_record(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(text)
        .is_ok_and(|o| !o.contains_key("event") && !o.contains_key("process"))
}

enum Line<'a> {
    Text(&'a [u8]),
    TooLong,
}

/// Lines of at most [`MAX_LINE_BYTES`]; a longer one is consumed without being kept.
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: Vec::new(),
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let limit = u64::try_from(MAX_LINE_BYTES + 1).unwrap_or(u64::MAX);
        let n = self
            .reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            return Ok(Some(Line::Text(&self.buf)));
        }
        if self.buf.len() <= MAX_LINE_BYTES {
            // The last line, without a newline.
            return Ok(Some(Line::Text(&self.buf)));
        }
        // Skip the rest of the long line.
        loop {
            let (skip, done) = {
                let chunk = self.reader.fill_buf()?;
                match memchr::memchr(b'\n', chunk) {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), chunk.is_empty()),
                }
            };
            self.reader.consume(skip);
            if done {
                return Ok(Some(Line::TooLong));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{LoadOptions, load, sample::Exec, source::SourceFile};

    const RULE: &str = "- rule: Shell\n  desc: d\n  condition: evt.type = execve and proc.name = bash\n  output: shell %proc.cmdline\n  priority: WARNING\n";

    fn run(input: &str) -> (Summary, String, String) {
        let set = load(
            &[SourceFile::new("r.yaml", RULE.to_owned())],
            &LoadOptions::default(),
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let s = replay(
            &set,
            RuleMatching::First,
            "node-1",
            input.as_bytes(),
            "events.jsonl",
            &mut out,
            &mut err,
        )
        .unwrap();
        (
            s,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn alerts_for_matching_events_and_errors_for_bad_lines() {
        let bash = serde_json::to_string(&Exec::new(["bash", "-i"]).build()).unwrap();
        let ls = serde_json::to_string(&Exec::new(["ls"]).build()).unwrap();
        let alert = r#"{"rule": "Shell", "output": "x", "priority": "Warning"}"#;
        let input = format!("{bash}\n\n{{\"event\": 1}}\n{alert}\n{ls}\n{bash}");
        let (s, out, err) = run(&input);
        assert_eq!(
            s,
            Summary {
                events: 3,
                alerts: 2,
                other_records: 1,
                bad_lines: 1
            }
        );
        let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(first["rule"], "Shell");
        assert_eq!(first["priority"], "Warning");
        assert_eq!(first["hostname"], "node-1");
        assert!(
            first["output"]
                .as_str()
                .unwrap()
                .ends_with("Warning shell bash -i")
        );
        assert!(
            err.starts_with("events.jsonl:3: not an exec event"),
            "{err}"
        );
    }

    #[test]
    fn long_lines_are_skipped() {
        let bash = serde_json::to_string(&Exec::new(["bash"]).build()).unwrap();
        let input = format!("{}\n{bash}\n", "x".repeat(MAX_LINE_BYTES + 10));
        let (s, _, err) = run(&input);
        assert_eq!((s.events, s.alerts, s.bad_lines), (1, 1, 1));
        assert!(err.contains("events.jsonl:1: longer than"), "{err}");
    }
}
