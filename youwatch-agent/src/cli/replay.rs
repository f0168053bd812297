//! `youwatch-agent replay AUDIT_LOG`: run a recorded audit log through the same pipeline the
//! agent uses, print each entry's class, score and decision, then a summary and the IPs that
//! would be banned. The tool to tune `waf:` before letting the agent act.

use std::{
    collections::BTreeMap, io::Write, net::IpAddr, path::PathBuf, process::ExitCode, time::Duration,
};

use anyhow::Context;

use super::ConfigArg;
use crate::{
    tail::{Follower, StartAt, TailMetrics},
    waf::{
        WafConfig,
        classify::{Class, ClassSet},
        detect::now_secs,
        explain::{self, ScorePaths, time_text},
        json::display,
        metrics::{DecisionKind, WafMetrics},
        pipeline::{Decision, Outcome, Pipeline},
        score::{Added, Score},
        stage::WafStage,
    },
};

/// Replay a ModSecurity/Coraza JSON audit log through the WAF scoring, changing nothing.
///
/// Prints one line per entry (time, client, classes, score, blocked or not, decision), then
/// the number of entries per class and per decision, and the IPs that would be banned with
/// the ban length. Uses the `waf:` section of --config (or the defaults), so you can try
/// thresholds, ban classes, allowlists and trusted proxies on real traffic first:
///
///   youwatch-agent replay /var/log/modsec_audit.json --config my.yaml --summary
#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// The audit log (one JSON entry per line).
    #[arg(value_name = "AUDIT_LOG")]
    pub audit_log: PathBuf,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print only the summary, not one line per entry.
    #[arg(long)]
    pub summary: bool,
    /// One JSON object per entry instead of text (the summary stays text, on stderr).
    #[arg(long)]
    pub json: bool,
    /// At the end, keep following the file (across rotations, like `tail -F`) and print each
    /// entry's decision as it arrives, until interrupted. No summary in this mode.
    #[arg(long, conflicts_with = "summary")]
    pub follow: bool,
    /// Clients whose score path the summary shows (why each was or was not banned), banned
    /// ones first, then by how close they came. 0: none.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub clients: usize,
}

struct Summary {
    entries: u64,
    bad_lines: u64,
    /// Per `Class as usize` / `DecisionKind as usize` (arrays: this runs per entry).
    classes: [u64; Class::ALL.len()],
    decisions: [u64; DecisionKind::ALL.len()],
    /// IP → (longest ban, offenses, first ban time, classes seen); at most
    /// `explain::MAX_CLIENTS` (the addresses are attacker-chosen).
    bans: BTreeMap<IpAddr, (Duration, u32, u64, ClassSet)>,
    /// Banned IPs beyond those, counted once per ban decision.
    bans_unlisted: u64,
    /// Per-client score paths (not kept with `--clients 0`).
    paths: Option<ScorePaths>,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    match replay(args) {
        // `replay ... | head` is fine.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        result => result,
    }
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut waf: WafConfig = args.config.load()?.waf;
    waf.validate().map_err(anyhow::Error::msg)?;
    std::fs::metadata(&args.audit_log)
        .with_context(|| format!("cannot read the audit log {}", args.audit_log.display()))?;
    waf.audit_log = args.audit_log.clone();
    waf.follow.start_at = StartAt::Beginning;
    let mut opts = WafStage::follow_options(&waf, None);
    opts.inotify = args.follow;
    let mut follower = Follower::open(opts, TailMetrics::default())?;
    let mut pipeline = Pipeline::new(&waf, WafMetrics::default());
    let mut summary = Summary::new(&waf, args.clients);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let now = now_secs();
    loop {
        let wait = if args.follow {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        let batch = follower.next_batch(wait)?;
        let done = batch.is_empty() && !args.follow;
        let batch = if done {
            follower.take_unterminated()
        } else {
            batch
        };
        for line in batch {
            match pipeline.process(line.bytes, now) {
                Ok(o) => {
                    summary.add(&o);
                    if !args.summary {
                        print_entry(&mut out, &o, args.json)?;
                    }
                }
                Err(_) => summary.bad_lines += 1,
            }
        }
        if args.follow {
            out.flush()?;
        }
        if done {
            break;
        }
    }
    out.flush()?;
    drop(out);
    let text = summary.render(args.clients);
    if args.json {
        std::io::stderr().write_all(text.as_bytes())?;
    } else {
        std::io::stdout().write_all(text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn decision_text(d: &Decision) -> String {
    match d {
        Decision::Pass => "pass (no ban class)".into(),
        Decision::Protected(_, why) => format!("never banned ({})", why.as_str()),
        Decision::Unattributable => "unattributable (no valid client address)".into(),
        Decision::Scored(_, Score::Counted { level, threshold }, added) => {
            format!("+{} counted {level:.1}/{threshold}", added_text(added))
        }
        Decision::Scored(_, Score::Ban { ttl, offense }, added) => format!(
            "+{} BAN for {} (offense {offense})",
            added_text(added),
            humantime::format_duration(*ttl)
        ),
        Decision::Scored(_, Score::AlreadyBanned { remaining }, _) => format!(
            "already banned ({} left)",
            humantime::format_duration(*remaining)
        ),
    }
}

/// `20` or `10+10` (own points + new-class points).
fn added_text(a: &Added) -> String {
    if a.new_class > 0.0 {
        format!("{:.1}+{:.1}", a.points, a.new_class)
    } else {
        format!("{:.1}", a.points)
    }
}

fn print_entry(out: &mut impl Write, o: &Outcome<'_>, json: bool) -> std::io::Result<()> {
    let client = o
        .decision
        .ip()
        .map_or_else(|| display(o.entry.client_ip(), 45), |ip| ip.to_string());
    let classes = if o.verdict.classes.is_empty() {
        "-".to_owned()
    } else {
        o.verdict.classes.join(",")
    };
    if json {
        let value = serde_json::json!({
            "time": time_text(o.time),
            "client_ip": client,
            "unique_id": display(o.entry.unique_id(), 64),
            "classes": classes,
            "ban_classes": o.verdict.ban_classes.join(","),
            "score": o.verdict.score,
            "points": o.verdict.points,
            "ignored_points": o.verdict.ignored,
            "blocked": o.verdict.blocked,
            "decision": o.decision.kind().as_str(),
            "ban_secs": o.decision.ban().map(|(_, ttl)| ttl.as_secs()),
            "detail": decision_text(&o.decision),
        });
        serde_json::to_writer(&mut *out, &value)?;
        return writeln!(out);
    }
    writeln!(
        out,
        "{}  {client:<39}  {classes:<24}  score {:>3}  {:<14}  {}",
        time_text(o.time),
        o.verdict.score,
        if o.verdict.blocked {
            "blocked"
        } else {
            "detection-only"
        },
        decision_text(&o.decision),
    )
}

impl Summary {
    fn new(waf: &WafConfig, clients: usize) -> Summary {
        Summary {
            entries: 0,
            bad_lines: 0,
            classes: [0; Class::ALL.len()],
            decisions: [0; DecisionKind::ALL.len()],
            bans: BTreeMap::new(),
            bans_unlisted: 0,
            paths: (clients > 0).then(|| ScorePaths::new(waf)),
        }
    }

    fn add(&mut self, o: &Outcome<'_>) {
        self.entries += 1;
        if let Some(paths) = &mut self.paths {
            paths.add(o);
        }
        for c in o.verdict.classes.iter() {
            self.classes[c as usize] += 1;
        }
        self.decisions[o.decision.kind() as usize] += 1;
        if let Decision::Scored(ip, Score::Ban { ttl, offense }, _) = o.decision {
            if !self.bans.contains_key(&ip) && self.bans.len() >= explain::MAX_CLIENTS {
                self.bans_unlisted += 1;
                return;
            }
            let e = self
                .bans
                .entry(ip)
                .or_insert((ttl, offense, o.time, o.verdict.ban_classes));
            e.0 = e.0.max(ttl);
            e.1 = e.1.max(offense);
        }
    }

    fn render(&self, clients: usize) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{} entries, {} bad lines",
            self.entries, self.bad_lines
        );
        let _ = writeln!(s, "entries by class:");
        if self.classes.iter().all(|&n| n == 0) {
            let _ = writeln!(s, "  (none)");
        }
        for class in Class::ALL {
            match self.classes[class as usize] {
                0 => {}
                n => {
                    let _ = writeln!(s, "  {:<12} {n}", class.as_str());
                }
            }
        }
        let _ = writeln!(s, "decisions:");
        for kind in DecisionKind::ALL {
            match self.decisions[kind as usize] {
                0 => {}
                n => {
                    let _ = writeln!(s, "  {:<15} {n}", kind.as_str());
                }
            }
        }
        match self.bans_unlisted {
            0 => writeln!(s, "would ban {} IP(s):", self.bans.len()),
            n => writeln!(
                s,
                "would ban more than {} IP(s) ({n} more ban decisions; the first {} IPs are listed):",
                self.bans.len(),
                self.bans.len()
            ),
        }
        .ok();
        for (ip, (ttl, offense, time, classes)) in &self.bans {
            let _ = writeln!(
                s,
                "  {ip:<39} for {} (offenses {offense}, first at {}, {})",
                humantime::format_duration(*ttl),
                time_text(*time),
                classes.join(",")
            );
        }
        if let Some(paths) = &self.paths {
            s.push_str(&paths.render(clients));
        }
        s
    }
}
