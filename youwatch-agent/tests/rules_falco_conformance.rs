//! Conformance with Falco on Falco's own test expectations: every case of
//! `tests/data/falco/conformance.yaml` (extracted from falcosecurity/libs and
//! falcosecurity/falco unit tests, see its header) runs through the agent's engine.
//!
//! - `parser`: the condition parses, or is refused (with Falco's whitespace variants).
//! - `conditions`: a rule with the condition loads or is refused; where upstream evaluated
//!   it on an event, the rule fires or not on the same event. Fields are replaced as the
//!   group says (a field standing for its type) and the event is built from agent fields.
//! - `rules`: a rules file loads or is refused (with the class of error), enables as many
//!   rules as upstream counts, and fires on probe events as upstream's compiled condition
//!   says.
//!
//! A case is "not applicable" only when the agent loads it but cannot evaluate it because
//! it needs a field exec events do not carry (Falco knows its type; the agent does not).
//! Every applicable case must agree; the report lists each disagreement with its upstream
//! line.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use serde::Deserialize;
use youwatch_agent::{
    event::{EnrichedExec, ExecEvent, ProcessInfo},
    rules::{
        Engine, LoadOptions, RuleMatching, RuleSet, RulesMetrics, Status, Unsupported, condition,
        load, program::MissingKind, source::SourceFile,
    },
};

const DATA: &str = include_str!("data/falco/conformance.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    parser: Vec<Group<ParseCase>>,
    conditions: Vec<Group<ConditionCase>>,
    rules: Vec<Group<RulesCase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group<C> {
    group: String,
    /// Why the fields are replaced (for the reader).
    #[serde(default, rename = "note")]
    _note: Option<String>,
    /// Upstream field (or mock check) → agent field of the same type.
    #[serde(default)]
    replace: BTreeMap<String, String>,
    /// The upstream test's event, in agent fields.
    #[serde(default)]
    event: BTreeMap<String, String>,
    cases: Vec<C>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParseCase {
    line: u32,
    condition: String,
    parses: bool,
    /// Upstream also checks the condition wrapped in blanks, with every space turned into a
    /// line break, then into a tab.
    #[serde(default)]
    blanks: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionCase {
    line: u32,
    condition: String,
    #[serde(default)]
    compiles: Option<bool>,
    #[serde(default)]
    matches: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesCase {
    name: String,
    line: u32,
    loads: bool,
    /// Falco's error message (for the reader); `error_class` is what the agent must say.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_class: Option<ErrorClass>,
    /// Rules enabled after loading, as upstream counts them.
    #[serde(default)]
    enabled_rules: Option<usize>,
    /// Upstream's expected compiled condition (for the reader; `probes` check it).
    #[serde(default)]
    compiled: Option<String>,
    #[serde(default)]
    replace: BTreeMap<String, String>,
    /// Events and whether the (first) rule fires on each, derived from `compiled`.
    #[serde(default)]
    probes: Vec<Probe>,
    rules: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Probe {
    event: BTreeMap<String, String>,
    fires: bool,
}

/// What an error is about, and the words the agent's message must contain for it.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ErrorClass {
    /// An append/override of something not defined before it.
    NoPrevious,
    /// `override` misuse (key not overridable this way, key missing, key without override).
    Override,
    /// A rule redefined with another source.
    Source,
    /// An exception's fields/comps/values are malformed.
    Exception,
    EngineVersion,
    /// A macro used where it is not visible.
    UndefinedMacro,
    /// A key's value has the wrong type.
    ValueType,
}

impl ErrorClass {
    fn words(self) -> &'static [&'static str] {
        match self {
            ErrorClass::NoPrevious => &["not defined before it"],
            ErrorClass::Override => &["override"],
            ErrorClass::Source => &["source"],
            ErrorClass::Exception => &["exception"],
            ErrorClass::EngineVersion => &["required_engine_version"],
            ErrorClass::UndefinedMacro => &["undefined macro"],
            ErrorClass::ValueType => &["must be"],
        }
    }
}

#[derive(Default)]
struct Tally {
    cases: usize,
    not_applicable: usize,
    disagreements: Vec<String>,
}

impl Tally {
    fn record(&mut self, outcome: Outcome, what: impl FnOnce() -> String) {
        self.cases += 1;
        match outcome {
            Outcome::Agree => {}
            Outcome::NotApplicable => self.not_applicable += 1,
            Outcome::Disagree(why) => self.disagreements.push(format!("{}: {why}", what())),
        }
    }
}

enum Outcome {
    Agree,
    NotApplicable,
    Disagree(String),
}

#[test]
fn agrees_with_falco_on_its_own_test_expectations() {
    let data: Data = serde_saphyr::from_str(DATA).expect("conformance.yaml");
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for g in &data.parser {
        let tally = tallies.entry("parser").or_default();
        for c in &g.cases {
            tally.record(parse_case(c), || {
                format!("{}:{} {:?}", g.group, c.line, c.condition)
            });
        }
    }
    for g in &data.conditions {
        let tally = tallies.entry("conditions").or_default();
        for c in &g.cases {
            tally.record(condition_case(g, c), || {
                format!("{}:{} {:?}", g.group, c.line, c.condition)
            });
        }
    }
    for g in &data.rules {
        let tally = tallies.entry("rules").or_default();
        for c in &g.cases {
            tally.record(rules_case(c), || {
                format!("{}:{} {}", g.group, c.line, c.name)
            });
        }
    }
    let mut report = String::new();
    let (mut cases, mut na, mut bad) = (0, 0, 0);
    for (kind, t) in &tallies {
        let applicable = t.cases - t.not_applicable;
        let _ = writeln!(
            report,
            "{kind}: {} cases, {} not applicable, {} disagreements ({:.1}% of applicable)",
            t.cases,
            t.not_applicable,
            t.disagreements.len(),
            percent(t.disagreements.len(), applicable)
        );
        cases += t.cases;
        na += t.not_applicable;
        bad += t.disagreements.len();
    }
    let _ = writeln!(
        report,
        "total: {cases} cases, {na} not applicable, {bad} disagreements ({:.1}% of applicable)",
        percent(bad, cases - na)
    );
    for t in tallies.values() {
        for d in &t.disagreements {
            let _ = writeln!(report, "  {d}");
        }
    }
    println!("{report}");
    assert_eq!(bad, 0, "disagreements with Falco:\n{report}");
}

fn percent(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

fn parse_case(c: &ParseCase) -> Outcome {
    let mut variants = vec![c.condition.clone()];
    if c.blanks {
        let padded = format!(" {} ", c.condition);
        let lines = padded.replace(' ', "\n");
        variants.push(lines.replace('\n', "\t"));
        variants.push(lines);
        variants.push(padded);
    }
    for text in variants {
        let parsed = condition::parse(&text);
        if parsed.is_ok() != c.parses {
            return Outcome::Disagree(match parsed {
                Ok(_) => format!("parses {text:?}; Falco refuses it"),
                Err(e) => format!("refuses {text:?} ({e}); Falco parses it"),
            });
        }
    }
    Outcome::Agree
}

fn condition_case(g: &Group<ConditionCase>, c: &ConditionCase) -> Outcome {
    let condition = replace_fields(&c.condition, &g.replace);
    let rules = format!(
        "- rule: conformance\n  desc: d\n  condition: {}\n  output: o\n  priority: INFO\n",
        serde_json::to_string(&condition).unwrap()
    );
    let set = load_text(&rules);
    let expect_compiles = c.compiles.unwrap_or(true) || c.matches.is_some();
    if let Some(e) = set.diagnostics.errors.first() {
        return if expect_compiles {
            Outcome::Disagree(format!("refused ({e}); Falco compiles it"))
        } else {
            Outcome::Agree
        };
    }
    let status = &set.infos[0].status;
    if needs_fields_only(status) {
        return Outcome::NotApplicable;
    }
    if !expect_compiles {
        return Outcome::Disagree(format!("loads ({status}); Falco refuses it"));
    }
    let Some(expected) = c.matches else {
        return Outcome::Agree;
    };
    if matches!(
        status,
        Status::Unsupported(Unsupported::Needs(_) | Unsupported::Broken)
    ) {
        return Outcome::Disagree(format!("not evaluated ({status})"));
    }
    let fired = fires(&set, &event(&g.event));
    if fired == expected {
        Outcome::Agree
    } else {
        Outcome::Disagree(format!("evaluates to {fired}; Falco to {expected}"))
    }
}

fn rules_case(c: &RulesCase) -> Outcome {
    let text = replace_fields(&c.rules, &c.replace);
    let set = load_text(&text);
    let errors: Vec<String> = set
        .diagnostics
        .errors
        .iter()
        .map(ToString::to_string)
        .collect();
    if errors.is_empty() != c.loads {
        return Outcome::Disagree(if c.loads {
            format!("refused ({}); Falco loads it", errors.join(" | "))
        } else {
            format!(
                "loads; Falco refuses it ({})",
                c.error.as_deref().unwrap_or("an error")
            )
        });
    }
    if let Some(class) = c.error_class {
        let words = class.words();
        if !errors.iter().any(|e| words.iter().all(|w| e.contains(w))) {
            return Outcome::Disagree(format!(
                "error {:?} does not say {words:?} (Falco: {:?})",
                errors,
                c.error.as_deref().unwrap_or_default()
            ));
        }
    }
    if !c.loads {
        return Outcome::Agree;
    }
    if let Some(n) = c.enabled_rules {
        let enabled = set.infos.iter().filter(|i| i.enabled).count();
        if enabled != n {
            return Outcome::Disagree(format!("{enabled} rules enabled; Falco {n}"));
        }
    }
    for p in &c.probes {
        if set
            .infos
            .first()
            .is_some_and(|i| needs_fields_only(&i.status))
        {
            return Outcome::NotApplicable;
        }
        let fired = fires(&set, &event(&p.event));
        if fired != p.fires {
            return Outcome::Disagree(format!(
                "fires {fired} on {:?}; Falco's compiled condition {:?} says {}",
                p.event,
                c.compiled.as_deref().unwrap_or_default(),
                p.fires
            ));
        }
    }
    Outcome::Agree
}

fn load_text(text: &str) -> RuleSet {
    load(
        &[SourceFile::new("conformance.yaml", text.to_owned())],
        &LoadOptions::default(),
    )
}

/// Loaded, but needs fields the agent does not produce (nothing to compare).
fn needs_fields_only(status: &Status) -> bool {
    match status {
        Status::Unsupported(Unsupported::Needs(missing)) => missing
            .iter()
            .all(|m| matches!(m.why, MissingKind::NotProduced | MissingKind::UnknownField)),
        _ => false,
    }
}

fn fires(set: &RuleSet, exec: &EnrichedExec) -> bool {
    let engine = Engine::new(
        set,
        RuleMatching::All,
        Vec::new(),
        "node-1".into(),
        RulesMetrics::default(),
    );
    !engine.evaluate(exec).is_empty()
}

/// Replaces whole tokens: `from` not preceded by a name character or a dot, not followed by
/// a name character.
fn replace_fields(text: &str, replace: &BTreeMap<String, String>) -> String {
    let name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = text.to_owned();
    for (from, to) in replace {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(from.as_str()) {
            let before = rest[..i].chars().next_back();
            let after = rest[i + from.len()..].chars().next();
            result.push_str(&rest[..i]);
            if before.is_some_and(|c| name(c) || c == '.') || after.is_some_and(name) {
                result.push_str(from);
            } else {
                result.push_str(to);
            }
            rest = &rest[i + from.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// An exec whose fields are as given (agent field names); unset fields are those of
/// upstream's default process (`init`, pid 1).
fn event(fields: &BTreeMap<String, String>) -> EnrichedExec {
    let get = |k: &str| fields.get(k).cloned();
    let name = get("proc.name").unwrap_or_else(|| "init".into());
    let exepath = get("proc.exepath").unwrap_or_else(|| "/sbin/init".into());
    let args: Vec<String> = get("proc.args")
        .map(|a| a.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    let exe = get("proc.exe").unwrap_or_else(|| exepath.clone());
    let parent = ProcessInfo {
        pid: 2,
        name: get("proc.pname").unwrap_or_else(|| "swapper".into()),
        exe: get("proc.pexepath").unwrap_or_default(),
        exepath: get("proc.pexepath").unwrap_or_default(),
        args: Vec::new(),
    };
    let uid = get("user.uid").map_or(0, |u| u.parse().unwrap());
    EnrichedExec {
        event: ExecEvent {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ktime_ns: 1,
            pid: 1,
            tgid: 1,
            ppid: 2,
            uid,
            gid: 0,
            tty: 0,
            cgroup_id: 7,
            watched_cgroup_id: 7,
            comm: name.clone(),
            parent_comm: parent.name.clone(),
            filename: exepath.clone(),
            argv: std::iter::once(exe.clone()).chain(args.clone()).collect(),
            args_truncated: false,
            filename_truncated: false,
            ..ExecEvent::default()
        },
        process: ProcessInfo {
            pid: 1,
            name,
            exe,
            exepath,
            args,
        },
        ancestors: vec![parent],
        user_name: get("user.name").or_else(|| Some("root".into())),
        container: None,
        pod: None,
    }
}
