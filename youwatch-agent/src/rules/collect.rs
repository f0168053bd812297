//! Reads rule-file items in load order and applies Falco's semantics for redefining,
//! appending and overriding: a later `list`/`macro`/`rule` with an existing name replaces it
//! in place; `append: true` (legacy) and `override: {key: append|replace}` change parts of it;
//! a rule item with only `enabled` switches an existing rule on or off.

use std::collections::{BTreeSet, HashMap};

use super::{
    diagnostics::{Diagnostics, LoadError, rule_what},
    document::{Kind, Node},
    source::{Pos, Scalar, SourceText},
};
use crate::detection::Priority;

/// The Falco engine version whose condition language and fields the agent implements.
pub const ENGINE_VERSION: Version = Version(0, 57, 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

#[derive(Clone, Debug)]
pub struct ListDef {
    pub name: String,
    /// Items as written (possibly quoted, possibly names of earlier lists).
    pub items: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct MacroDef {
    pub name: String,
    pub condition: SourceText,
}

#[derive(Clone, Debug)]
pub struct RuleDef {
    pub name: String,
    pub desc: String,
    pub condition: SourceText,
    pub output: SourceText,
    pub priority: Priority,
    pub tags: BTreeSet<String>,
    pub enabled: bool,
    pub source: String,
    pub exceptions: Vec<ExceptionDef>,
    pub pos: Pos,
}

/// An exception as written; `rules::exceptions` turns it into a condition.
#[derive(Clone, Debug)]
pub struct ExceptionDef {
    pub name: String,
    pub fields: Option<Node>,
    pub comps: Option<Node>,
    pub values: Vec<Node>,
    pub pos: Pos,
}

/// Everything defined by the files, in definition order.
#[derive(Debug, Default)]
pub struct Collected {
    pub lists: Vec<ListDef>,
    pub macros: Vec<MacroDef>,
    pub rules: Vec<RuleDef>,
    list_index: HashMap<String, usize>,
    macro_index: HashMap<String, usize>,
    rule_index: HashMap<String, usize>,
}

const RULE_APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_REPLACEABLE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "capture",
    "capture_duration",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
];
const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "tags",
    "enabled",
    "source",
    "exceptions",
    "override",
    "append",
    "capture",
    "capture_duration",
    "warn_evttypes",
    "skip-if-unknown-filter",
];

impl Collected {
    /// Applies one top-level item.
    pub fn item(&mut self, node: &Node, diag: &mut Diagnostics) {
        if !matches!(node.kind, Kind::Map(_)) {
            diag.error(LoadError::invalid(
                &node.pos,
                "item",
                format!(
                    "expected a mapping (- rule:, - macro:, - list:), found {}",
                    node.kind_name()
                ),
            ));
            return;
        }
        let result = if let Some(v) = node.get("required_engine_version") {
            required_engine_version(v, diag)
        } else if let Some(v) = node.get("required_plugin_versions") {
            required_plugin_versions(v, diag)
        } else if node.get("list").is_some() {
            self.list(node, diag)
        } else if node.get("macro").is_some() {
            self.macro_item(node, diag)
        } else if node.get("rule").is_some() {
            self.rule(node, diag)
        } else {
            diag.warn(
                &node.pos,
                "item",
                "not a rule, macro, list, required_engine_version or required_plugin_versions: ignored",
            );
            Ok(())
        };
        if let Err(e) = result {
            diag.error(e);
        }
    }

    pub fn rule_named(&self, name: &str) -> Option<&RuleDef> {
        self.rule_index.get(name).map(|&i| &self.rules[i])
    }

    fn list(&mut self, node: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
        let name = name_of(node, "list")?;
        let what = format!("list {name}");
        warn_unknown_keys(node, &["list", "items", "append", "override"], &what, diag);
        let items_node = node
            .get("items")
            .ok_or_else(|| LoadError::invalid(&node.pos, &what, "has no items"))?;
        let items = scalar_list(items_node, &what, "items")?;
        if appends(node, &what, "items", diag)? {
            let i = earlier(&self.list_index, &name, node, &what)?;
            self.lists[i].items.extend(items);
        } else {
            let def = ListDef {
                name: name.clone(),
                items,
            };
            define(&mut self.lists, &mut self.list_index, name, def);
        }
        Ok(())
    }

    fn macro_item(&mut self, node: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
        let name = name_of(node, "macro")?;
        let what = format!("macro {name}");
        warn_unknown_keys(
            node,
            &["macro", "condition", "append", "override"],
            &what,
            diag,
        );
        let condition = required_scalar(node, "condition", &what)?;
        if appends(node, &what, "condition", diag)? {
            let i = earlier(&self.macro_index, &name, node, &what)?;
            self.macros[i].condition.append(condition);
        } else {
            let def = MacroDef {
                name: name.clone(),
                condition: SourceText::new(condition),
            };
            define(&mut self.macros, &mut self.macro_index, name, def);
        }
        Ok(())
    }

    fn rule(&mut self, node: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
        let name = name_of(node, "rule")?;
        let what = rule_what(&name);
        warn_unknown_keys(node, RULE_KEYS, &what, diag);
        let source = optional_scalar(node, "source", &what)?.map(|s| s.value);
        if let (Some(prev), Some(src)) = (self.rule_named(&name), &source)
            && &prev.source != src
        {
            return Err(LoadError::invalid(
                &node.pos,
                &what,
                format!(
                    "is already defined with source {:?}; a rule cannot change its source ({src:?})",
                    prev.source
                ),
            ));
        }
        let append = legacy_append(node, &what, diag)?;
        let overrides = Overrides::read(node, &what, RULE_APPENDABLE, RULE_REPLACEABLE)?;
        if append && !overrides.is_empty() {
            return Err(conflict(&node.pos, &what));
        }
        if !overrides.is_empty() {
            return self.override_rule(node, &name, &what, &overrides);
        }
        if append {
            return self.append_rule(node, &name, &what);
        }
        let defines = ["condition", "output", "desc", "priority"]
            .iter()
            .any(|k| node.get(k).is_some());
        if !defines {
            // `- rule: X` with `enabled:` only: switch an existing rule on or off.
            let enabled = optional_bool(node, "enabled", &what)?.ok_or_else(|| {
                LoadError::invalid(
                    &node.pos,
                    &what,
                    "has none of condition, output, priority, desc or enabled",
                )
            })?;
            let Some(&i) = self.rule_index.get(&name) else {
                return Err(LoadError::invalid(
                    &node.pos,
                    &what,
                    "sets 'enabled' but no rule by that name is defined before it",
                ));
            };
            self.rules[i].enabled = enabled;
            return Ok(());
        }
        let def = RuleDef {
            name: name.clone(),
            desc: optional_scalar(node, "desc", &what)?
                .map(|s| s.value)
                .unwrap_or_default(),
            condition: SourceText::new(required_scalar(node, "condition", &what)?),
            output: SourceText::new(required_scalar(node, "output", &what)?),
            priority: priority(node, &what)?,
            tags: tags(node, &what)?.unwrap_or_default(),
            enabled: optional_bool(node, "enabled", &what)?.unwrap_or(true),
            source: source.unwrap_or_else(|| "syscall".to_owned()),
            exceptions: exceptions(node, &what, false, diag)?,
            pos: node.pos.clone(),
        };
        define(&mut self.rules, &mut self.rule_index, name, def);
        Ok(())
    }

    fn prev_rule(
        &mut self,
        node: &Node,
        name: &str,
        what: &str,
        how: &str,
    ) -> Result<&mut RuleDef, LoadError> {
        match self.rule_index.get(name) {
            Some(&i) => Ok(&mut self.rules[i]),
            None => Err(LoadError::invalid(
                &node.pos,
                what,
                format!("{how} a rule that is not defined before it"),
            )),
        }
    }

    /// Legacy `append: true`: the condition is appended and exceptions merged.
    fn append_rule(&mut self, node: &Node, name: &str, what: &str) -> Result<(), LoadError> {
        let condition = optional_scalar(node, "condition", what)?;
        let mut scratch = Diagnostics::default();
        let new_exceptions = exceptions(node, what, true, &mut scratch)?;
        let prev = self.prev_rule(node, name, what, "appends to")?;
        if let Some(c) = condition {
            prev.condition.append(c);
        }
        merge_exceptions(prev, new_exceptions, what)
    }

    fn override_rule(
        &mut self,
        node: &Node,
        name: &str,
        what: &str,
        overrides: &Overrides,
    ) -> Result<(), LoadError> {
        // Every overridable key present must say how (Falco refuses a silent ambiguity).
        for key in RULE_APPENDABLE.iter().chain(RULE_REPLACEABLE) {
            if let Some(v) = node.get(key)
                && !overrides.append.contains(*key)
                && !overrides.replace.contains(*key)
            {
                return Err(LoadError::invalid(
                    &v.pos,
                    what,
                    format!("'{key}' is set but 'override' says neither append nor replace for it"),
                ));
            }
        }
        let condition = optional_scalar(node, "condition", what)?;
        let output = optional_scalar(node, "output", what)?;
        let desc = optional_scalar(node, "desc", what)?;
        let new_tags = tags(node, what)?;
        let new_priority = match node.get("priority") {
            Some(_) => Some(priority(node, what)?),
            None => None,
        };
        let enabled = optional_bool(node, "enabled", what)?;
        let mut scratch = Diagnostics::default();
        let appending_exceptions = overrides.append.contains("exceptions");
        let new_exceptions = exceptions(node, what, appending_exceptions, &mut scratch)?;
        let prev = self.prev_rule(node, name, what, "overrides")?;
        let appends = |key: &str| overrides.append.contains(key);
        if let Some(c) = condition {
            if appends("condition") {
                prev.condition.append(c);
            } else {
                prev.condition.replace(c);
            }
        }
        if let Some(o) = output {
            if appends("output") {
                prev.output.append(o);
            } else {
                prev.output.replace(o);
            }
        }
        if let Some(d) = desc {
            if appends("desc") {
                prev.desc.push(' ');
                prev.desc.push_str(&d.value);
            } else {
                prev.desc = d.value;
            }
        }
        if let Some(t) = new_tags {
            if appends("tags") {
                prev.tags.extend(t);
            } else {
                prev.tags = t;
            }
        }
        if let Some(p) = new_priority {
            prev.priority = p;
        }
        if let Some(e) = enabled {
            prev.enabled = e;
        }
        if node.get("exceptions").is_some() {
            if appending_exceptions {
                merge_exceptions(prev, new_exceptions, what)?;
            } else {
                prev.exceptions = new_exceptions;
            }
        }
        Ok(())
    }
}

/// Appends exceptions: values of an existing exception (by name) are extended; a new one
/// is added whole.
fn merge_exceptions(
    prev: &mut RuleDef,
    new: Vec<ExceptionDef>,
    what: &str,
) -> Result<(), LoadError> {
    for ex in new {
        match prev.exceptions.iter_mut().find(|e| e.name == ex.name) {
            Some(existing) => {
                if ex.fields.is_some() || ex.comps.is_some() {
                    return Err(LoadError::invalid(
                        &ex.pos,
                        what,
                        format!(
                            "exception {:?} exists already: an append may add values, not fields or comps",
                            ex.name
                        ),
                    ));
                }
                existing.values.extend(ex.values);
            }
            None => {
                if ex.fields.is_none() || ex.values.is_empty() {
                    return Err(LoadError::invalid(
                        &ex.pos,
                        what,
                        format!("new exception {:?} needs fields and values", ex.name),
                    ));
                }
                prev.exceptions.push(ex);
            }
        }
    }
    Ok(())
}

/// For lists and macros, whose one overridable key is `key`: whether the item appends to an
/// earlier definition (`append: true` or `override: {key: append}`) instead of (re)defining.
fn appends(node: &Node, what: &str, key: &str, diag: &mut Diagnostics) -> Result<bool, LoadError> {
    let append = legacy_append(node, what, diag)?;
    let overrides = Overrides::read(node, what, &[key], &[key])?;
    if append && !overrides.is_empty() {
        return Err(conflict(&node.pos, what));
    }
    Ok(append || overrides.append.contains(key))
}

/// The index of the earlier definition an append applies to.
fn earlier(
    index: &HashMap<String, usize>,
    name: &str,
    node: &Node,
    what: &str,
) -> Result<usize, LoadError> {
    index.get(name).copied().ok_or_else(|| {
        LoadError::invalid(
            &node.pos,
            what,
            "appends to something not defined before it",
        )
    })
}

fn define<T>(items: &mut Vec<T>, index: &mut HashMap<String, usize>, name: String, def: T) {
    match index.get(&name) {
        // Redefinition replaces in place: load order (and Falco's rule order) is kept.
        Some(&i) => items[i] = def,
        None => {
            index.insert(name, items.len());
            items.push(def);
        }
    }
}

fn conflict(pos: &Pos, what: &str) -> LoadError {
    LoadError::invalid(
        pos,
        what,
        "use either 'append: true' or 'override', not both",
    )
}

fn name_of(node: &Node, key: &str) -> Result<String, LoadError> {
    let v = node.get(key).unwrap_or(node);
    match v.as_text() {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => Err(LoadError::invalid(
            &v.pos,
            key,
            format!("the {key} name must be a non-empty string"),
        )),
    }
}

fn required_scalar(node: &Node, key: &str, what: &str) -> Result<Scalar, LoadError> {
    optional_scalar(node, key, what)?
        .ok_or_else(|| LoadError::invalid(&node.pos, what, format!("has no '{key}'")))
}

fn optional_scalar(node: &Node, key: &str, what: &str) -> Result<Option<Scalar>, LoadError> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => match v.kind {
            Kind::Str(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => Ok(v.as_scalar()),
            _ => Err(LoadError::invalid(
                &v.pos,
                what,
                format!("'{key}' must be a string, found {}", v.kind_name()),
            )),
        },
    }
}

fn optional_bool(node: &Node, key: &str, what: &str) -> Result<Option<bool>, LoadError> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => match v.kind {
            Kind::Bool(b) => Ok(Some(b)),
            _ => Err(LoadError::invalid(
                &v.pos,
                what,
                format!("'{key}' must be true or false, found {}", v.kind_name()),
            )),
        },
    }
}

fn legacy_append(node: &Node, what: &str, diag: &mut Diagnostics) -> Result<bool, LoadError> {
    let append = optional_bool(node, "append", what)?.unwrap_or(false);
    if append {
        diag.warn(
            &node.pos,
            what,
            "'append: true' is deprecated in Falco; prefer 'override: {condition: append}' (or items)",
        );
    }
    Ok(append)
}

/// A sequence of scalars (list items, tags), as strings.
fn scalar_list(node: &Node, what: &str, key: &str) -> Result<Vec<String>, LoadError> {
    match &node.kind {
        Kind::Null => Ok(Vec::new()),
        Kind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_text().ok_or_else(|| {
                    LoadError::invalid(
                        &i.pos,
                        what,
                        format!("'{key}' entries must be strings, found {}", i.kind_name()),
                    )
                })
            })
            .collect(),
        _ => Err(LoadError::invalid(
            &node.pos,
            what,
            format!("'{key}' must be a sequence, found {}", node.kind_name()),
        )),
    }
}

fn priority(node: &Node, what: &str) -> Result<Priority, LoadError> {
    let p = required_scalar(node, "priority", what)?;
    p.value
        .parse()
        .map_err(|e: crate::detection::UnknownPriority| {
            LoadError::invalid(&p.pos, what, e.to_string())
        })
}

/// Tags, deduplicated and sorted as Falco keeps them.
fn tags(node: &Node, what: &str) -> Result<Option<BTreeSet<String>>, LoadError> {
    node.get("tags")
        .map(|t| scalar_list(t, what, "tags").map(|v| v.into_iter().collect()))
        .transpose()
}

fn exceptions(
    node: &Node,
    what: &str,
    appending: bool,
    diag: &mut Diagnostics,
) -> Result<Vec<ExceptionDef>, LoadError> {
    let Some(list) = node.get("exceptions") else {
        return Ok(Vec::new());
    };
    let items = match &list.kind {
        Kind::Null => return Ok(Vec::new()),
        Kind::Seq(items) => items,
        _ => {
            return Err(LoadError::invalid(
                &list.pos,
                what,
                "'exceptions' must be a sequence",
            ));
        }
    };
    let mut out: Vec<ExceptionDef> = Vec::new();
    for item in items {
        if !matches!(item.kind, Kind::Map(_)) {
            return Err(LoadError::invalid(
                &item.pos,
                what,
                "each exception must be a mapping",
            ));
        }
        warn_unknown_keys(item, &["name", "fields", "comps", "values"], what, diag);
        let name = required_scalar(item, "name", what)?.value;
        if out.iter().any(|e| e.name == name) {
            diag.warn(
                &item.pos,
                what,
                format!("exception {name:?} is defined twice"),
            );
        }
        let fields = item.get("fields").cloned();
        if fields.is_none() && !appending {
            return Err(LoadError::invalid(
                &item.pos,
                what,
                format!("exception {name:?} has no 'fields'"),
            ));
        }
        let values = match item.get("values").map(|v| &v.kind) {
            None | Some(Kind::Null) => Vec::new(),
            Some(Kind::Seq(v)) => v.clone(),
            Some(_) => {
                return Err(LoadError::invalid(
                    &item.pos,
                    what,
                    format!("exception {name:?}: 'values' must be a sequence"),
                ));
            }
        };
        out.push(ExceptionDef {
            name,
            fields,
            comps: item.get("comps").cloned(),
            values,
            pos: item.pos.clone(),
        });
    }
    Ok(out)
}

fn warn_unknown_keys(node: &Node, known: &[&str], what: &str, diag: &mut Diagnostics) {
    for (key, key_node) in node.keys() {
        if !known.contains(&key.as_str()) {
            diag.warn(&key_node.pos, what, format!("unknown key '{key}' ignored"));
        }
    }
}

/// `override: {key: append|replace}`.
#[derive(Default)]
struct Overrides {
    append: BTreeSet<String>,
    replace: BTreeSet<String>,
}

impl Overrides {
    fn read(
        node: &Node,
        what: &str,
        appendable: &[&str],
        replaceable: &[&str],
    ) -> Result<Self, LoadError> {
        let mut out = Overrides::default();
        let Some(o) = node.get("override") else {
            return Ok(out);
        };
        let Kind::Map(entries) = &o.kind else {
            return Err(LoadError::invalid(
                &o.pos,
                what,
                "'override' must be a mapping such as {condition: append}",
            ));
        };
        for (k, v) in entries {
            let key = k.as_text().unwrap_or_default();
            let how = v.as_text().unwrap_or_default();
            let (allowed, set) = match how.as_str() {
                "append" => (appendable, &mut out.append),
                "replace" => (replaceable, &mut out.replace),
                _ => {
                    return Err(LoadError::invalid(
                        &v.pos,
                        what,
                        format!("override of '{key}' must be 'append' or 'replace', not {how:?}"),
                    ));
                }
            };
            if !allowed.contains(&key.as_str()) {
                return Err(LoadError::invalid(
                    &k.pos,
                    what,
                    format!(
                        "'{key}' cannot be overridden with {how} (allowed: {})",
                        allowed.join(", ")
                    ),
                ));
            }
            if node.get(&key).is_none() {
                return Err(LoadError::invalid(
                    &k.pos,
                    what,
                    format!("override of '{key}' but the item has no '{key}'"),
                ));
            }
            set.insert(key);
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.append.is_empty() && self.replace.is_empty()
    }
}

fn required_engine_version(v: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
    let what = "required_engine_version";
    let text = v.as_text().unwrap_or_default();
    let version = parse_version(&text, matches!(v.kind, Kind::Int(_))).ok_or_else(|| {
        LoadError::invalid(
            &v.pos,
            what,
            format!("{text:?} is not a version such as 0.57.0 (or a legacy integer such as 13)"),
        )
    })?;
    if version > ENGINE_VERSION {
        diag.warn(
            &v.pos,
            what,
            format!(
                "the file asks for Falco engine {version}; the agent implements the {ENGINE_VERSION} \
                 condition language: rules using newer fields are disabled, newer syntax is an error"
            ),
        );
    }
    Ok(())
}

/// `0.57.0`, or a legacy integer `N` meaning `0.N.0`.
fn parse_version(text: &str, integer: bool) -> Option<Version> {
    if integer {
        return text.parse().ok().map(|n| Version(0, n, 0));
    }
    let mut parts = text.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    // Tolerate a pre-release suffix: 0.57.0-rc1.
    let patch = parts.next()?.split(['-', '+']).next()?.parse().ok()?;
    Some(Version(major, minor, patch))
}

fn required_plugin_versions(v: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
    let what = "required_plugin_versions";
    let Kind::Seq(plugins) = &v.kind else {
        return Err(LoadError::invalid(
            &v.pos,
            what,
            "must be a sequence of {name, version}",
        ));
    };
    for p in plugins {
        let name = p.get("name").and_then(Node::as_text).unwrap_or_default();
        let version = p.get("version").and_then(Node::as_text).unwrap_or_default();
        if name.is_empty() || version.is_empty() {
            return Err(LoadError::invalid(
                &p.pos,
                what,
                "each entry needs a name and a version",
            ));
        }
        let note = match name.as_str() {
            "container" | "k8smeta" => "the agent fills container.* and k8s.* itself",
            _ => {
                "the agent loads no Falco plugins; rules on that plugin's source or fields are disabled"
            }
        };
        diag.note(&p.pos, what, format!("plugin {name} {version}: {note}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{document, source::SourceFile};

    fn collect(files: &[&str]) -> (Collected, Diagnostics) {
        let mut c = Collected::default();
        let mut d = Diagnostics::default();
        for (i, text) in files.iter().enumerate() {
            let f = SourceFile::new(format!("f{i}.yaml"), (*text).to_owned());
            for item in document::parse(&f).unwrap() {
                c.item(&item, &mut d);
            }
        }
        (c, d)
    }

    const BASE: &str = "
- list: shells
  items: [sh, bash]
- macro: m
  condition: proc.name in (shells)
- rule: R
  desc: d
  condition: m
  output: out %proc.name
  priority: WARNING
  tags: [b, a]
";

    #[test]
    fn later_files_override_earlier_ones() {
        let (c, d) = collect(&[
            BASE,
            "
- list: shells
  items: [zsh]
  override: {items: append}
- macro: m
  condition: or proc.name = x
  append: true
- rule: R
  condition: and proc.tty != 0
  priority: ERROR
  tags: [c]
  override: {condition: append, priority: replace, tags: append}
- rule: R
  enabled: false
",
        ]);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(c.lists[0].items, ["sh", "bash", "zsh"]);
        assert_eq!(
            c.macros[0].condition.as_str(),
            "proc.name in (shells) or proc.name = x"
        );
        let r = &c.rules[0];
        assert_eq!(r.condition.as_str(), "m and proc.tty != 0");
        assert_eq!(r.priority, Priority::Error);
        assert_eq!(r.tags.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(!r.enabled);
        assert_eq!(
            d.warnings.len(),
            1,
            "the deprecated append: {:?}",
            d.warnings
        );
    }

    #[test]
    fn redefinition_replaces_in_place() {
        let (c, d) = collect(&[
            BASE,
            "- rule: R\n  desc: new\n  condition: proc.name = x\n  output: o\n  priority: info\n",
        ]);
        assert!(d.errors.is_empty());
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].desc, "new");
        assert_eq!(c.rules[0].priority, Priority::Informational);
    }

    #[test]
    fn errors_name_item_and_position() {
        let (_, d) = collect(&["- rule: X\n  condition: a\n  output: o\n  priority: LOUD\n"]);
        let e = d.errors[0].to_string();
        assert!(
            e.starts_with("f0.yaml:4:13: rule \"X\": unknown priority"),
            "{e}"
        );
        let (_, d) = collect(&["- rule: X\n  condition: a\n  override: {condition: append}\n"]);
        assert!(
            d.errors[0].to_string().contains("not defined before it"),
            "{:?}",
            d.errors
        );
        let (_, d) = collect(&[
            BASE,
            "- rule: R\n  condition: x\n  output: y\n  override: {condition: replace}\n",
        ]);
        assert!(
            d.errors[0].to_string().contains("'output' is set but"),
            "{:?}",
            d.errors
        );
        let (_, d) = collect(&["- rule: Y\n  enabled: true\n"]);
        assert!(d.errors[0].to_string().contains("no rule by that name"));
        let (_, d) = collect(&["- list: l\n  items: [{a: b}]\n"]);
        assert!(d.errors[0].to_string().contains("must be strings"));
    }

    #[test]
    fn exceptions_append_values() {
        let (c, d) = collect(&[
            "- rule: R\n  condition: proc.name=x\n  output: o\n  priority: debug\n  exceptions:\n    - name: e\n      fields: [proc.pname]\n      values: [[a]]\n",
            "- rule: R\n  exceptions:\n    - name: e\n      values: [[b]]\n  override: {exceptions: append}\n",
        ]);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(c.rules[0].exceptions[0].values.len(), 2);
    }

    #[test]
    fn engine_versions() {
        let (_, d) =
            collect(&["- required_engine_version: 0.57.0\n- required_engine_version: 13\n"]);
        assert!(d.errors.is_empty() && d.warnings.is_empty(), "{d:?}");
        let (_, d) = collect(&["- required_engine_version: 9.0.0\n"]);
        assert_eq!(d.warnings.len(), 1);
        let (_, d) = collect(&["- required_engine_version: banana\n"]);
        assert_eq!(d.errors.len(), 1);
        let (_, d) = collect(&[
            "- required_plugin_versions:\n    - name: container\n      version: 0.4.0\n",
        ]);
        assert!(d.errors.is_empty() && d.warnings.is_empty());
        assert!(d.notes[0].message.contains("container"));
    }
}
