//! Condition syntax tree → evaluable [`Node`]: resolves macros (each sees only the macros
//! defined before it, as in Falco; cycles are refused), resolves fields, checks operators
//! against value types as libsinsp does (`flt_is_comparable`), compiles values and
//! transformers, and folds what is the same for every exec event (`evt.type`...). What exec
//! events do not carry becomes [`Node::Unknown`], so the caller can disable the rule and say
//! why. Lists are not resolved here: they are substituted into the text before parsing.

use std::collections::{BTreeSet, HashMap};

use super::{
    condition::ast::{
        CmpOp, Compare, Expr, Ident, Operand as AstOperand, Rhs, Transform, TransformArg,
    },
    fields::{self, Field, Resolved, Ty},
    matcher::{StrMatch, StrSet},
    program::{
        Access, Check, Computed, ComputedTest, Missing, MissingKind, Node, Operand, Source, Test,
        Transformer,
    },
    source::{CondText, Pos, SourceText},
};

/// A rule expanding to more checks than this is refused (macros can nest exponentially).
pub const MAX_NODES: usize = 100_000;
/// Macros nested deeper than this are refused.
pub const MAX_MACRO_DEPTH: usize = 64;

/// Text that maps offsets back to file positions.
pub trait Located {
    fn pos(&self, offset: usize) -> Pos;
    fn start(&self) -> Pos;
}

impl Located for SourceText {
    fn pos(&self, offset: usize) -> Pos {
        SourceText::pos(self, offset)
    }
    fn start(&self) -> Pos {
        SourceText::start(self)
    }
}

impl Located for CondText {
    fn pos(&self, offset: usize) -> Pos {
        CondText::pos(self, offset)
    }
    fn start(&self) -> Pos {
        CondText::start(self)
    }
}

/// Macros visible to conditions.
#[derive(Default)]
pub struct Symbols {
    pub macros: HashMap<String, ParsedMacro>,
}

/// A macro's parsed condition, its text (for positions), and where it stands in load order:
/// inside it, only macros whose `index` is below its `visibility` may be used.
pub struct ParsedMacro {
    pub ast: Expr,
    pub text: CondText,
    pub index: u32,
    pub visibility: u32,
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

/// A compiled operand: a value of some type, or something exec events do not carry.
pub enum OperandIr {
    Value(Operand, Ty),
    Unknown(Missing),
}

/// Compiles a condition (and the macros it uses).
pub fn condition(symbols: &Symbols, ast: &Expr, text: &CondText) -> Result<Compiled, CompileError> {
    let mut c = Compiler::new(symbols);
    let node = c.expr(ast, text)?;
    Ok(Compiled {
        node,
        event_types: c.event_types,
    })
}

/// Compiles a field or transformer on its own (output placeholders).
pub fn operand(op: &AstOperand, text: &dyn Located) -> Result<OperandIr, CompileError> {
    let symbols = Symbols::default();
    Compiler::new(&symbols).operand(op, text)
}

struct Compiler<'s> {
    symbols: &'s Symbols,
    /// Macros being expanded, outermost first, with their visibility.
    stack: Vec<(String, u32)>,
    nodes: usize,
    event_types: BTreeSet<String>,
}

fn error(text: &dyn Located, at: usize, message: impl Into<String>) -> CompileError {
    CompileError {
        pos: text.pos(at),
        message: message.into(),
    }
}

/// Whether `op` applies to values of type `ty` (libsinsp `flt_is_comparable`; the agent has
/// no buffer fields, so `bcontains`/`bstartswith` apply to nothing).
fn applies(op: CmpOp, ty: Ty) -> bool {
    match ty {
        Ty::Str => !matches!(op, CmpOp::BContains | CmpOp::BStartsWith),
        Ty::Num => matches!(
            op,
            CmpOp::Eq
                | CmpOp::Ne
                | CmpOp::Lt
                | CmpOp::Le
                | CmpOp::Gt
                | CmpOp::Ge
                | CmpOp::In
                | CmpOp::Intersects
        ),
        Ty::Bool => matches!(op, CmpOp::Eq | CmpOp::Ne | CmpOp::In | CmpOp::Intersects),
        Ty::List => matches!(op, CmpOp::In | CmpOp::Intersects),
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

    fn expr(&mut self, e: &Expr, text: &dyn Located) -> Result<Node, CompileError> {
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
                OperandIr::Value(op, _) => self.test(op, Check::Exists),
            },
            Expr::Compare(c) => self.compare(c, text)?,
        })
    }

    fn all(&mut self, children: &[Expr], text: &dyn Located) -> Result<Vec<Node>, CompileError> {
        children.iter().map(|c| self.expr(c, text)).collect()
    }

    fn macro_ref(&mut self, ident: &Ident, text: &dyn Located) -> Result<Node, CompileError> {
        let symbols = self.symbols;
        let visible = |m: &ParsedMacro| self.stack.last().is_none_or(|(_, vis)| m.index < *vis);
        let Some(m) = symbols.macros.get(&ident.name).filter(|m| visible(m)) else {
            let hint = match (symbols.macros.get(&ident.name), self.stack.last()) {
                (Some(_), Some((user, _))) => format!(
                    "undefined macro '{}': macro {user} is defined before it, and a macro may only use macros defined earlier",
                    ident.name
                ),
                _ => format!("undefined macro '{}'", ident.name),
            };
            return Err(error(text, ident.at, hint));
        };
        if let Some(i) = self.stack.iter().position(|(n, _)| n == &ident.name) {
            let mut cycle: Vec<&str> = self.stack[i..].iter().map(|(n, _)| n.as_str()).collect();
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
        self.stack.push((ident.name.clone(), m.visibility));
        let node = self.expr(&m.ast, &m.text);
        self.stack.pop();
        node
    }

    fn compare(&mut self, c: &Compare, text: &dyn Located) -> Result<Node, CompileError> {
        let field = field_text(&c.lhs);
        let (lhs, ty) = match self.operand(&c.lhs, text)? {
            OperandIr::Value(op, ty) => (op, ty),
            OperandIr::Unknown(m) => {
                // Still report what is wrong on the right, whatever the field.
                if let Rhs::Operand(rhs) = &c.rhs {
                    self.operand(rhs, text)?;
                }
                return Ok(Node::Unknown(Box::new([m])));
            }
        };
        if !applies(c.op, ty) {
            return Err(error(
                text,
                c.at,
                format!(
                    "'{}' does not apply to {field}, a {}{}",
                    c.op,
                    ty.name(),
                    match ty {
                        Ty::Str => " (bcontains and bstartswith are for buffers)",
                        Ty::List => " (use in, intersects or exists)",
                        _ => "",
                    }
                ),
            ));
        }
        let check = match &c.rhs {
            Rhs::Operand(rhs) => match self.field_comparison(&lhs, ty, c.op, rhs, &field, text)? {
                Ok(check) => check,
                Err(missing) => return Ok(Node::Unknown(Box::new([missing]))),
            },
            Rhs::Value(v) => single(ty, c.op, &v.text, &field).map_err(|m| error(text, v.at, m))?,
            Rhs::List(_) | Rhs::ListRef(_) => {
                let (values, at): (Vec<&str>, usize) = match &c.rhs {
                    Rhs::List(items) => (
                        items.iter().map(|v| v.text.as_str()).collect(),
                        items.first().map_or(c.at, |v| v.at),
                    ),
                    Rhs::ListRef(id) => (vec![id.name.as_str()], id.at),
                    _ => (Vec::new(), c.at),
                };
                match c.modifier {
                    Some(modifier) => Check::Each {
                        modifier,
                        items: values
                            .iter()
                            .map(|v| single(ty, c.op, v, &field))
                            .collect::<Result<_, _>>()
                            .map_err(|m| error(text, at, m))?,
                    },
                    None => list(ty, c.op, &values, &field).map_err(|m| error(text, at, m))?,
                }
            }
        };
        if let Operand::Access(a) = &lhs
            && a.spec.field == Field::EvtType
            && a.transforms.is_empty()
        {
            self.note_event_types(c);
        }
        Ok(self.test(lhs, check))
    }

    /// A test node, folded when its value is the same for every exec event.
    fn test(&self, lhs: Operand, check: Check) -> Node {
        match lhs {
            Operand::Access(a) => {
                if a.spec.field.constant().is_some() {
                    let folded = match a.constant() {
                        Some(v) => check.holds_without_event(&v),
                        None => Some(false),
                    };
                    if let Some(b) = folded {
                        return Node::Const(b);
                    }
                }
                Node::Test(Box::new(Test { lhs: a, check }))
            }
            Operand::Computed(c) => Node::Computed(Box::new(ComputedTest { lhs: *c, check })),
        }
    }

    /// `lhs op rhs` where rhs is a field or transformer; `Ok(Err(missing))` when rhs is a
    /// field exec events do not carry.
    fn field_comparison(
        &mut self,
        lhs: &Operand,
        ty: Ty,
        op: CmpOp,
        rhs: &AstOperand,
        field: &str,
        text: &dyn Located,
    ) -> Result<Result<Check, Missing>, CompileError> {
        if matches!(op, CmpOp::Regex | CmpOp::Pmatch) {
            return Err(error(
                text,
                rhs.at(),
                format!("'{op}' cannot compare {field} with another field"),
            ));
        }
        if let Operand::Access(a) = lhs
            && a.spec.field.plain_only()
        {
            return Err(error(
                text,
                rhs.at(),
                format!("{field} cannot be compared with another field"),
            ));
        }
        let (rhs_op, rhs_ty) = match self.operand(rhs, text)? {
            OperandIr::Value(o, t) => (o, t),
            OperandIr::Unknown(m) => return Ok(Err(m)),
        };
        if let Operand::Access(a) = &rhs_op
            && a.spec.field.plain_only()
        {
            return Err(error(
                text,
                rhs.at(),
                format!(
                    "{} cannot be on the right-hand side of a comparison",
                    field_text(rhs)
                ),
            ));
        }
        if rhs_ty != ty {
            return Err(error(
                text,
                rhs.at(),
                format!(
                    "{field} (a {}) and {} (a {}) cannot be compared",
                    ty.name(),
                    field_text(rhs),
                    rhs_ty.name()
                ),
            ));
        }
        Ok(Ok(Check::Field { op, rhs: rhs_op }))
    }

    fn note_event_types(&mut self, c: &Compare) {
        if !matches!(c.op, CmpOp::Eq | CmpOp::In | CmpOp::Intersects) || c.modifier.is_some() {
            return;
        }
        let values: Vec<&str> = match &c.rhs {
            Rhs::Value(v) => vec![&v.text],
            Rhs::List(items) => items.iter().map(|v| v.text.as_str()).collect(),
            Rhs::ListRef(id) => vec![&id.name],
            Rhs::Operand(_) => Vec::new(),
        };
        self.event_types.extend(
            values
                .into_iter()
                .filter(|t| *t != "execve" && *t != "execveat")
                .map(str::to_owned),
        );
    }

    fn operand(&mut self, op: &AstOperand, text: &dyn Located) -> Result<OperandIr, CompileError> {
        match op {
            AstOperand::Field(f) => {
                let missing = |why| {
                    OperandIr::Unknown(Missing {
                        what: f.to_string(),
                        why,
                        pos: text.pos(f.at),
                    })
                };
                match fields::resolve(&f.name, f.arg.as_deref()) {
                    Ok(Resolved::Field(spec)) => {
                        let ty = spec.ty();
                        Ok(OperandIr::Value(Operand::Access(Access::plain(spec)), ty))
                    }
                    Ok(Resolved::NotProduced) => Ok(missing(MissingKind::NotProduced)),
                    Ok(Resolved::Unknown) => Ok(missing(MissingKind::UnknownField)),
                    Err(e) => Err(error(text, f.at, e.0)),
                }
            }
            AstOperand::Transform(t) => self.transform(t, text),
        }
    }

    fn transform(&mut self, t: &Transform, text: &dyn Located) -> Result<OperandIr, CompileError> {
        let err = |m: String| error(text, t.at, m);
        if t.arg.is_some() && t.name != "getopt" {
            return Err(err(format!(
                "transformer '{}' does not support field arguments",
                t.name
            )));
        }
        if t.name == "val" {
            // `val(field)`: the field itself (the parser allows nothing else inside).
            return match t.args.as_slice() {
                [TransformArg::Operand(inner)] => self.operand(inner, text),
                _ => Err(err("val() takes one field".into())),
            };
        }
        if let [only] = t.args.as_slice() {
            let Some(tr) = Transformer::from_name(&t.name) else {
                return Err(err(format!("{}() needs at least two arguments", t.name)));
            };
            let (op, ty) = match self.arg(only, text)? {
                OperandIr::Value(op, ty) => (op, ty),
                unknown => return Ok(unknown),
            };
            return self
                .apply(tr, op, ty, only, text)
                .map(|(o, t)| OperandIr::Value(o, t));
        }
        let mut args = Vec::with_capacity(t.args.len());
        for a in &t.args {
            match self.arg(a, text)? {
                OperandIr::Value(op, ty) => args.push((op, ty)),
                unknown => return Ok(unknown),
            }
        }
        let (source, ty) = match (t.name.as_str(), args.len()) {
            ("join", 2) => {
                let [(separator, sep_ty), (list, list_ty)] = take2(args);
                if sep_ty == Ty::List {
                    return Err(err(
                        "join(): the separator must be one value, not a list".into()
                    ));
                }
                if list_ty != Ty::List {
                    return Err(err(
                        "join(): the second argument must be a list, e.g. (a, b)".into(),
                    ));
                }
                (Source::Join { separator, list }, Ty::Str)
            }
            ("join", _) => {
                return Err(err(
                    "join() takes two arguments: a separator and a list".into()
                ));
            }
            ("concat", _) => {
                if args.iter().any(|(_, ty)| *ty != Ty::Str) {
                    return Err(err("concat() arguments must be strings".into()));
                }
                (
                    Source::Concat(args.into_iter().map(|(op, _)| op).collect()),
                    Ty::Str,
                )
            }
            ("getopt", 2) => {
                let select = match &t.arg {
                    None => None,
                    Some(a) if a.len() == 1 => Some(a.as_bytes()[0]),
                    Some(a) => {
                        return Err(err(format!(
                            "getopt()[{a}]: the argument must be a single option character"
                        )));
                    }
                };
                let [(args_op, args_ty), (optstring, opt_ty)] = take2(args);
                if args_ty != Ty::List || opt_ty != Ty::Str {
                    return Err(err(
                        "getopt() takes a list of arguments and an optstring, e.g. getopt((\"-t\", \"x\"), \"t:\")".into(),
                    ));
                }
                let ty = if select.is_some() { Ty::Str } else { Ty::List };
                (
                    Source::Getopt {
                        args: args_op,
                        optstring,
                        select,
                    },
                    ty,
                )
            }
            ("getopt", _) => {
                return Err(err(
                    "getopt() takes two arguments: a list of arguments and an optstring".into(),
                ));
            }
            (name, _) => return Err(err(format!("{name}() takes one argument"))),
        };
        Ok(OperandIr::Value(
            Operand::Computed(Box::new(Computed {
                source,
                transforms: Box::new([]),
            })),
            ty,
        ))
    }

    /// A single-value transformer on a compiled operand.
    fn apply(
        &self,
        tr: Transformer,
        op: Operand,
        ty: Ty,
        arg: &TransformArg,
        text: &dyn Located,
    ) -> Result<(Operand, Ty), CompileError> {
        let what = match arg {
            TransformArg::Operand(o) => field_text(o),
            _ => "its argument".to_owned(),
        };
        let at = match arg {
            TransformArg::Operand(o) => o.at(),
            TransformArg::Literal(v) => v.at,
            TransformArg::List(_) => 0,
        };
        let name = format!("{tr:?}").to_ascii_lowercase();
        let result = tr.result(ty).ok_or_else(|| {
            error(
                text,
                at,
                format!("{name}() does not apply to {what}, a {}", ty.name()),
            )
        })?;
        let op = match op {
            Operand::Access(mut a) => {
                if a.spec.field.plain_only() {
                    return Err(error(
                        text,
                        at,
                        format!("{what} does not support transformers"),
                    ));
                }
                let mut transforms = a.transforms.into_vec();
                transforms.push(tr);
                a.transforms = transforms.into();
                Operand::Access(a)
            }
            Operand::Computed(mut c) => {
                let mut transforms = std::mem::take(&mut c.transforms).into_vec();
                transforms.push(tr);
                c.transforms = transforms.into();
                Operand::Computed(c)
            }
        };
        Ok((op, result))
    }

    /// A transformer argument: a field or transformer, a literal (a string), or a list.
    fn arg(&mut self, a: &TransformArg, text: &dyn Located) -> Result<OperandIr, CompileError> {
        match a {
            TransformArg::Operand(op) => self.operand(op, text),
            TransformArg::Literal(v) => Ok(OperandIr::Value(literal(&v.text), Ty::Str)),
            TransformArg::List(items) => {
                let mut ops = Vec::with_capacity(items.len());
                for item in items {
                    match self.arg(item, text)? {
                        OperandIr::Value(op, _) => ops.push(op),
                        unknown => return Ok(unknown),
                    }
                }
                Ok(OperandIr::Value(
                    Operand::Computed(Box::new(Computed {
                        source: Source::List(ops.into()),
                        transforms: Box::new([]),
                    })),
                    Ty::List,
                ))
            }
        }
    }
}

fn literal(text: &str) -> Operand {
    Operand::Computed(Box::new(Computed {
        source: Source::Literal(text.into()),
        transforms: Box::new([]),
    }))
}

fn take2<T>(v: Vec<T>) -> [T; 2] {
    v.try_into()
        .unwrap_or_else(|_| unreachable!("the caller checked there are two"))
}

/// The check for `op value` on a value of type `ty` (the operator applies to the type).
fn single(ty: Ty, op: CmpOp, value: &str, field: &str) -> Result<Check, String> {
    no_nul(value)?;
    Ok(match ty {
        Ty::Str => Check::Str(StrMatch::single(op, value).map_err(|m| format!("{field}: {m}"))?),
        Ty::Num => {
            let n = parse_number(value)
                .ok_or_else(|| format!("{field} is a number; {value:?} is not"))?;
            match op {
                CmpOp::In | CmpOp::Intersects => Check::NumIn(Box::new([n])),
                _ => Check::Num(op, n),
            }
        }
        Ty::Bool => {
            let b = parse_bool(value, field)?;
            match op {
                CmpOp::Eq => Check::Bool {
                    equal: true,
                    value: b,
                },
                CmpOp::Ne => Check::Bool {
                    equal: false,
                    value: b,
                },
                _ => Check::BoolIn(Box::new([b])),
            }
        }
        Ty::List => list(ty, op, &[value], field)?,
    })
}

/// The check for a list operator (`in`, `intersects`, `pmatch`).
fn list(ty: Ty, op: CmpOp, values: &[&str], field: &str) -> Result<Check, String> {
    for v in values {
        no_nul(v)?;
    }
    let owned = || values.iter().map(|v| (*v).to_owned());
    Ok(match ty {
        Ty::Str => {
            Check::Str(StrMatch::list(op, owned().collect()).map_err(|m| format!("{field}: {m}"))?)
        }
        Ty::Num => Check::NumIn(
            values
                .iter()
                .map(|v| {
                    parse_number(v)
                        .ok_or_else(|| format!("{field} is a number; list item {v:?} is not"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Ty::Bool => Check::BoolIn(
            values
                .iter()
                .map(|v| parse_bool(v, field))
                .collect::<Result<_, _>>()?,
        ),
        Ty::List if op == CmpOp::In => Check::ListIn(StrSet::new(owned())),
        Ty::List => Check::ListIntersects(StrSet::new(owned())),
    })
}

fn no_nul(value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!(
            "{value:?}: a value cannot contain a NUL byte (\\x00)"
        ));
    }
    Ok(())
}

fn parse_bool(value: &str, field: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!(
            "{field} is a boolean; {other:?} is neither true nor false"
        )),
    }
}

/// A decimal integer as Falco reads one (`sscanf("%d")` with nothing after it): optional
/// leading blanks and sign. Hexadecimal and fractions are refused, as in Falco.
pub fn parse_number(s: &str) -> Option<i64> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.strip_prefix('+').unwrap_or(s).parse().ok()
}

/// An operand as written, for messages.
fn field_text(op: &AstOperand) -> String {
    match op {
        AstOperand::Field(f) => f.to_string(),
        AstOperand::Transform(t) => format!("{}(...)", t.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{condition, program::Check, source::SourceText};

    fn symbols(macros: &[(&str, &str)]) -> Symbols {
        let mut s = Symbols::default();
        for (i, (name, cond)) in macros.iter().enumerate() {
            let i = u32::try_from(i).unwrap();
            s.macros.insert(
                (*name).into(),
                ParsedMacro {
                    ast: condition::parse(cond).unwrap(),
                    text: CondText::new(&SourceText::literal(cond)),
                    index: i,
                    visibility: i,
                },
            );
        }
        s
    }

    fn compile(s: &Symbols, cond: &str) -> Result<Compiled, CompileError> {
        let t = CondText::new(&SourceText::literal(cond));
        condition(s, &condition::parse(cond).unwrap(), &t)
    }

    #[test]
    fn event_type_tests_fold() {
        let s = symbols(&[("spawned_process", "evt.type in (execve, execveat)")]);
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
    fn macros_see_only_earlier_macros() {
        let s = symbols(&[("a", "b"), ("b", "proc.name = x")]);
        let e = compile(&s, "a").unwrap_err();
        assert!(e.message.contains("undefined macro 'b'"), "{e}");
        assert!(compile(&s, "b").is_ok(), "a rule sees every macro");
        let e = compile(&s, "nope").unwrap_err();
        assert!(e.message.contains("undefined macro 'nope'"));
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
        let s = symbols(&pairs);
        let e = compile(&s, "m39").unwrap_err();
        assert!(e.message.contains("checks"), "{e}");
    }

    #[test]
    fn types_as_falco_checks_them() {
        let s = Symbols::default();
        let ok = |c: &str| compile(&s, c).map(|_| ()).map_err(|e| e.message);
        assert!(
            ok("proc.tty = abc")
                .unwrap_err()
                .contains("proc.tty is a number")
        );
        assert!(
            ok("proc.pid contains 1")
                .unwrap_err()
                .contains("does not apply to proc.pid")
        );
        assert!(
            ok("proc.name regex \"(\"")
                .unwrap_err()
                .contains("invalid regex")
        );
        assert!(
            ok("proc.name bcontains 2f")
                .unwrap_err()
                .contains("buffers")
        );
        assert!(ok("proc.pid = 0x10").is_err(), "decimal only, as Falco");
        assert!(ok("proc.name = \"\\x00\"").unwrap_err().contains("NUL"));
        for good in [
            "proc.name < 1",
            "evt.failed in (true)",
            "proc.pid == oneof (1, 2)",
            "len(proc.args) > 3",
            "proc.name = val(proc.pname)",
            "concat(proc.name, proc.pname) = x",
            "b64(proc.name) = x",
            "getopt((\"-t\", \"v\"), \"t:\")[t] = v",
        ] {
            assert!(ok(good).is_ok(), "{good}: {:?}", ok(good));
        }
        for bad in [
            "tolower(proc.pid) = 1",
            "toupper(proc.name)[x] = X",
            "proc.name = val(proc.pname)[x]",
            "tolower(proc.aname[1]) = x",
            "proc.aname = val(proc.name)",
            "proc.name regex val(proc.pname)",
            "proc.name = val(proc.pid)",
            "concat(\"a\") = a",
            "concat(proc.pid, \"a\") = a",
            "join(\"-\", \"a\") = a",
            "getopt((\"-n\"), \"n\")[\"\"] = n",
        ] {
            assert!(ok(bad).is_err(), "{bad} should not compile");
        }
    }

    #[test]
    fn modifiers_count_matches() {
        let s = Symbols::default();
        let c = compile(&s, "proc.name startswith oneof (s, ss)").unwrap();
        let Node::Test(t) = &c.node else { panic!() };
        fn v(s: &str) -> crate::rules::fields::Val<'_> {
            crate::rules::fields::Val::Str(s.into())
        }
        assert_eq!(t.check.holds_without_event(&v("sh")), Some(true));
        assert_eq!(
            t.check.holds_without_event(&v("ssh")),
            Some(false),
            "two match"
        );
        let c = compile(&s, "proc.name = allof ()").unwrap();
        let Node::Test(t) = &c.node else { panic!() };
        assert!(matches!(&t.check, Check::Each { items, .. } if items.is_empty()));
        assert_eq!(t.check.holds_without_event(&v("")), Some(false));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("-3"), Some(-3));
        assert_eq!(parse_number("+3"), Some(3));
        assert_eq!(parse_number(" 3"), Some(3));
        assert_eq!(parse_number("0x10"), None);
        assert_eq!(parse_number("1.5"), None);
        assert_eq!(parse_number("-"), None);
    }
}
