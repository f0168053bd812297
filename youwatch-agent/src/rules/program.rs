//! The evaluable form of a condition: a tree of field tests with precompiled matchers. Built
//! once by `compile`; evaluating it reads fields and runs matchers, nothing else.

use std::borrow::Cow;

use super::{
    condition::ast::CmpOp,
    fields::{EventView, FieldSpec, Ty, Val},
    matcher::{StrMatch, substring_needle, substrings},
    source::Pos,
};

#[derive(Clone, Debug)]
pub enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Test(Box<Test>),
    /// Depends on something the agent does not produce; a rule whose condition still holds
    /// one after folding is disabled, never evaluated.
    Unknown(Box<[Missing]>),
}

/// What a condition needs that exec events do not carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// As written: `fd.name`, `proc.aname[2]`, `concat(...)`.
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
    /// A transformer (or form of one) the agent does not evaluate.
    Transformer,
}

/// `lhs check`.
#[derive(Clone, Debug)]
pub struct Test {
    pub lhs: Access,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transformer {
    ToLower,
    ToUpper,
    Basename,
    Len,
}

// Large variants are fine: a `Check` lives inside a boxed `Test`, one allocation per test.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Check {
    Exists,
    Str(StrMatch),
    /// `oneof`/`anyof` (any) and `allof` (all) over a list of values.
    AnyStr(Box<[StrMatch]>),
    AllStr(Box<[StrMatch]>),
    Num(CmpOp, i64),
    NumIn(Box<[i64]>),
    Bool {
        equal: bool,
        value: bool,
    },
    /// Compared with another field of the same event (`val(...)`, transformers).
    Field {
        op: CmpOp,
        rhs: Access,
    },
}

/// A numeric comparison (`compile` only builds them with = != < <= > >=).
#[inline]
fn compare_num(op: CmpOp, a: i64, b: i64) -> bool {
    match op {
        CmpOp::Eq => a == b,
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
            Node::Const(_) | Node::Test(_) => {}
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
        self.transforms.last().map_or(self.spec.ty(), |t| {
            if *t == Transformer::Len {
                Ty::Num
            } else {
                Ty::Str
            }
        })
    }

    /// The value when it is the same for every exec event (`evt.type`...).
    pub fn constant(&self) -> Option<Val<'static>> {
        let v = self.spec.field.constant()?;
        Some(self.transform(v))
    }

    /// The value of a single-valued access.
    #[inline]
    pub fn get<'v>(&self, ev: &'v EventView<'_>) -> Option<Val<'v>> {
        let v = ev.get(&self.spec)?;
        Some(if self.transforms.is_empty() {
            v
        } else {
            self.transform(v)
        })
    }

    /// Calls `f` on each value (one, or one per ancestor) until it returns true.
    #[inline]
    pub fn any(&self, ev: &EventView<'_>, mut f: impl FnMut(Val<'_>) -> bool) -> bool {
        if self.multi {
            ev.each_ancestor(self.spec.field, |v| f(self.transform(v)))
        } else {
            match self.get(ev) {
                Some(v) => f(v),
                None => false,
            }
        }
    }

    fn transform<'v>(&self, mut v: Val<'v>) -> Val<'v> {
        for t in self.transforms.iter() {
            v = match (t, v) {
                (Transformer::ToLower, Val::Str(s)) => {
                    Val::Str(ascii_map(s, |c| c.to_ascii_lowercase()))
                }
                (Transformer::ToUpper, Val::Str(s)) => {
                    Val::Str(ascii_map(s, |c| c.to_ascii_uppercase()))
                }
                (Transformer::Basename, Val::Str(s)) => Val::Str(basename(s)),
                (Transformer::Len, Val::Str(s)) => {
                    Val::Num(i64::try_from(s.len()).unwrap_or(i64::MAX))
                }
                (_, other) => other,
            };
        }
        v
    }
}

fn ascii_map<'v>(s: Cow<'v, str>, f: impl Fn(&u8) -> u8) -> Cow<'v, str> {
    let bytes: Vec<u8> = s.as_bytes().iter().map(f).collect();
    // Only ASCII bytes change, so the result is still UTF-8.
    Cow::Owned(String::from_utf8(bytes).unwrap_or_default())
}

fn basename(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.rsplit('/').next().unwrap_or(b)),
        Cow::Owned(o) => Cow::Owned(o.rsplit('/').next().unwrap_or(&o).to_owned()),
    }
}

impl Test {
    #[inline]
    pub fn eval(&self, ev: &EventView<'_>) -> bool {
        self.lhs.any(ev, |v| self.check.holds(&v, ev))
    }
}

impl Check {
    /// Whether the check holds for one value of the left-hand side.
    #[inline]
    pub fn holds(&self, v: &Val<'_>, ev: &EventView<'_>) -> bool {
        match self {
            Check::Field { op, rhs } => match rhs.get(ev) {
                Some(r) => compare_values(*op, v, &r),
                None => false,
            },
            _ => self.holds_without_event(v).unwrap_or(false),
        }
    }

    /// Decides the check from the value alone; `None` for field-to-field comparisons.
    /// `compile` uses it to fold tests on constant fields.
    #[inline]
    pub fn holds_without_event(&self, v: &Val<'_>) -> Option<bool> {
        Some(match (self, v) {
            (Check::Field { .. }, _) => return None,
            (Check::Exists, _) => true,
            (Check::Str(m), Val::Str(s)) => m.matches(s),
            (Check::AnyStr(ms), Val::Str(s)) => ms.iter().any(|m| m.matches(s)),
            (Check::AllStr(ms), Val::Str(s)) => ms.iter().all(|m| m.matches(s)),
            (Check::Num(op, n), Val::Num(x)) => compare_num(*op, *x, *n),
            (Check::NumIn(set), Val::Num(x)) => set.contains(x),
            (Check::Bool { equal, value }, Val::Bool(b)) => (b == value) == *equal,
            _ => false,
        })
    }
}

/// Field-to-field comparison (the operators `compile` allows for it).
fn compare_values(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => compare_num(op, *x, *y),
        (Val::Str(x), Val::Str(y)) => match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            CmpOp::Contains => x.contains(&**y),
            CmpOp::IContains => x.to_ascii_lowercase().contains(&y.to_ascii_lowercase()),
            CmpOp::StartsWith => x.starts_with(&**y),
            CmpOp::EndsWith => x.ends_with(&**y),
            _ => false,
        },
        (Val::Bool(x), Val::Bool(y)) => match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            _ => false,
        },
        _ => false,
    }
}

/// Field-to-field operators `compile` accepts.
pub fn field_comparison_supported(op: CmpOp) -> bool {
    matches!(
        op,
        CmpOp::Eq
            | CmpOp::Ne
            | CmpOp::Lt
            | CmpOp::Le
            | CmpOp::Gt
            | CmpOp::Ge
            | CmpOp::Contains
            | CmpOp::IContains
            | CmpOp::StartsWith
            | CmpOp::EndsWith
    )
}
