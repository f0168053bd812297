//! The evaluable form of a condition: a tree of field tests with precompiled matchers. Built
//! once by `compile`; evaluating it reads fields and runs matchers, nothing else.

use std::borrow::Cow;

use super::{
    condition::ast::{CmpOp, Modifier},
    fields::{EventView, FieldSpec, Ty, Val},
    glob,
    matcher::{StrMatch, StrSet, substring_needle, substrings},
    source::Pos,
    transform,
};

#[derive(Clone, Debug)]
pub enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Test(Box<Test>),
    /// A test on a computed value (`join`, `concat`, `getopt`, literals).
    Computed(Box<ComputedTest>),
    /// Depends on something the agent does not produce; a rule whose condition still holds
    /// one after folding is disabled, never evaluated.
    Unknown(Box<[Missing]>),
}

/// What a condition needs that exec events do not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// As written: `fd.name`, `proc.aname[2]`.
    pub what: String,
    pub why: MissingKind,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingKind {
    /// A Falco field that exec events do not carry.
    NotProduced,
    /// Not a Falco field at all.
    UnknownField,
}

/// `lhs check`, on a field.
#[derive(Clone, Debug)]
pub struct Test {
    pub lhs: Access,
    pub check: Check,
}

/// `lhs check`, on a computed value.
#[derive(Clone, Debug)]
pub struct ComputedTest {
    pub lhs: Computed,
    pub check: Check,
}

/// A field read, then transformed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub spec: FieldSpec,
    /// `spec.is_multi()`, kept at hand for evaluation.
    multi: bool,
    /// Applied innermost first.
    pub transforms: Box<[Transformer]>,
}

/// Single-value transformers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transformer {
    ToLower,
    ToUpper,
    Basename,
    Len,
    B64,
}

impl Transformer {
    pub fn from_name(name: &str) -> Option<Transformer> {
        Some(match name {
            "tolower" => Transformer::ToLower,
            "toupper" => Transformer::ToUpper,
            "basename" => Transformer::Basename,
            "len" => Transformer::Len,
            "b64" => Transformer::B64,
            _ => return None,
        })
    }

    /// The type of the result on a value of type `ty`; `None` when it does not apply.
    pub fn result(self, ty: Ty) -> Option<Ty> {
        match (self, ty) {
            (Transformer::Len, Ty::Str | Ty::List) => Some(Ty::Num),
            (_, Ty::Str) => Some(Ty::Str),
            (
                Transformer::ToLower
                | Transformer::ToUpper
                | Transformer::Basename
                | Transformer::B64,
                Ty::List,
            ) => Some(Ty::List),
            _ => None,
        }
    }

    /// Applies to one value; `None` when it fails (b64 of something not base64).
    fn apply<'v>(self, v: Val<'v>) -> Option<Val<'v>> {
        let each = |f: fn(Cow<'v, str>) -> Option<Cow<'v, str>>, v: Val<'v>| match v {
            Val::Str(s) => f(s).map(Val::Str),
            Val::List(items) => items
                .into_iter()
                .map(f)
                .collect::<Option<_>>()
                .map(Val::List),
            other => Some(other),
        };
        match self {
            Transformer::ToLower => each(|s| Some(ascii_map(s, u8::to_ascii_lowercase)), v),
            Transformer::ToUpper => each(|s| Some(ascii_map(s, u8::to_ascii_uppercase)), v),
            Transformer::Basename => each(|s| Some(basename(s)), v),
            Transformer::B64 => each(|s| transform::b64_decode(&s).map(Cow::Owned), v),
            Transformer::Len => Some(Val::Num(match &v {
                Val::Str(s) => i64::try_from(s.len()).unwrap_or(i64::MAX),
                Val::List(items) => i64::try_from(items.len()).unwrap_or(i64::MAX),
                _ => return None,
            })),
        }
    }
}

/// A value computed from others: what Falco's multi-value transformers and literal arguments
/// produce.
#[derive(Clone, Debug)]
pub struct Computed {
    pub source: Source,
    /// Single-value transformers on the result, innermost first.
    pub transforms: Box<[Transformer]>,
}

#[derive(Clone, Debug)]
pub enum Source {
    Literal(Box<str>),
    /// `(a, "b", c)`: every value, as text, in order.
    List(Box<[Operand]>),
    Join {
        separator: Operand,
        list: Operand,
    },
    Concat(Box<[Operand]>),
    Getopt {
        args: Operand,
        optstring: Operand,
        /// `getopt(...)[x]`: only option `x`.
        select: Option<u8>,
    },
}

/// A value: a field read, or computed.
#[derive(Clone, Debug)]
pub enum Operand {
    Access(Access),
    Computed(Box<Computed>),
}

// Large variants are fine: a `Check` lives inside a boxed test, one allocation per test.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Check {
    Exists,
    Str(StrMatch),
    Num(CmpOp, i64),
    NumIn(Box<[i64]>),
    Bool {
        equal: bool,
        value: bool,
    },
    BoolIn(Box<[bool]>),
    /// `op oneof/anyof/allof (v1, v2...)`: one check per item, counted.
    Each {
        modifier: Modifier,
        items: Box<[Check]>,
    },
    /// On a list value: every item is in the set (`in`).
    ListIn(StrSet),
    /// On a list value: some item is in the set (`intersects`).
    ListIntersects(StrSet),
    /// Compared with another value of the same event (`val(...)`, transformers).
    Field {
        op: CmpOp,
        rhs: Operand,
    },
}

/// A numeric comparison (`compile` builds them with = != < <= > >=).
#[inline]
fn compare_num(op: CmpOp, a: i64, b: i64) -> bool {
    match op {
        CmpOp::Eq | CmpOp::In | CmpOp::Intersects => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
        _ => false,
    }
}

impl Node {
    #[inline]
    pub fn eval(&self, ev: &EventView<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(children) => children.iter().all(|c| c.eval(ev)),
            Node::Or(children) => children.iter().any(|c| c.eval(ev)),
            Node::Not(child) => !child.eval(ev),
            Node::Test(test) => test.eval(ev),
            Node::Computed(test) => test.eval(ev),
            Node::Unknown(_) => false,
        }
    }

    /// Everything unknown left in the tree, first occurrence of each.
    pub fn missing(&self) -> Vec<Missing> {
        let mut out: Vec<Missing> = Vec::new();
        self.collect_missing(&mut out);
        out
    }

    fn collect_missing(&self, out: &mut Vec<Missing>) {
        match self {
            Node::And(children) | Node::Or(children) => {
                children.iter().for_each(|c| c.collect_missing(out));
            }
            Node::Not(child) => child.collect_missing(out),
            Node::Unknown(missing) => {
                for m in missing.iter() {
                    if !out.iter().any(|o| o.what == m.what) {
                        out.push(m.clone());
                    }
                }
            }
            Node::Const(_) | Node::Test(_) | Node::Computed(_) => {}
        }
    }

    /// `a and b and ...`, folded: constants are decided at compile time, unknowns kept.
    pub fn and(children: Vec<Node>) -> Node {
        Self::fold(children, true)
    }

    pub fn or(children: Vec<Node>) -> Node {
        Self::fold(children, false)
    }

    /// `neutral` is the value that does not change the result (true for and).
    fn fold(children: Vec<Node>, neutral: bool) -> Node {
        let mut kept = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Node::Const(b) if b == neutral => {}
                Node::Const(b) => return Node::Const(b),
                Node::And(grand) if neutral => kept.extend(grand.into_vec()),
                Node::Or(grand) if !neutral => kept.extend(grand.into_vec()),
                other => kept.push(other),
            }
        }
        if !neutral {
            kept = merge_substring_tests(kept);
        }
        match kept.len() {
            0 => Node::Const(neutral),
            1 => kept.pop().unwrap_or(Node::Const(neutral)),
            _ if neutral => Node::And(kept.into()),
            _ => Node::Or(kept.into()),
        }
    }

    pub fn negate(child: Node) -> Node {
        match child {
            Node::Const(b) => Node::Const(!b),
            Node::Not(inner) => *inner,
            Node::Unknown(m) => Node::Unknown(m),
            other => Node::Not(Box::new(other)),
        }
    }

    /// Number of nodes, for load-time budgets and reports.
    pub fn size(&self) -> usize {
        match self {
            Node::And(c) | Node::Or(c) => 1 + c.iter().map(Node::size).sum::<usize>(),
            Node::Not(c) => 1 + c.size(),
            _ => 1,
        }
    }
}

/// In an `or`, substring tests on the same field (`proc.args icontains "A" or proc.args
/// icontains "B" ...`) become one multi-pattern test: one pass over the value instead of one
/// per needle. The result is the same.
fn merge_substring_tests(children: Vec<Node>) -> Vec<Node> {
    let needle_of = |n: &Node| match n {
        Node::Test(t) => match &t.check {
            Check::Str(m) => substring_needle(m).map(|_| t.lhs.clone()),
            _ => None,
        },
        _ => None,
    };
    let mut out: Vec<Node> = Vec::with_capacity(children.len());
    let mut groups: Vec<(Access, usize, Vec<Node>)> = Vec::new();
    for child in children {
        match needle_of(&child) {
            Some(lhs) => match groups.iter_mut().find(|(a, _, _)| *a == lhs) {
                Some((_, _, members)) => members.push(child),
                None => {
                    groups.push((lhs, out.len(), vec![]));
                    out.push(child);
                }
            },
            None => out.push(child),
        }
    }
    for (lhs, slot, members) in groups.into_iter().rev() {
        if members.is_empty() {
            continue;
        }
        let mut all = vec![std::mem::replace(&mut out[slot], Node::Const(false))];
        all.extend(members);
        let needles: Vec<(&str, bool)> = all
            .iter()
            .filter_map(|n| match n {
                Node::Test(t) => match &t.check {
                    Check::Str(m) => substring_needle(m),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        out[slot] = match substrings(&needles) {
            Ok(re) => Node::Test(Box::new(Test {
                lhs,
                check: Check::Str(StrMatch::Substrings(re)),
            })),
            // Too large to merge: keep them apart.
            Err(_) => Node::Or(all.into()),
        };
    }
    out
}

impl Access {
    pub fn plain(spec: FieldSpec) -> Self {
        Self {
            multi: spec.is_multi(),
            spec,
            transforms: Box::new([]),
        }
    }

    /// The type after transformers.
    pub fn ty(&self) -> Ty {
        self.transforms
            .iter()
            .fold(self.spec.ty(), |ty, t| t.result(ty).unwrap_or(ty))
    }

    /// The value when it is the same for every exec event (`evt.type`...).
    pub fn constant(&self) -> Option<Val<'static>> {
        let v = self.spec.field.constant()?;
        self.transform(v)
    }

    /// The value of a single-valued access.
    #[inline]
    pub fn get<'v>(&self, ev: &'v EventView<'_>) -> Option<Val<'v>> {
        let v = ev.get(&self.spec)?;
        if self.transforms.is_empty() {
            Some(v)
        } else {
            self.transform(v)
        }
    }

    /// Calls `f` on each value (one, or one per ancestor) until it returns true.
    #[inline]
    pub fn any(&self, ev: &EventView<'_>, mut f: impl FnMut(Val<'_>) -> bool) -> bool {
        if self.multi {
            ev.each_ancestor(self.spec.field, |v| self.transform(v).is_some_and(&mut f))
        } else {
            match self.get(ev) {
                Some(v) => f(v),
                None => false,
            }
        }
    }

    fn transform<'v>(&self, v: Val<'v>) -> Option<Val<'v>> {
        apply_all(&self.transforms, v)
    }
}

fn apply_all<'v>(transforms: &[Transformer], mut v: Val<'v>) -> Option<Val<'v>> {
    for t in transforms {
        v = t.apply(v)?;
    }
    Some(v)
}

fn ascii_map(s: Cow<'_, str>, f: fn(&u8) -> u8) -> Cow<'_, str> {
    if !s.bytes().any(|b| f(&b) != b) {
        return s;
    }
    let bytes: Vec<u8> = s.as_bytes().iter().map(f).collect();
    // Only ASCII bytes change, so the result is still UTF-8.
    Cow::Owned(String::from_utf8(bytes).unwrap_or_default())
}

fn basename(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(transform::basename(b)),
        Cow::Owned(o) => Cow::Owned(transform::basename(&o).to_owned()),
    }
}

impl Operand {
    /// The value, when the event has one.
    pub fn value<'v>(&'v self, ev: &'v EventView<'_>) -> Option<Val<'v>> {
        match self {
            Operand::Access(a) => a.get(ev),
            Operand::Computed(c) => c.value(ev),
        }
    }
}

impl Computed {
    pub fn value<'v>(&'v self, ev: &'v EventView<'_>) -> Option<Val<'v>> {
        let v = match &self.source {
            Source::Literal(s) => Val::Str(Cow::Borrowed(s)),
            Source::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    match item.value(ev)? {
                        Val::List(l) => out.extend(l),
                        other => out.push(Cow::Owned(other.to_text())),
                    }
                }
                Val::List(out)
            }
            Source::Join { separator, list } => {
                let sep = separator.value(ev)?.to_text();
                let Val::List(items) = list.value(ev)? else {
                    return None;
                };
                Val::Str(Cow::Owned(items.join(sep.as_str())))
            }
            Source::Concat(parts) => {
                let mut out = String::new();
                for p in parts.iter() {
                    out.push_str(&p.value(ev)?.to_text());
                }
                Val::Str(Cow::Owned(out))
            }
            Source::Getopt {
                args,
                optstring,
                select,
            } => {
                let Val::List(args) = args.value(ev)? else {
                    return None;
                };
                let optstring = optstring.value(ev)?.to_text();
                let args: Vec<&str> = args.iter().map(|a| &**a).collect();
                let mut found = transform::getopt(&args, &optstring, *select)?;
                match select {
                    Some(_) => Val::Str(Cow::Owned(found.pop().unwrap_or_default())),
                    None => Val::List(found.into_iter().map(Cow::Owned).collect()),
                }
            }
        };
        apply_all(&self.transforms, v)
    }
}

impl Test {
    #[inline]
    pub fn eval(&self, ev: &EventView<'_>) -> bool {
        self.lhs.any(ev, |v| self.check.holds(&v, ev))
    }
}

impl ComputedTest {
    pub fn eval(&self, ev: &EventView<'_>) -> bool {
        self.lhs.value(ev).is_some_and(|v| self.check.holds(&v, ev))
    }
}

impl Check {
    /// Whether the check holds for one value of the left-hand side. Always inlined: it is
    /// the inner loop of evaluation.
    #[inline(always)]
    pub fn holds(&self, v: &Val<'_>, ev: &EventView<'_>) -> bool {
        match self {
            Check::Field { op, rhs } => match rhs.value(ev) {
                Some(r) => compare_values(*op, v, &r),
                None => false,
            },
            _ => self.holds_without_event(v).unwrap_or(false),
        }
    }

    /// Decides the check from the value alone; `None` for field-to-field comparisons.
    /// `compile` uses it to fold tests on constant fields.
    #[inline(always)]
    pub fn holds_without_event(&self, v: &Val<'_>) -> Option<bool> {
        Some(match (self, v) {
            (Check::Field { .. }, _) => return None,
            (Check::Exists, _) => true,
            (Check::Str(m), Val::Str(s)) => m.matches(s),
            (Check::Num(op, n), Val::Num(x)) => compare_num(*op, *x, *n),
            (Check::NumIn(set), Val::Num(x)) => set.contains(x),
            (Check::Bool { equal, value }, Val::Bool(b)) => (b == value) == *equal,
            _ => self.holds_otherwise(v),
        })
    }

    /// The checks rules seldom use (modifiers, lists), kept out of the inlined path.
    #[inline(never)]
    fn holds_otherwise(&self, v: &Val<'_>) -> bool {
        match (self, v) {
            (Check::BoolIn(set), Val::Bool(b)) => set.contains(b),
            (Check::Each { modifier, items }, v) => {
                let mut matched = items
                    .iter()
                    .filter(|c| c.holds_without_event(v) == Some(true));
                match modifier {
                    Modifier::AnyOf => matched.next().is_some(),
                    Modifier::OneOf => matched.next().is_some() && matched.next().is_none(),
                    Modifier::AllOf => !items.is_empty() && matched.count() == items.len(),
                }
            }
            (Check::ListIn(set), Val::List(items)) => items.iter().all(|i| set.contains(i)),
            (Check::ListIntersects(set), Val::List(items)) => items.iter().any(|i| set.contains(i)),
            _ => false,
        }
    }
}

/// Field-to-field comparison (`compile` allows the operators of the left-hand type, except
/// regex and pmatch).
fn compare_values(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => compare_num(op, *x, *y),
        (Val::Str(x), Val::Str(y)) => match op {
            CmpOp::Eq | CmpOp::In | CmpOp::Intersects => x == y,
            CmpOp::Ne => x != y,
            CmpOp::Lt => x < y,
            CmpOp::Le => x <= y,
            CmpOp::Gt => x > y,
            CmpOp::Ge => x >= y,
            CmpOp::Contains => x.contains(&**y),
            CmpOp::IContains => memchr::memmem::find(
                x.to_ascii_lowercase().as_bytes(),
                y.to_ascii_lowercase().as_bytes(),
            )
            .is_some(),
            CmpOp::StartsWith => x.starts_with(&**y),
            CmpOp::EndsWith => x.ends_with(&**y),
            CmpOp::Glob => glob::fnmatch(y.as_bytes(), x.as_bytes(), false),
            CmpOp::IGlob => glob::fnmatch(y.as_bytes(), x.as_bytes(), true),
            _ => false,
        },
        (Val::Bool(x), Val::Bool(y)) => match op {
            CmpOp::Eq | CmpOp::In | CmpOp::Intersects => x == y,
            CmpOp::Ne => x != y,
            _ => false,
        },
        (Val::List(x), Val::List(y)) => match op {
            CmpOp::In => x.iter().all(|i| y.contains(i)),
            CmpOp::Intersects => x.iter().any(|i| y.contains(i)),
            _ => false,
        },
        _ => false,
    }
}
