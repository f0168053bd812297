//! The syntax tree of a Falco condition, as written (macros and lists not yet resolved).
//!
//! Every node keeps the byte offset where it starts in the condition text, so later stages
//! (macro resolution, field checks) can report `file:line:column`.

use std::fmt;

/// A boolean expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A bare identifier: a macro reference.
    Macro(Ident),
    /// `operand exists`.
    Exists(Operand),
    /// `operand op value`.
    Compare(Compare),
}

/// A name and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub at: usize,
}

/// `lhs op [modifier] rhs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub lhs: Operand,
    pub op: CmpOp,
    /// `oneof`/`anyof`/`allof` after a string operator, with a list (or one name) on the
    /// right.
    pub modifier: Option<Modifier>,
    pub rhs: Rhs,
    pub at: usize,
}

/// The left-hand side of a check (or a field on the right of one): a field, possibly
/// wrapped in transformers.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Field(FieldRef),
    Transform(Transform),
}

impl Operand {
    pub fn at(&self) -> usize {
        match self {
            Operand::Field(f) => f.at,
            Operand::Transform(t) => t.at,
        }
    }
}

/// `name` or `name[arg]`, e.g. `proc.aname[2]`, `k8s.pod.label[app]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRef {
    pub name: String,
    pub arg: Option<String>,
    pub at: usize,
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.arg {
            Some(arg) => write!(f, "{}[{arg}]", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// `tolower(proc.name)`, `len(proc.args)`, `concat(a, "b")`, `getopt(x, "t:")[t]`; `val(f)`
/// on the right of a comparison is one too (an identity Falco writes to mark a field).
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub name: String,
    pub args: Vec<TransformArg>,
    /// `[arg]` after the closing parenthesis.
    pub arg: Option<String>,
    pub at: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TransformArg {
    Operand(Operand),
    Literal(Value),
    /// `(a, "b", tolower(c))`: fields, transformers, quoted strings and numbers.
    List(Vec<TransformArg>),
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    Value(Value),
    /// `(a, b, "c d")`.
    List(Vec<Value>),
    /// `in name` (or `= oneof name`) without parentheses: one value. Lists are substituted
    /// into the text before parsing, as Falco does, so a name left here is not a list.
    ListRef(Ident),
    /// `val(field)` or a transformer: compared with another field of the same event.
    Operand(Operand),
}

/// A constant as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub quoted: bool,
    pub at: usize,
}

/// Comparison operators, with Falco's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    Pmatch,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Contains => "contains",
            CmpOp::IContains => "icontains",
            CmpOp::BContains => "bcontains",
            CmpOp::StartsWith => "startswith",
            CmpOp::BStartsWith => "bstartswith",
            CmpOp::EndsWith => "endswith",
            CmpOp::Glob => "glob",
            CmpOp::IGlob => "iglob",
            CmpOp::Regex => "regex",
            CmpOp::In => "in",
            CmpOp::Intersects => "intersects",
            CmpOp::Pmatch => "pmatch",
        }
    }

    /// Operators that compare numbers (and anything ordered).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            CmpOp::Eq | CmpOp::Ne | CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge
        )
    }

    /// Operators whose right-hand side is a list.
    pub fn takes_list(self) -> bool {
        matches!(self, CmpOp::In | CmpOp::Intersects | CmpOp::Pmatch)
    }

    /// Operators a modifier may follow (Falco's string operators).
    pub fn takes_modifier(self) -> bool {
        matches!(
            self,
            CmpOp::Eq
                | CmpOp::Ne
                | CmpOp::Contains
                | CmpOp::IContains
                | CmpOp::BContains
                | CmpOp::StartsWith
                | CmpOp::BStartsWith
                | CmpOp::EndsWith
                | CmpOp::Glob
                | CmpOp::IGlob
                | CmpOp::Regex
        )
    }

    /// Parses an operator as exception `comps` spell it (`=`, `in`, `startswith`...).
    pub fn from_name(s: &str) -> Option<CmpOp> {
        Some(match s {
            "=" | "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "contains" => CmpOp::Contains,
            "icontains" => CmpOp::IContains,
            "bcontains" => CmpOp::BContains,
            "startswith" => CmpOp::StartsWith,
            "bstartswith" => CmpOp::BStartsWith,
            "endswith" => CmpOp::EndsWith,
            "glob" => CmpOp::Glob,
            "iglob" => CmpOp::IGlob,
            "regex" => CmpOp::Regex,
            "in" => CmpOp::In,
            "intersects" => CmpOp::Intersects,
            "pmatch" => CmpOp::Pmatch,
            _ => return None,
        })
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// List modifiers of string operators (`startswith oneof (a, b)`); with an empty list all
/// three are false.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    /// `oneof`: the operator holds for exactly one item.
    OneOf,
    /// `anyof`: it holds for at least one item.
    AnyOf,
    /// `allof`: it holds for every item.
    AllOf,
}

impl Modifier {
    pub fn from_name(s: &str) -> Option<Modifier> {
        Some(match s {
            "oneof" => Modifier::OneOf,
            "anyof" => Modifier::AnyOf,
            "allof" => Modifier::AllOf,
            _ => return None,
        })
    }
}
