//! Rule files → a rule set: every rule compiled, with its status on exec events (evaluable,
//! switched off, or not evaluable and why), and every error and warning with its position.

use std::{fmt, path::Path, sync::Arc};

use super::{
    collector::{Collector, RuleDef},
    compile::{self, ParsedMacro, Symbols},
    condition,
    diagnostics::{Diagnostics, LoadError, Warning, rule_what},
    document, exceptions,
    lists::Lists,
    output::OutputFormat,
    program::{Missing, MissingKind, Node},
    reader,
    source::{CondText, Pos, SourceFile},
};
use crate::detection::Priority;

/// Which rules to switch off when loading.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Rules less severe than this are not evaluated (Falco's `priority` setting).
    pub min_priority: Priority,
    pub disabled_rules: Vec<String>,
    pub disabled_tags: Vec<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            min_priority: Priority::Debug,
            disabled_rules: Vec::new(),
            disabled_tags: Vec::new(),
        }
    }
}

/// A rule's standing on exec events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Evaluable,
    /// Evaluable, but switched off.
    Off(OffReason),
    /// Cannot be evaluated on exec events.
    Unsupported(Unsupported),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OffReason {
    /// `enabled: false` in the rule files.
    EnabledFalse,
    /// `rules.disable.rules` in the configuration.
    ByName,
    /// `rules.disable.tags` in the configuration.
    ByTag(String),
    BelowMinPriority(Priority),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// Another event source (`k8s_audit`, `aws_cloudtrail`...).
    Source(String),
    /// The condition needs these event types, never an exec.
    EventTypes(Vec<String>),
    /// The condition can never hold on an exec event.
    NeverTrue,
    /// The condition needs fields exec events do not provide.
    Needs(Vec<Missing>),
    /// The rule has an error (reported separately).
    Broken,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Evaluable => f.write_str("evaluable on exec events"),
            Status::Off(OffReason::EnabledFalse) => f.write_str("off: enabled: false"),
            Status::Off(OffReason::ByName) => f.write_str("off: rules.disable.rules"),
            Status::Off(OffReason::ByTag(t)) => write!(f, "off: rules.disable.tags ({t})"),
            Status::Off(OffReason::BelowMinPriority(p)) => {
                write!(f, "off: below rules.min_priority ({p})")
            }
            Status::Unsupported(u) => write!(f, "not evaluable: {u}"),
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Source(s) => write!(
                f,
                "source {s}; the agent evaluates syscall rules on its exec events"
            ),
            Unsupported::EventTypes(types) => write!(
                f,
                "needs evt.type {}; the agent produces execve events only",
                types.join(", ")
            ),
            Unsupported::NeverTrue => f.write_str("the condition is never true on an exec event"),
            Unsupported::Needs(missing) => {
                let mut first = true;
                for m in missing {
                    f.write_str(if first { "needs " } else { ", " })?;
                    first = false;
                    match m.why {
                        MissingKind::NotProduced => write!(f, "{} ({})", m.what, m.pos)?,
                        MissingKind::UnknownField => {
                            write!(f, "{} ({}; not a Falco field, a typo?)", m.what, m.pos)?
                        }
                    }
                }
                f.write_str(", which exec events do not provide")
            }
            Unsupported::Broken => f.write_str("the rule has errors"),
        }
    }
}

/// What `rules list`/`rules check` show for a rule.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub name: String,
    pub desc: String,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub source: String,
    pub pos: Pos,
    /// `enabled` in the rule files (before configuration).
    pub enabled: bool,
    pub status: Status,
}

/// An evaluable, enabled rule.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub name: Arc<str>,
    pub priority: Priority,
    pub tags: Arc<[String]>,
    pub condition: Node,
    pub output: OutputFormat,
}

/// The outcome of loading: usable only when `diagnostics.errors` is empty.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Evaluable and enabled, in load order (Falco's order of evaluation).
    pub rules: Vec<CompiledRule>,
    /// Every rule, in load order.
    pub infos: Vec<RuleInfo>,
    pub diagnostics: Diagnostics,
}

impl RuleSet {
    /// One warning per rule that is enabled in its file but cannot be evaluated on exec
    /// events, naming what it needs.
    pub fn unsupported_warnings(&self) -> Vec<Warning> {
        self.infos
            .iter()
            .filter(|i| i.enabled)
            .filter_map(|i| match &i.status {
                Status::Unsupported(u) if *u != Unsupported::Broken => Some(Warning {
                    pos: i.pos.clone(),
                    what: rule_what(&i.name),
                    message: format!("disabled: {u}"),
                }),
                _ => None,
            })
            .collect()
    }

    /// Counts per status class: (evaluable, off, not evaluable).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for i in &self.infos {
            match i.status {
                Status::Evaluable => c.0 += 1,
                Status::Off(_) => c.1 += 1,
                Status::Unsupported(_) => c.2 += 1,
            }
        }
        c
    }
}

/// Reads a rules file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Arc<SourceFile>, LoadError> {
    let read_error = |message: String| LoadError::Read {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_error(e.to_string()))?;
    if meta.len() > document::MAX_FILE_BYTES as u64 {
        return Err(read_error(format!(
            "{} bytes is more than the {} a rules file may have",
            meta.len(),
            document::MAX_FILE_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| read_error(format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to())))?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

/// Loads files in order (later ones override earlier ones) and compiles every rule.
pub fn load(files: &[Arc<SourceFile>], opts: &LoadOptions) -> RuleSet {
    let mut diag = Diagnostics::default();
    let mut collector = Collector::default();
    for file in files {
        match document::parse(file) {
            Ok(nodes) => {
                for node in &nodes {
                    let applied = reader::read(node, &mut diag)
                        .and_then(|items| items.into_iter().try_for_each(|i| collector.apply(i)));
                    if let Err(e) = applied {
                        diag.error(e);
                    }
                }
            }
            Err(e) => diag.error(e),
        }
    }
    let lists = Lists::compile(&collector.lists);
    let symbols = symbols(&collector, &lists, &mut diag);
    let mut set = RuleSet::default();
    for def in &collector.rules {
        let (info, compiled) = rule(def, &lists, &symbols, opts, &mut diag);
        if info.status == Status::Evaluable
            && let Some(c) = compiled
        {
            set.rules.push(c);
        }
        set.infos.push(info);
    }
    for name in &opts.disabled_rules {
        if collector.rule_named(name).is_none() {
            diag.warn(
                &Pos::unknown("configuration"),
                "rules.disable.rules",
                format!("no rule is named {name:?}"),
            );
        }
    }
    set.diagnostics = diag;
    set
}

/// Macros with lists substituted, parsed.
fn symbols(c: &Collector, lists: &Lists, diag: &mut Diagnostics) -> Symbols {
    let mut s = Symbols::default();
    for m in &c.macros {
        let what = format!("macro {}", m.def.name);
        let mut text = CondText::new(&m.def.condition);
        if let Err(e) = lists.substitute(&mut text) {
            diag.error(LoadError::invalid(&text.start(), &what, e));
            continue;
        }
        match condition::parse(text.as_str()) {
            Ok(ast) => {
                s.macros.insert(
                    m.def.name.clone(),
                    ParsedMacro {
                        ast,
                        text,
                        index: m.index,
                        visibility: m.visibility,
                    },
                );
            }
            Err(e) => diag.error(LoadError::Syntax {
                pos: text.pos(e.offset),
                what,
                message: e.message,
            }),
        }
    }
    s
}

fn rule(
    def: &RuleDef,
    lists: &Lists,
    symbols: &Symbols,
    opts: &LoadOptions,
    diag: &mut Diagnostics,
) -> (RuleInfo, Option<CompiledRule>) {
    let what = rule_what(&def.name);
    let mut info = RuleInfo {
        name: def.name.clone(),
        desc: def.desc.trim().to_owned(),
        priority: def.priority,
        tags: def.tags.iter().cloned().collect(),
        source: def.source.clone(),
        pos: def.pos.clone(),
        enabled: def.enabled,
        status: Status::Evaluable,
    };
    if def.source != "syscall" {
        info.status = Status::Unsupported(Unsupported::Source(def.source.clone()));
        return (info, None);
    }
    let compiled = match compile_rule(def, lists, symbols, &what) {
        Ok(c) => c,
        Err(errors) => {
            errors.into_iter().for_each(|e| diag.error(e));
            info.status = Status::Unsupported(Unsupported::Broken);
            return (info, None);
        }
    };
    let (condition, event_types, output) = compiled;
    let missing = condition.missing();
    info.status = if !missing.is_empty() {
        Status::Unsupported(Unsupported::Needs(missing))
    } else if matches!(condition, Node::Const(false)) {
        Status::Unsupported(if event_types.is_empty() {
            Unsupported::NeverTrue
        } else {
            Unsupported::EventTypes(event_types)
        })
    } else if !def.enabled {
        Status::Off(OffReason::EnabledFalse)
    } else if opts.disabled_rules.iter().any(|n| n == &def.name) {
        Status::Off(OffReason::ByName)
    } else if let Some(tag) = opts.disabled_tags.iter().find(|t| def.tags.contains(*t)) {
        Status::Off(OffReason::ByTag(tag.clone()))
    } else if def.priority > opts.min_priority {
        Status::Off(OffReason::BelowMinPriority(opts.min_priority))
    } else {
        Status::Evaluable
    };
    let rule = CompiledRule {
        name: def.name.as_str().into(),
        priority: def.priority,
        tags: info.tags.clone().into(),
        condition,
        output,
    };
    (info, Some(rule))
}

type CompiledParts = (Node, Vec<String>, OutputFormat);

/// Condition (with exceptions) and output, or every error found in them.
fn compile_rule(
    def: &RuleDef,
    lists: &Lists,
    symbols: &Symbols,
    what: &str,
) -> Result<CompiledParts, Vec<LoadError>> {
    let mut errors = Vec::new();
    let mut condition = None;
    match condition_text(def, lists, what) {
        Ok(text) => match condition::parse(text.as_str()) {
            Ok(ast) => match compile::condition(symbols, &ast, &text) {
                Ok(c) => condition = Some(c),
                Err(e) => errors.push(LoadError::invalid(
                    &e.pos,
                    what,
                    in_exception(def, e.message, &e.pos),
                )),
            },
            Err(e) => {
                let pos = text.pos(e.offset);
                let message = match text.extra_index(e.offset) {
                    Some(i) => format!("exception {:?}: {}", def.exceptions[i].name, e.message),
                    None => e.message,
                };
                errors.push(LoadError::Syntax {
                    pos,
                    what: what.to_owned(),
                    message,
                });
            }
        },
        Err(e) => errors.push(e),
    }
    let output = match OutputFormat::compile(&def.output) {
        Ok(o) => Some(o),
        Err(e) => {
            errors.push(LoadError::invalid(&e.pos, what, e.message));
            None
        }
    };
    match (condition, output) {
        (Some(c), Some(output)) if errors.is_empty() => {
            Ok((c.node, c.event_types.into_iter().collect(), output))
        }
        _ => Err(errors),
    }
}

/// The condition as Falco compiles it: `(condition) and not (exception)...`, with every list
/// name replaced by its items.
fn condition_text(def: &RuleDef, lists: &Lists, what: &str) -> Result<CondText, LoadError> {
    let mut text = CondText::new(&def.condition);
    let mut parts = Vec::new();
    for ex in &def.exceptions {
        parts.push(exceptions::condition_text(ex, what)?.map(|t| (t, ex.pos.clone())));
    }
    if !def.exceptions.is_empty() {
        text.parenthesize();
    }
    // Each exception's text keeps its index, so errors in it can name it.
    for part in parts {
        match part {
            Some((t, pos)) => text.push_extra(&t, pos),
            None => text.push_extra("", Pos::unknown("")),
        }
    }
    lists
        .substitute(&mut text)
        .map_err(|e| LoadError::invalid(&text.start(), what, e))?;
    Ok(text)
}

/// A compile error's message, naming the exception when it is in one (errors in an
/// exception's text point at the exception).
fn in_exception(def: &RuleDef, message: String, pos: &Pos) -> String {
    match def.exceptions.iter().find(|ex| ex.pos == *pos) {
        Some(ex) => format!("exception {:?}: {message}", ex.name),
        None => message,
    }
}
