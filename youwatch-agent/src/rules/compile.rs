//! Condition syntax tree → evaluable [`Node`]: resolves macros (with cycle detection) and
//! lists, resolves fields, type-checks values, precompiles matchers, and folds what is the
//! same for every exec event (`evt.type`...). What exec events do not carry becomes
//! [`Node::Unknown`], so the caller can disable the rule and say why.

use std::collections::{BTreeSet, HashMap};

use super::{
    condition::ast::{CmpOp, Compare, Expr, Ident, Modifier, Operand, Rhs, TransformArg, Value},
    fields::{self, Field, Resolved, Ty},
    matcher::StrMatch,
    program::{
        Access, Check, Missing, MissingKind, Node, Test, Transformer, field_comparison_supported,
    },
    source::{Pos, SourceText},
};

/// A rule expanding to more checks than this is refused (macros can nest exponentially).
pub const MAX_NODES: usize = 100_000;
/// Macros nested deeper than this are refused.
pub const MAX_MACRO_DEPTH: usize = 64;

/// Lists and macros visible to conditions.
#[derive(Default)]
pub struct Symbols {
    /// List name → items, already expanded and unquoted.
    pub lists: HashMap<String, Vec<String>>,
    pub macros: HashMap<String, ParsedMacro>,
}

/// A macro's parsed condition and its text (for positions).
pub struct ParsedMacro {
    pub ast: Expr,
    pub text: SourceText,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct CompileError {
    pub pos: Pos,
    pub message: String,
}

/// A compiled condition.
#[derive(Debug)]
pub struct Compiled {
    pub node: Node,
    /// `evt.type` values the condition tests for (other than execve), to explain a rule
    /// that can never match an exec event.
    pub event_types: BTreeSet<String>,
}

/// A compiled field reference: readable, or something exec events do not carry.
pub enum OperandIr {
    Access(Access),
    Unknown(Missing),
}

/// Compiles a condition (and anything it references).
pub fn condition(
    symbols: &Symbols,
    ast: &Expr,
    text: &SourceText,
) -> Result<Compiled, CompileError> {
    let mut c = Compiler::new(symbols);
    let node = c.expr(ast, text)?;
    Ok(Compiled {
        node,
        event_types: c.event_types,
    })
}

/// Compiles a field or transformer on its own (output placeholders).
pub fn operand(op: &Operand, text: &SourceText) -> Result<OperandIr, CompileError> {
    let symbols = Symbols::default();
    Compiler::new(&symbols).operand(op, text)
}

struct Compiler<'s> {
    symbols: &'s Symbols,
    /// Macros being expanded, outermost first.
    stack: Vec<String>,
    nodes: usize,
    event_types: BTreeSet<String>,
}

fn error(text: &SourceText, at: usize, message: impl Into<String>) -> CompileError {
    CompileError {
        pos: text.pos(at),
        message: message.into(),
    }
}

impl<'s> Compiler<'s> {
    fn new(symbols: &'s Symbols) -> Self {
        Self {
            symbols,
            stack: Vec::new(),
            nodes: 0,
            event_types: BTreeSet::new(),
        }
    }

    fn expr(&mut self, e: &Expr, text: &SourceText) -> Result<Node, CompileError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(CompileError {
                pos: text.start(),
                message: format!(
                    "the condition expands to more than {MAX_NODES} checks; are macros nested too deeply?"
                ),
            });
        }
        Ok(match e {
            Expr::And(children) => Node::and(self.all(children, text)?),
            Expr::Or(children) => Node::or(self.all(children, text)?),
            Expr::Not(child) => Node::negate(self.expr(child, text)?),
            Expr::Macro(ident) => self.macro_ref(ident, text)?,
            Expr::Exists(op) => match self.operand(op, text)? {
                OperandIr::Unknown(m) => Node::Unknown(Box::new([m])),
                OperandIr::Access(a) if a.constant().is_some() => Node::Const(true),
                OperandIr::Access(lhs) => Node::Test(Box::new(Test {
                    lhs,
                    check: Check::Exists,
                })),
            },
            Expr::Compare(c) => self.compare(c, text)?,
        })
    }

    fn all(&mut self, children: &[Expr], text: &SourceText) -> Result<Vec<Node>, CompileError> {
        children.iter().map(|c| self.expr(c, text)).collect()
    }

    fn macro_ref(&mut self, ident: &Ident, text: &SourceText) -> Result<Node, CompileError> {
        let symbols = self.symbols;
        let Some(m) = symbols.macros.get(&ident.name) else {
            let hint = if symbols.lists.contains_key(&ident.name) {
                format!(
                    "'{}' is a list, not a macro: use it on the right of in, e.g. proc.name in ({})",
                    ident.name, ident.name
                )
            } else {
                format!("undefined macro '{}'", ident.name)
            };
            return Err(error(text, ident.at, hint));
        };
        if let Some(i) = self.stack.iter().position(|n| n == &ident.name) {
            let mut cycle: Vec<&str> = self.stack[i..].iter().map(String::as_str).collect();
            cycle.push(&ident.name);
            return Err(error(
                text,
                ident.at,
                format!("macro cycle: {}", cycle.join(" -> ")),
            ));
        }
        if self.stack.len() >= MAX_MACRO_DEPTH {
            return Err(error(
                text,
                ident.at,
                format!("macros nested deeper than {MAX_MACRO_DEPTH} levels"),
            ));
        }
        self.stack.push(ident.name.clone());
        let node = self.expr(&m.ast, &m.text);
        self.stack.pop();
        node
    }

    fn compare(&mut self, c: &Compare, text: &SourceText) -> Result<Node, CompileError> {
        let lhs = match self.operand(&c.lhs, text)? {
            OperandIr::Access(a) => a,
            OperandIr::Unknown(m) => return Ok(Node::Unknown(Box::new([m]))),
        };
        let check = match self.check(&lhs, c, text)? {
            Ok(check) => check,
            Err(missing) => return Ok(Node::Unknown(Box::new([missing]))),
        };
        if lhs.spec.field == Field::EvtType && lhs.transforms.is_empty() {
            self.note_event_types(c);
        }
        if let Some(v) = lhs.constant()
            && let Some(b) = check.holds_without_event(&v)
        {
            return Ok(Node::Const(b));
        }
        Ok(Node::Test(Box::new(Test { lhs, check })))
    }

    fn note_event_types(&mut self, c: &Compare) {
        if !matches!(c.op, CmpOp::Eq | CmpOp::In | CmpOp::Intersects) {
            return;
        }
        let values = match &c.rhs {
            Rhs::Value(v) => vec![v.text.clone()],
            Rhs::List(items) => self.expand(items),
            Rhs::ListRef(id) => self.list_or_single(id),
            Rhs::Operand(_) => Vec::new(),
        };
        self.event_types.extend(
            values
                .into_iter()
                .filter(|t| t != "execve" && t != "execveat"),
        );
    }

    /// The check for `lhs op rhs`; `Ok(Err(missing))` when the right side is a field exec
    /// events do not carry.
    fn check(
        &mut self,
        lhs: &Access,
        c: &Compare,
        text: &SourceText,
    ) -> Result<Result<Check, Missing>, CompileError> {
        let ty = lhs.ty();
        let at = c.at;
        let field = field_text(&c.lhs);
        let check = match &c.rhs {
            Rhs::Operand(op) => {
                if !field_comparison_supported(c.op) {
                    return Err(error(
                        text,
                        op.at(),
                        format!("'{}' cannot compare {field} with another field", c.op),
                    ));
                }
                let rhs = match self.operand(op, text)? {
                    OperandIr::Access(a) => a,
                    OperandIr::Unknown(m) => return Ok(Err(m)),
                };
                if rhs.ty() != ty || rhs.spec.is_multi() {
                    return Err(error(
                        text,
                        op.at(),
                        format!(
                            "{field} and {} cannot be compared: different types",
                            field_text(op)
                        ),
                    ));
                }
                Check::Field { op: c.op, rhs }
            }
            Rhs::Value(v) => self.single(ty, c.op, v, &field, text)?,
            Rhs::List(_) | Rhs::ListRef(_) => {
                let values = match &c.rhs {
                    Rhs::List(items) => self.expand(items),
                    Rhs::ListRef(id) => self.list_or_single(id),
                    _ => Vec::new(),
                };
                match c.modifier {
                    Some(modifier) => {
                        self.with_modifier(ty, c.op, modifier, values, &field, text, at)?
                    }
                    None => self.list(ty, c.op, values, &field, text, at)?,
                }
            }
        };
        Ok(Ok(check))
    }

    fn single(
        &self,
        ty: Ty,
        op: CmpOp,
        v: &Value,
        field: &str,
        text: &SourceText,
    ) -> Result<Check, CompileError> {
        match ty {
            Ty::Str => StrMatch::single(op, &v.text)
                .map(Check::Str)
                .map_err(|m| error(text, v.at, format!("{field}: {m}"))),
            Ty::Num => {
                if !op.is_numeric() {
                    return Err(error(
                        text,
                        v.at,
                        format!(
                            "'{op}' does not apply to {field}, a number (use = != < <= > >= in)"
                        ),
                    ));
                };
                Ok(Check::Num(
                    op,
                    parse_int(&v.text).ok_or_else(|| {
                        error(
                            text,
                            v.at,
                            format!("{field} is a number; {:?} is not", v.text),
                        )
                    })?,
                ))
            }
            Ty::Bool => {
                let equal = match op {
                    CmpOp::Eq => true,
                    CmpOp::Ne => false,
                    _ => {
                        return Err(error(
                            text,
                            v.at,
                            format!("'{op}' does not apply to {field}, a boolean (use = or !=)"),
                        ));
                    }
                };
                let value = match v.text.as_str() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(error(
                            text,
                            v.at,
                            format!("{field} is a boolean; {other:?} is neither true nor false"),
                        ));
                    }
                };
                Ok(Check::Bool { equal, value })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn with_modifier(
        &self,
        ty: Ty,
        op: CmpOp,
        modifier: Modifier,
        values: Vec<String>,
        field: &str,
        text: &SourceText,
        at: usize,
    ) -> Result<Check, CompileError> {
        if ty != Ty::Str
            || op.takes_list()
            || matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)
        {
            return Err(error(
                text,
                at,
                format!(
                    "oneof/anyof/allof apply to string operators on strings, not '{op}' on {field}"
                ),
            ));
        }
        let matchers = values
            .iter()
            .map(|v| StrMatch::single(op, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| error(text, at, format!("{field}: {m}")))?;
        Ok(match modifier {
            Modifier::Any => Check::AnyStr(matchers.into()),
            Modifier::All => Check::AllStr(matchers.into()),
        })
    }

    fn list(
        &self,
        ty: Ty,
        op: CmpOp,
        values: Vec<String>,
        field: &str,
        text: &SourceText,
        at: usize,
    ) -> Result<Check, CompileError> {
        match (ty, op) {
            (Ty::Str, _) => StrMatch::list(op, values)
                .map(Check::Str)
                .map_err(|m| error(text, at, format!("{field}: {m}"))),
            (Ty::Num, CmpOp::In | CmpOp::Intersects) => {
                let nums = values
                    .iter()
                    .map(|v| {
                        parse_int(v).ok_or_else(|| {
                            error(
                                text,
                                at,
                                format!("{field} is a number; list item {v:?} is not"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Check::NumIn(nums.into()))
            }
            _ => Err(error(
                text,
                at,
                format!("'{op}' does not apply to {field} (a {})", ty_name(ty)),
            )),
        }
    }

    /// List items with bare names of lists replaced by their items.
    fn expand(&self, items: &[Value]) -> Vec<String> {
        let mut out = Vec::with_capacity(items.len());
        for v in items {
            match self.symbols.lists.get(&v.text) {
                Some(list) if !v.quoted => out.extend(list.iter().cloned()),
                _ => out.push(v.text.clone()),
            }
        }
        out
    }

    /// `in name`: the list, or (as Falco reads it when no list has that name) one value.
    fn list_or_single(&self, id: &Ident) -> Vec<String> {
        self.symbols
            .lists
            .get(&id.name)
            .cloned()
            .unwrap_or_else(|| vec![id.name.clone()])
    }

    fn operand(&mut self, op: &Operand, text: &SourceText) -> Result<OperandIr, CompileError> {
        match op {
            Operand::Field(f) => {
                let missing = |why| {
                    OperandIr::Unknown(Missing {
                        what: f.to_string(),
                        why,
                        pos: text.pos(f.at),
                    })
                };
                match fields::resolve(&f.name, f.arg.as_deref()) {
                    Ok(Resolved::Field(spec)) => Ok(OperandIr::Access(Access::plain(spec))),
                    Ok(Resolved::NotProduced) => Ok(missing(MissingKind::NotProduced)),
                    Ok(Resolved::Unknown) => Ok(missing(MissingKind::UnknownField)),
                    Err(e) => Err(error(text, f.at, e.0)),
                }
            }
            Operand::Transform(t) => {
                let unsupported = || {
                    OperandIr::Unknown(Missing {
                        what: format!("{}()", t.name),
                        why: MissingKind::Transformer,
                        pos: text.pos(t.at),
                    })
                };
                let transformer = match t.name.as_str() {
                    "tolower" => Transformer::ToLower,
                    "toupper" => Transformer::ToUpper,
                    "basename" => Transformer::Basename,
                    "len" => Transformer::Len,
                    _ => return Ok(unsupported()),
                };
                let [TransformArg::Operand(inner)] = t.args.as_slice() else {
                    return Ok(unsupported());
                };
                let mut access = match self.operand(inner, text)? {
                    OperandIr::Access(a) => a,
                    unknown => return Ok(unknown),
                };
                if access.spec.is_multi() {
                    return Ok(unsupported());
                }
                if access.ty() != Ty::Str {
                    return Err(error(
                        text,
                        t.at,
                        format!(
                            "{}() applies to strings; {} is a {}",
                            t.name,
                            field_text(inner),
                            ty_name(access.ty())
                        ),
                    ));
                }
                let mut transforms = access.transforms.into_vec();
                transforms.push(transformer);
                access.transforms = transforms.into();
                Ok(OperandIr::Access(access))
            }
        }
    }
}

/// An operand as written, for messages.
fn field_text(op: &Operand) -> String {
    match op {
        Operand::Field(f) => f.to_string(),
        Operand::Transform(t) => format!("{}(...)", t.name),
    }
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Str => "string",
        Ty::Num => "number",
        Ty::Bool => "boolean",
    }
}

/// Decimal or `0x` hexadecimal integers, as Falco writes them.
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok();
    }
    s.strip_prefix('+').unwrap_or(s).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{condition, source::Scalar};

    fn text(s: &str) -> SourceText {
        SourceText::new(Scalar {
            value: s.into(),
            pos: Pos::unknown("test"),
            origin: None,
        })
    }

    fn symbols(macros: &[(&str, &str)], lists: &[(&str, &[&str])]) -> Symbols {
        let mut s = Symbols::default();
        for (name, cond) in macros {
            s.macros.insert(
                (*name).into(),
                ParsedMacro {
                    ast: condition::parse(cond).unwrap(),
                    text: text(cond),
                },
            );
        }
        for (name, items) in lists {
            s.lists.insert(
                (*name).into(),
                items.iter().map(|i| (*i).to_owned()).collect(),
            );
        }
        s
    }

    fn compile(s: &Symbols, cond: &str) -> Result<Compiled, CompileError> {
        let t = text(cond);
        condition(s, &condition::parse(cond).unwrap(), &t)
    }

    #[test]
    fn event_type_tests_fold() {
        let s = symbols(
            &[("spawned_process", "evt.type in (execve, execveat)")],
            &[],
        );
        let c = compile(&s, "spawned_process and proc.name = bash").unwrap();
        assert!(matches!(c.node, Node::Test(_)), "{:?}", c.node);
        let c = compile(&s, "evt.type in (open, openat) and fd.name = /etc/shadow").unwrap();
        assert!(matches!(c.node, Node::Const(false)));
        assert_eq!(
            c.event_types.into_iter().collect::<Vec<_>>(),
            ["open", "openat"]
        );
    }

    #[test]
    fn unknown_fields_are_kept_for_the_report() {
        let s = Symbols::default();
        let c = compile(&s, "proc.name = bash and not proc.sname = bash").unwrap();
        let missing = c.node.missing();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].what, "proc.sname");
        assert_eq!(missing[0].why, MissingKind::NotProduced);
        // An unknown in a branch that folds away does not matter.
        let c = compile(&s, "evt.type = execve or fd.name = x").unwrap();
        assert!(matches!(c.node, Node::Const(true)));
        let c = compile(&s, "proc.nmae = bash").unwrap();
        assert_eq!(c.node.missing()[0].why, MissingKind::UnknownField);
    }

    #[test]
    fn lists_expand_in_values_but_not_when_quoted() {
        let s = symbols(&[], &[("shells", &["sh", "bash"])]);
        let c = compile(&s, "proc.name in (shells, zsh)").unwrap();
        let Node::Test(t) = &c.node else { panic!() };
        let Check::Str(StrMatch::In(set)) = &t.check else {
            panic!()
        };
        assert!(set.contains("bash") && set.contains("zsh"));
        let c = compile(&s, "proc.name in (\"shells\")").unwrap();
        let Node::Test(t) = &c.node else { panic!() };
        let Check::Str(StrMatch::In(set)) = &t.check else {
            panic!()
        };
        assert!(set.contains("shells") && !set.contains("sh"));
        assert!(compile(&s, "proc.name in shells").is_ok());
    }

    #[test]
    fn macro_errors() {
        let s = symbols(
            &[("a", "b"), ("b", "c and a"), ("c", "proc.name = x")],
            &[("l", &[])],
        );
        let e = compile(&s, "a").unwrap_err();
        assert!(e.message.contains("macro cycle: a -> b -> a"), "{e}");
        let e = compile(&s, "nope").unwrap_err();
        assert!(e.message.contains("undefined macro 'nope'"));
        let e = compile(&s, "l").unwrap_err();
        assert!(e.message.contains("is a list"));
    }

    #[test]
    fn exponential_macros_hit_the_budget() {
        let mut macros = vec![("m0".to_owned(), "proc.name = x".to_owned())];
        for i in 1..40 {
            macros.push((format!("m{i}"), format!("m{} and m{}", i - 1, i - 1)));
        }
        let pairs: Vec<(&str, &str)> = macros
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let s = symbols(&pairs, &[]);
        let e = compile(&s, "m39").unwrap_err();
        assert!(e.message.contains("checks"), "{e}");
    }

    #[test]
    fn type_errors_name_the_field() {
        let s = Symbols::default();
        let e = compile(&s, "proc.tty = abc").unwrap_err();
        assert!(e.message.contains("proc.tty is a number"), "{e}");
        let e = compile(&s, "proc.pid contains 1").unwrap_err();
        assert!(e.message.contains("does not apply to proc.pid"), "{e}");
        let e = compile(&s, "proc.name regex \"(\"").unwrap_err();
        assert!(e.message.contains("invalid regex"), "{e}");
        assert!(compile(&s, "len(proc.args) > 3").is_ok());
        assert!(compile(&s, "tolower(proc.pid) = 1").is_err());
        assert!(compile(&s, "proc.name = val(proc.pname)").is_ok());
        let c = compile(&s, "concat(proc.name, proc.pname) = x").unwrap();
        assert_eq!(c.node.missing()[0].why, MissingKind::Transformer);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int("0x10"), Some(16));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("+3"), Some(3));
        assert_eq!(parse_int("1.5"), None);
    }
}
