//! Reads one rules-file item (a YAML mapping) into what it asks for: define a list, macro or
//! rule, append to or replace parts of one, switch one on or off. Checks the item's shape and
//! value types; knows nothing of what was defined before (that is `collector`'s job), as
//! Falco's `rule_loader::reader` is kept apart from its `collector`.

use std::collections::BTreeSet;

use super::{
    collector::{ExceptionDef, ListDef, MacroDef, RuleDef},
    diagnostics::{Diagnostics, LoadError, rule_what},
    document::{Kind, Node},
    requirements,
    source::{Pos, Scalar, SourceText},
};
use crate::detection::Priority;

/// What one item asks for.
#[derive(Debug)]
pub enum Item {
    DefineList(ListDef),
    AppendList(ListDef),
    DefineMacro(MacroDef),
    AppendMacro(MacroDef),
    DefineRule(RuleDef),
    /// `append: true` (legacy) or `override: {key: append}`.
    AppendRule(RuleUpdate),
    /// `override: {key: replace}`.
    ReplaceRule(RuleUpdate),
    /// `- rule: X` with only `enabled`.
    EnableRule {
        name: String,
        enabled: bool,
        pos: Pos,
    },
}

/// Parts of an existing rule to append to or replace; `None` leaves a part alone.
#[derive(Debug)]
pub struct RuleUpdate {
    pub name: String,
    pub pos: Pos,
    /// Empty when not given (an empty `source` matches any).
    pub source: String,
    pub condition: Option<Scalar>,
    pub output: Option<Scalar>,
    pub desc: Option<String>,
    pub tags: Option<BTreeSet<String>>,
    pub exceptions: Option<Vec<ExceptionDef>>,
    pub priority: Option<Priority>,
    pub enabled: Option<bool>,
}

impl RuleUpdate {
    fn new(name: &str, pos: &Pos, source: &str) -> Self {
        RuleUpdate {
            name: name.to_owned(),
            pos: pos.clone(),
            source: source.to_owned(),
            condition: None,
            output: None,
            desc: None,
            tags: None,
            exceptions: None,
            priority: None,
            enabled: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.condition.is_none()
            && self.output.is_none()
            && self.desc.is_none()
            && self.tags.is_none()
            && self.exceptions.is_none()
            && self.priority.is_none()
            && self.enabled.is_none()
    }
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

/// Reads one top-level item. Problems that make the item unusable are errors; others
/// (unknown keys, deprecated forms) are warnings.
pub fn read(node: &Node, diag: &mut Diagnostics) -> Result<Vec<Item>, LoadError> {
    if !matches!(node.kind, Kind::Map(_)) {
        return Err(LoadError::invalid(
            &node.pos,
            "item",
            format!(
                "expected a mapping (- rule:, - macro:, - list:), found {}",
                node.kind_name()
            ),
        ));
    }
    if let Some(v) = node.get("required_engine_version") {
        requirements::engine_version(v, diag)?;
        Ok(Vec::new())
    } else if let Some(v) = node.get("required_plugin_versions") {
        requirements::plugin_versions(v, diag)?;
        Ok(Vec::new())
    } else if node.get("list").is_some() {
        list(node, diag).map(|i| vec![i])
    } else if node.get("macro").is_some() {
        macro_item(node, diag).map(|i| vec![i])
    } else if node.get("rule").is_some() {
        rule(node, diag)
    } else {
        diag.warn(
            &node.pos,
            "item",
            "not a rule, macro, list, required_engine_version or required_plugin_versions: ignored",
        );
        Ok(Vec::new())
    }
}

fn list(node: &Node, diag: &mut Diagnostics) -> Result<Item, LoadError> {
    let name = name_of(node, "list")?;
    let what = format!("list {name}");
    warn_unknown_keys(node, &["list", "items", "append", "override"], &what, diag);
    let items_node = node
        .get("items")
        .ok_or_else(|| LoadError::invalid(&node.pos, &what, "has no items"))?;
    let def = ListDef {
        name,
        items: scalar_list(items_node, &what, "items")?,
        pos: node.pos.clone(),
    };
    Ok(if appends(node, &what, "items", diag)? {
        Item::AppendList(def)
    } else {
        Item::DefineList(def)
    })
}

fn macro_item(node: &Node, diag: &mut Diagnostics) -> Result<Item, LoadError> {
    let name = name_of(node, "macro")?;
    let what = format!("macro {name}");
    warn_unknown_keys(
        node,
        &["macro", "condition", "append", "override"],
        &what,
        diag,
    );
    let def = MacroDef {
        name,
        condition: SourceText::new(required_scalar(node, "condition", &what)?),
        pos: node.pos.clone(),
    };
    Ok(if appends(node, &what, "condition", diag)? {
        Item::AppendMacro(def)
    } else {
        Item::DefineMacro(def)
    })
}

fn rule(node: &Node, diag: &mut Diagnostics) -> Result<Vec<Item>, LoadError> {
    let name = name_of(node, "rule")?;
    let what = rule_what(&name);
    warn_unknown_keys(node, RULE_KEYS, &what, diag);
    // An empty `source` (null or "") on an update means "whatever the rule has".
    let source = match node.get("source") {
        Some(v) if !matches!(v.kind, Kind::Null) => scalar(v, &what, "source")?.value,
        _ => String::new(),
    };
    let legacy_append = legacy_append(node, &what, diag)?;
    let overrides = Overrides::read(node, &what, RULE_APPENDABLE, RULE_REPLACEABLE)?;
    if legacy_append && !overrides.is_empty() {
        return Err(conflict(&node.pos, &what));
    }
    if !overrides.is_empty() {
        return overridden(node, &name, &what, &source, &overrides);
    }
    if legacy_append {
        // Only the condition and exceptions are appended (`enabled` and the rest are
        // ignored, as in Falco).
        let mut update = RuleUpdate::new(&name, &node.pos, &source);
        update.condition = optional_scalar(node, "condition", &what)?;
        if node.get("exceptions").is_some() {
            update.exceptions = Some(exceptions(node, &what, true, diag)?);
        }
        return Ok(vec![Item::AppendRule(update)]);
    }
    let defines = ["condition", "output", "desc", "priority"]
        .iter()
        .any(|k| node.get(k).is_some());
    if !defines {
        let enabled = optional_bool(node, "enabled", &what)?.ok_or_else(|| {
            LoadError::invalid(
                &node.pos,
                &what,
                "has none of condition, output, priority, desc or enabled",
            )
        })?;
        return Ok(vec![Item::EnableRule {
            name,
            enabled,
            pos: node.pos.clone(),
        }]);
    }
    if node.get("source").is_some() && source.is_empty() {
        return Err(LoadError::invalid(
            &node.pos,
            &what,
            "'source' must not be empty when the rule is defined",
        ));
    }
    check_capture(node, &what)?;
    let output = non_empty_scalar(node, "output", &what)?;
    let def = RuleDef {
        name: name.clone(),
        desc: non_empty_scalar(node, "desc", &what)?.value,
        condition: SourceText::new(non_empty_scalar(node, "condition", &what)?),
        output: SourceText::new(Scalar {
            value: output.value.trim().to_owned(),
            ..output
        }),
        priority: priority(node, &what)?,
        tags: tags(node, &what)?.unwrap_or_default(),
        enabled: optional_bool(node, "enabled", &what)?.unwrap_or(true),
        source: if source.is_empty() {
            "syscall".to_owned()
        } else {
            source
        },
        exceptions: exceptions(node, &what, false, diag)?,
        pos: node.pos.clone(),
    };
    Ok(vec![Item::DefineRule(def)])
}

/// A rule item with `override`: an append update, a replace update, or both (in that order).
fn overridden(
    node: &Node,
    name: &str,
    what: &str,
    source: &str,
    overrides: &Overrides,
) -> Result<Vec<Item>, LoadError> {
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
    check_capture(node, what)?;
    let mut scratch = Diagnostics::default();
    let mut items = Vec::new();
    for (keys, appending) in [(&overrides.append, true), (&overrides.replace, false)] {
        if keys.is_empty() {
            continue;
        }
        let has = |key: &str| keys.contains(key);
        let mut update = RuleUpdate::new(name, &node.pos, source);
        if has("condition") {
            update.condition = Some(non_empty_scalar(node, "condition", what)?);
        }
        if has("output") {
            update.output = Some(non_empty_scalar(node, "output", what)?);
        }
        if has("desc") {
            update.desc = Some(non_empty_scalar(node, "desc", what)?.value);
        }
        if has("tags") {
            update.tags = tags(node, what)?;
        }
        if has("exceptions") {
            update.exceptions = Some(exceptions(node, what, appending, &mut scratch)?);
        }
        if has("priority") {
            update.priority = Some(priority(node, what)?);
        }
        if has("enabled") {
            update.enabled = optional_bool(node, "enabled", what)?;
        }
        items.push(if appending {
            Item::AppendRule(update)
        } else {
            Item::ReplaceRule(update)
        });
    }
    Ok(items)
}

/// `capture` is a boolean and `capture_duration` a number of milliseconds (the agent does
/// not capture, but a file Falco refuses is refused here too).
fn check_capture(node: &Node, what: &str) -> Result<(), LoadError> {
    optional_bool(node, "capture", what)?;
    optional_bool(node, "warn_evttypes", what)?;
    optional_bool(node, "skip-if-unknown-filter", what)?;
    if let Some(v) = node.get("capture_duration") {
        let ok = v.as_text().is_some_and(|t| t.trim().parse::<u32>().is_ok());
        if !ok {
            return Err(LoadError::invalid(
                &v.pos,
                what,
                format!(
                    "'capture_duration' must be a number of milliseconds, found {}",
                    v.as_text()
                        .map_or_else(|| v.kind_name().to_owned(), |t| format!("{t:?}"))
                ),
            ));
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

fn scalar(v: &Node, what: &str, key: &str) -> Result<Scalar, LoadError> {
    match v.kind {
        Kind::Str(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => v
            .as_scalar()
            .ok_or_else(|| LoadError::invalid(&v.pos, what, "not a scalar")),
        _ => Err(LoadError::invalid(
            &v.pos,
            what,
            format!("'{key}' must be a string, found {}", v.kind_name()),
        )),
    }
}

fn required_scalar(node: &Node, key: &str, what: &str) -> Result<Scalar, LoadError> {
    optional_scalar(node, key, what)?
        .ok_or_else(|| LoadError::invalid(&node.pos, what, format!("has no '{key}'")))
}

/// A required string that must not be empty (Falco: "Value must be non-empty").
fn non_empty_scalar(node: &Node, key: &str, what: &str) -> Result<Scalar, LoadError> {
    let s = required_scalar(node, key, what)?;
    if s.value.trim().is_empty() {
        return Err(LoadError::invalid(
            &s.pos,
            what,
            format!("'{key}' must not be empty"),
        ));
    }
    Ok(s)
}

fn optional_scalar(node: &Node, key: &str, what: &str) -> Result<Option<Scalar>, LoadError> {
    node.get(key).map(|v| scalar(v, what, key)).transpose()
}

/// A boolean as yaml-cpp (Falco's YAML library) decodes one: true/false, yes/no, on/off,
/// y/n, in any of their usual spellings, quoted or not.
fn optional_bool(node: &Node, key: &str, what: &str) -> Result<Option<bool>, LoadError> {
    let Some(v) = node.get(key) else {
        return Ok(None);
    };
    let parsed = match &v.kind {
        Kind::Bool(b) => Some(*b),
        Kind::Str(s) => match s.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
                Some(true)
            }
            "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off"
            | "OFF" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| {
        LoadError::invalid(
            &v.pos,
            what,
            format!("'{key}' must be true or false, found {}", v.kind_name()),
        )
    })
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
    let p = non_empty_scalar(node, "priority", what)?;
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
        let name = non_empty_scalar(item, "name", what)?.value;
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
            None | Some(Kind::Null) => {
                if appending {
                    diag.warn(
                        &item.pos,
                        what,
                        format!("exception {name:?} is appended to without values"),
                    );
                }
                Vec::new()
            }
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
                        "'{key}' cannot be overridden with {how} (override allows {how} for {})",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{document, source::SourceFile};

    fn read_all(text: &str) -> (Vec<Item>, Diagnostics) {
        let f = SourceFile::new("f.yaml", text.to_owned());
        let mut d = Diagnostics::default();
        let mut items = Vec::new();
        for node in document::parse(&f).unwrap() {
            match read(&node, &mut d) {
                Ok(i) => items.extend(i),
                Err(e) => d.error(e),
            }
        }
        (items, d)
    }

    #[test]
    fn overrides_become_updates() {
        let (items, d) = read_all(
            "- rule: R\n  condition: and x\n  priority: ERROR\n  override: {condition: append, priority: replace}\n",
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert!(
            matches!(&items[0], Item::AppendRule(u) if u.condition.is_some() && u.priority.is_none())
        );
        assert!(matches!(&items[1], Item::ReplaceRule(u) if u.priority == Some(Priority::Error)));
    }

    #[test]
    fn shape_errors_name_item_and_position() {
        let (_, d) =
            read_all("- rule: X\n  desc: d\n  condition: a\n  output: o\n  priority: LOUD\n");
        let e = d.errors[0].to_string();
        assert!(
            e.starts_with("f.yaml:5:13: rule \"X\": unknown priority"),
            "{e}"
        );
        let (_, d) =
            read_all("- rule: R\n  condition: x\n  output: y\n  override: {condition: replace}\n");
        assert!(
            d.errors[0].to_string().contains("'output' is set but"),
            "{:?}",
            d.errors
        );
        let (_, d) = read_all("- list: l\n  items: [{a: b}]\n");
        assert!(d.errors[0].to_string().contains("must be strings"));
        let (_, d) = read_all(
            "- rule: X\n  desc: d\n  condition: a\n  output: o\n  priority: INFO\n  capture_duration: soon\n",
        );
        assert!(
            d.errors[0]
                .to_string()
                .contains("'capture_duration' must be a number")
        );
        let (_, d) = read_all("- rule: X\n  condition: a\n  output: o\n  priority: INFO\n");
        assert!(
            d.errors[0].to_string().contains("has no 'desc'"),
            "{:?}",
            d.errors
        );
    }

    #[test]
    fn lenient_booleans_and_empty_sources() {
        let (items, d) = read_all(
            "- rule: X\n  desc: d\n  condition: a\n  output: o\n  priority: INFO\n  capture: \"yes\"\n  enabled: 'off'\n- rule: X\n  condition: and b\n  source: \"\"\n  append: true\n",
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert!(matches!(&items[0], Item::DefineRule(r) if !r.enabled));
        assert!(matches!(&items[1], Item::AppendRule(u) if u.source.is_empty()));
    }
}
