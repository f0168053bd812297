//! Exactly-once, black box: a writer appends uniquely numbered ModSecurity entries to an
//! audit log at a steady rate, a rotator moves the log as logrotate would (rename,
//! copytruncate, delete, symlink swap, and quick sequences of them), the agent binary follows
//! it and is restarted with SIGTERM or `kill -9` (same state directory), and the checker
//! counts each entry's alert lines: lost, repeated.
//!
//! Used by `tests/waf_exactly_once.rs` (short runs, asserted) and `benches/soak.rs`
//! (`cargo xtask bench soak`: long runs, figures).

pub mod agent;
pub mod checker;
pub mod entries;
pub mod rotator;
pub mod scenarios;
pub mod writer;

use std::{
    collections::BTreeMap,
    fmt,
    path::Path,
    time::{Duration, Instant},
};

use agent::{AgentSetup, Counters, Stop, Stopped};
use checker::Tally;
use entries::Entries;
use rotator::{LogFiles, Rotation, Rotator, Step};
use writer::Writer;

/// When and how the agent is restarted during a run.
#[derive(Clone, Debug)]
pub struct Restarts {
    /// Time between restarts, drawn evenly from this range.
    pub every: (Duration, Duration),
    /// Stops used in turn.
    pub stops: Vec<Stop>,
    /// How long the agent stays down.
    pub down: Duration,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Entries per second.
    pub rate: u64,
    /// Entries already written when the agent first starts.
    pub backlog: u64,
    /// How long the writer writes (after the backlog).
    pub duration: Duration,
    pub symlinked: bool,
    /// Rotations, repeated until the writer stops.
    pub schedule: Vec<Step>,
    pub restarts: Option<Restarts>,
    /// Appended to the agent's configuration (indented under nothing: whole sections).
    pub extra_yaml: String,
    /// The writer reopens this long after a move.
    pub reopen_delay: Duration,
}

impl Scenario {
    pub fn new(name: &str, rate: u64, duration: Duration) -> Scenario {
        Scenario {
            name: name.into(),
            rate,
            backlog: 0,
            duration,
            symlinked: false,
            schedule: Vec::new(),
            restarts: None,
            extra_yaml: String::new(),
            reopen_delay: Duration::from_millis(100),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Figures {
    pub scenario: String,
    pub written: u64,
    pub write_rate: f64,
    pub lost: Vec<u64>,
    /// Lost entries written after the end of a copytruncate's copy and before its truncation.
    pub lost_in_window: Vec<u64>,
    /// Entries written inside copytruncate windows (at risk).
    pub window_entries: u64,
    pub duplicated_entries: u64,
    pub extra_alerts: u64,
    pub torn_alert_lines: usize,
    pub foreign_alerts: usize,
    pub rotations: BTreeMap<&'static str, usize>,
    /// Each move and the entries written by then.
    pub moves: Vec<(Rotation, u64)>,
    pub stops: Vec<Stopped>,
    /// Repeats written by the run after each stop (same order as `stops`).
    pub repeats_after: Vec<u64>,
    pub counters: Counters,
    /// From the writer's last entry until the alerts stopped growing.
    pub catch_up: Duration,
}

impl Figures {
    /// Most repeats after one stop of kind `how`.
    pub fn max_repeats_after(&self, how: Stop) -> u64 {
        self.stops
            .iter()
            .zip(&self.repeats_after)
            .filter(|(s, _)| s.how == how)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    }

    pub fn count(&self, how: Stop) -> usize {
        self.stops.iter().filter(|s| s.how == how).count()
    }

    /// Longest SIGTERM → exit.
    pub fn max_term_exit(&self) -> Duration {
        self.stops
            .iter()
            .filter(|s| s.how == Stop::Term)
            .map(|s| s.took)
            .max()
            .unwrap_or_default()
    }

    /// SIGTERM stops that neither exited 0 nor died of the signal itself.
    pub fn failed_terms(&self) -> usize {
        use std::os::unix::process::ExitStatusExt;
        self.stops
            .iter()
            .filter(|s| {
                s.how == Stop::Term
                    && !s.status.success()
                    && s.status.signal() != Some(libc::SIGTERM)
            })
            .count()
    }

    /// SIGTERM stops that killed the agent before it had installed its handler (it was still
    /// starting): a kill -9 in effect.
    pub fn terms_during_startup(&self) -> usize {
        use std::os::unix::process::ExitStatusExt;
        self.stops
            .iter()
            .filter(|s| s.how == Stop::Term && s.status.signal() == Some(libc::SIGTERM))
            .count()
    }

    pub fn header() -> &'static str {
        "scenario                       written  rate/s   lost (in cpt window/at risk)  dup entries (extra)  SIGTERM (max exit)  kill-9  max repeat/kill  rotations  truncations"
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rotations: usize = self.rotations.values().sum();
        write!(
            f,
            "{:<30} {:>8} {:>7.0} {:>6} ({:>4}/{:<5})            {:>6} ({:>6})      {:>4} ({:>5.2}s)       {:>6}  {:>15}  {:>9}  {:>11}",
            self.scenario,
            self.written,
            self.write_rate,
            self.lost.len() + self.lost_in_window.len(),
            self.lost_in_window.len(),
            self.window_entries,
            self.duplicated_entries,
            self.extra_alerts,
            self.count(Stop::Term),
            self.max_term_exit().as_secs_f64(),
            self.count(Stop::Kill),
            self.max_repeats_after(Stop::Kill),
            rotations,
            self.counters.truncations,
        )
    }
}

/// A tiny deterministic generator (no dependency): restart times vary, runs repeat.
struct Lcg(u64);

impl Lcg {
    fn between(&mut self, (lo, hi): (Duration, Duration)) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(if span == 0 { 0 } else { (self.0 >> 33) % span })
    }
}

/// Quiet this long at the end (alerts not growing) means the agent has caught up: longer
/// than `rotate_grace` (2 s) plus a poll interval (1 s).
const SETTLED: Duration = Duration::from_secs(5);
/// Catching up takes at most this long.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(180);

/// Runs `scenario` in `dir` with the agent binary `bin`.
pub fn run(bin: &Path, dir: &Path, scenario: &Scenario) -> Figures {
    let files = LogFiles::create(dir, scenario.symlinked, 12);
    let setup = AgentSetup::write(bin, dir, &files.path, &scenario.extra_yaml);
    let writer = Writer::start(
        files.path.clone(),
        Entries::default_seed(),
        scenario.rate,
        scenario.backlog,
    );
    while writer.handle().written() < scenario.backlog {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut agent = setup.start();
    agent.wait_following(&setup);
    let mut starts = vec![0usize];
    let rotator = Rotator::start(
        files.clone(),
        writer.handle(),
        scenario.schedule.clone(),
        scenario.reopen_delay,
    );
    let began = Instant::now();
    let mut stops = Vec::new();
    let mut rng = Lcg(0x5eed_50ac);
    let mut next_restart = scenario
        .restarts
        .as_ref()
        .map(|r| began + rng.between(r.every));
    while began.elapsed() < scenario.duration {
        std::thread::sleep(Duration::from_millis(10));
        agent.assert_running(&setup);
        let (Some(at), Some(r)) = (next_restart, &scenario.restarts) else {
            continue;
        };
        if Instant::now() < at {
            continue;
        }
        let how = r.stops[stops.len() % r.stops.len()];
        stops.push(agent.stop(how));
        std::thread::sleep(r.down);
        starts.push(checker::line_count(&setup.alerts));
        agent = setup.start();
        next_restart = Some(Instant::now() + rng.between(r.every));
    }
    let rotations = rotator.stop();
    let (written, write_rate) = writer.stop();
    let catch_up = settle(&mut agent, &setup, written);
    let last = agent.stop(Stop::Term);
    let mut counters = Counters::default();
    for s in stops.iter().chain([&last]) {
        counters += s.counters;
    }
    let tally = Tally::read(&setup.alerts, written);
    let per_run = tally.repeats_per_run(&starts);
    let (lost_in_window, lost) = tally.lost(&rotations.windows);
    let (duplicated_entries, extra_alerts) = tally.duplicated();
    let window_entries = rotations
        .windows
        .iter()
        .map(|w| (w.hi + 1).saturating_sub(w.lo))
        .sum();
    let mut by_kind = BTreeMap::new();
    for (r, _) in &rotations.done {
        *by_kind.entry(Rotation::name(*r)).or_insert(0) += 1;
    }
    let mut all_stops = stops;
    all_stops.push(last);
    Figures {
        scenario: scenario.name.clone(),
        written,
        write_rate,
        lost,
        lost_in_window,
        window_entries,
        duplicated_entries,
        extra_alerts,
        torn_alert_lines: tally.torn_lines,
        foreign_alerts: tally.foreign,
        rotations: by_kind,
        moves: rotations.done.clone(),
        repeats_after: per_run.iter().skip(1).copied().chain([0]).collect(),
        stops: all_stops,
        counters,
        catch_up,
    }
}

/// Waits until every written entry is alerted, or the alerts stop growing for [`SETTLED`].
fn settle(agent: &mut agent::Agent, setup: &AgentSetup, written: u64) -> Duration {
    let start = Instant::now();
    let mut last = (checker::line_count(&setup.alerts), Instant::now());
    while start.elapsed() < CATCH_UP_LIMIT {
        std::thread::sleep(Duration::from_millis(200));
        agent.assert_running(setup);
        let lines = checker::line_count(&setup.alerts);
        if lines != last.0 {
            last = (lines, Instant::now());
            if lines as u64 >= written && Tally::read(&setup.alerts, written).seen() == written {
                break;
            }
        } else if last.1.elapsed() >= SETTLED {
            break;
        }
    }
    last.1.duration_since(start)
}

/// Consecutive numbers as `first-last` ranges (the first 20).
fn ranges(ns: &[u64]) -> String {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &n in ns {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == n => *hi = n,
            _ => out.push((n, n)),
        }
    }
    let shown: Vec<String> = out
        .iter()
        .take(20)
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    format!("{} ({} ranges)", shown.join(" "), out.len())
}

/// What a failing run did, with the end of the agent's log.
pub fn describe_failure(dir: &Path, f: &Figures) -> String {
    let log = dir.join("agent.log");
    format!(
        "{}\n{f}\nlost: {}\nlost in copytruncate windows: {}\nmoves (kind, entries written): {:?}\nstops: {:?}\nagent log (last lines):\n{}",
        Figures::header(),
        ranges(&f.lost),
        ranges(&f.lost_in_window),
        f.moves,
        f.stops
            .iter()
            .map(|s| (s.how, s.status.code(), s.took))
            .collect::<Vec<_>>(),
        agent::tail_of(&log)
    )
}
