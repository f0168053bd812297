//! Collects the items of the rule files, in load order, with Falco's semantics
//! (`rule_loader::collector`): a later definition of a name replaces the earlier one in
//! place; an append or replace changes parts of an earlier definition and must follow it; a
//! rule item with only `enabled` switches an earlier rule on or off.
//!
//! Every definition, append and replace takes the next index of one counter shared by
//! lists, macros and rules. A list or macro keeps the index of its first definition and
//! sees (its "visibility") the lists and macros whose index is lower than that of its latest
//! definition or append: a macro cannot use one defined after it.

use std::collections::{BTreeSet, HashMap};

use super::{
    diagnostics::{LoadError, rule_what},
    document::Node,
    reader::{Item, RuleUpdate},
    source::{Pos, SourceText},
};
use crate::detection::Priority;

#[derive(Clone, Debug)]
pub struct ListDef {
    pub name: String,
    /// Items as written (possibly quoted, possibly names of earlier lists).
    pub items: Vec<String>,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub struct MacroDef {
    pub name: String,
    pub condition: SourceText,
    pub pos: Pos,
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

/// An exception as written; `rules::exceptions` turns it into condition text.
#[derive(Clone, Debug)]
pub struct ExceptionDef {
    pub name: String,
    pub fields: Option<Node>,
    pub comps: Option<Node>,
    pub values: Vec<Node>,
    pub pos: Pos,
}

/// A collected list or macro with where it stands in load order.
#[derive(Clone, Debug)]
pub struct Indexed<T> {
    pub def: T,
    /// Index of its first definition.
    pub index: u32,
    /// It may use lists and macros whose index is lower than this.
    pub visibility: u32,
}

/// Everything the files define, in definition order.
#[derive(Debug, Default)]
pub struct Collector {
    pub lists: Vec<Indexed<ListDef>>,
    pub macros: Vec<Indexed<MacroDef>>,
    pub rules: Vec<RuleDef>,
    list_index: HashMap<String, usize>,
    macro_index: HashMap<String, usize>,
    rule_index: HashMap<String, usize>,
    next: u32,
}

impl Collector {
    /// Applies what one item asks for.
    pub fn apply(&mut self, item: Item) -> Result<(), LoadError> {
        match item {
            Item::DefineList(def) => {
                let id = self.next_id();
                define(
                    &mut self.lists,
                    &mut self.list_index,
                    id,
                    def.name.clone(),
                    def,
                );
            }
            Item::AppendList(def) => {
                let id = self.next_id();
                let prev = earlier(
                    &mut self.lists,
                    &self.list_index,
                    &def.name,
                    &def.pos,
                    "list",
                )?;
                prev.def.items.extend(def.items);
                prev.visibility = id;
            }
            Item::DefineMacro(def) => {
                let id = self.next_id();
                define(
                    &mut self.macros,
                    &mut self.macro_index,
                    id,
                    def.name.clone(),
                    def,
                );
            }
            Item::AppendMacro(def) => {
                let id = self.next_id();
                let prev = earlier(
                    &mut self.macros,
                    &self.macro_index,
                    &def.name,
                    &def.pos,
                    "macro",
                )?;
                prev.def.condition.append_text(&def.condition);
                prev.visibility = id;
            }
            Item::DefineRule(def) => {
                self.next_id();
                self.check_source(&def.name, &def.source, &def.pos)?;
                match self.rule_index.get(&def.name) {
                    // Redefinition replaces in place: Falco's order of evaluation is kept.
                    Some(&i) => self.rules[i] = def,
                    None => {
                        self.rule_index.insert(def.name.clone(), self.rules.len());
                        self.rules.push(def);
                    }
                }
            }
            Item::AppendRule(update) => {
                self.next_id();
                self.append_rule(update)?;
            }
            Item::ReplaceRule(update) => {
                self.next_id();
                self.replace_rule(update)?;
            }
            Item::EnableRule { name, enabled, pos } => {
                let Some(&i) = self.rule_index.get(&name) else {
                    return Err(LoadError::invalid(
                        &pos,
                        &rule_what(&name),
                        "sets 'enabled' but no rule by that name is defined before it",
                    ));
                };
                self.rules[i].enabled = enabled;
            }
        }
        Ok(())
    }

    pub fn rule_named(&self, name: &str) -> Option<&RuleDef> {
        self.rule_index.get(name).map(|&i| &self.rules[i])
    }

    fn next_id(&mut self) -> u32 {
        let id = self.next;
        self.next = self.next.saturating_add(1);
        id
    }

    /// A rule keeps its source: an update or redefinition that names another one is refused
    /// (an empty source names none).
    fn check_source(&self, name: &str, source: &str, pos: &Pos) -> Result<(), LoadError> {
        match self.rule_named(name) {
            Some(prev)
                if !source.is_empty() && !prev.source.is_empty() && prev.source != source =>
            {
                Err(LoadError::invalid(
                    pos,
                    &rule_what(name),
                    format!(
                        "is already defined with source {:?}; a rule cannot change its source ({source:?})",
                        prev.source
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn prev_rule(&mut self, u: &RuleUpdate, how: &str) -> Result<&mut RuleDef, LoadError> {
        self.check_source(&u.name, &u.source, &u.pos)?;
        match self.rule_index.get(&u.name) {
            Some(&i) => Ok(&mut self.rules[i]),
            None => Err(LoadError::invalid(
                &u.pos,
                &rule_what(&u.name),
                format!("{how} a rule that is not defined before it"),
            )),
        }
    }

    fn append_rule(&mut self, u: RuleUpdate) -> Result<(), LoadError> {
        let what = rule_what(&u.name);
        if u.is_empty() {
            return Err(LoadError::invalid(
                &u.pos,
                &what,
                "appends nothing: give a condition or exceptions to append",
            ));
        }
        let prev = self.prev_rule(&u, "appends to")?;
        if let Some(c) = u.condition {
            prev.condition.append(c);
        }
        if let Some(o) = u.output {
            prev.output.append(o);
        }
        if let Some(d) = u.desc {
            prev.desc.push(' ');
            prev.desc.push_str(&d);
        }
        if let Some(t) = u.tags {
            prev.tags.extend(t);
        }
        if let Some(exceptions) = u.exceptions {
            merge_exceptions(prev, exceptions, &what)?;
        }
        Ok(())
    }

    fn replace_rule(&mut self, u: RuleUpdate) -> Result<(), LoadError> {
        let prev = self.prev_rule(&u, "replaces parts of")?;
        if let Some(c) = u.condition {
            prev.condition.replace(c);
        }
        if let Some(o) = u.output {
            prev.output.replace(o);
        }
        if let Some(d) = u.desc {
            prev.desc = d;
        }
        if let Some(t) = u.tags {
            prev.tags = t;
        }
        if let Some(e) = u.exceptions {
            prev.exceptions = e;
        }
        if let Some(p) = u.priority {
            prev.priority = p;
        }
        if let Some(e) = u.enabled {
            prev.enabled = e;
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

/// Defines `def` at `id`: a redefinition keeps its place and index, and sees up to `id`.
fn define<T>(
    items: &mut Vec<Indexed<T>>,
    index: &mut HashMap<String, usize>,
    id: u32,
    name: String,
    def: T,
) {
    match index.get(&name) {
        Some(&i) => {
            items[i].def = def;
            items[i].visibility = id;
        }
        None => {
            index.insert(name, items.len());
            items.push(Indexed {
                def,
                index: id,
                visibility: id,
            });
        }
    }
}

/// The earlier definition an append applies to.
fn earlier<'a, T>(
    items: &'a mut [Indexed<T>],
    index: &HashMap<String, usize>,
    name: &str,
    pos: &Pos,
    kind: &str,
) -> Result<&'a mut Indexed<T>, LoadError> {
    match index.get(name) {
        Some(&i) => Ok(&mut items[i]),
        None => Err(LoadError::invalid(
            pos,
            &format!("{kind} {name}"),
            "appends to something not defined before it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{diagnostics::Diagnostics, document, reader, source::SourceFile};

    fn collect(files: &[&str]) -> (Collector, Diagnostics) {
        let mut c = Collector::default();
        let mut d = Diagnostics::default();
        for (i, text) in files.iter().enumerate() {
            let f = SourceFile::new(format!("f{i}.yaml"), (*text).to_owned());
            for node in document::parse(&f).unwrap() {
                let applied = reader::read(&node, &mut d)
                    .and_then(|items| items.into_iter().try_for_each(|i| c.apply(i)));
                if let Err(e) = applied {
                    d.error(e);
                }
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
        assert_eq!(c.lists[0].def.items, ["sh", "bash", "zsh"]);
        assert_eq!(
            c.macros[0].def.condition.as_str(),
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
    fn indexes_and_visibility() {
        let (c, d) = collect(&[
            "- macro: a\n  condition: x\n- list: l\n  items: [1]\n- macro: b\n  condition: y\n- macro: a\n  condition: or z\n  append: true\n",
        ]);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let a = &c.macros[0];
        assert_eq!((a.index, a.visibility), (0, 3));
        assert_eq!((c.lists[0].index, c.macros[1].index), (1, 2));
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
    fn updates_need_an_earlier_definition_and_its_source() {
        let (_, d) = collect(&["- rule: X\n  condition: a\n  override: {condition: append}\n"]);
        assert!(
            d.errors[0].to_string().contains("not defined before it"),
            "{:?}",
            d.errors
        );
        let (_, d) = collect(&["- rule: Y\n  enabled: true\n"]);
        assert!(d.errors[0].to_string().contains("no rule by that name"));
        let (_, d) = collect(&[
            BASE,
            "- rule: R\n  condition: and a\n  source: k8s_audit\n  append: true\n",
        ]);
        assert!(d.errors[0].to_string().contains("source"), "{:?}", d.errors);
    }

    #[test]
    fn exceptions_append_values() {
        let (c, d) = collect(&[
            "- rule: R\n  desc: d\n  condition: proc.name=x\n  output: o\n  priority: debug\n  exceptions:\n    - name: e\n      fields: [proc.pname]\n      values: [[a]]\n",
            "- rule: R\n  exceptions:\n    - name: e\n      values: [[b]]\n  override: {exceptions: append}\n",
        ]);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(c.rules[0].exceptions[0].values.len(), 2);
    }
}
