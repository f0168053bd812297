//! Recursive-descent parser for Falco conditions, following libsinsp's `filter/parser.cpp`
//! production by production so that a condition parses here exactly when it parses in Falco:
//!
//! ```text
//! or       := and ( "or" (blank and | "(" or ")") )*
//! and      := not ( "and" (blank not | "(" or ")") )*
//! not      := ("not" space)* ( "not(" or ")" | check )
//! check    := "(" or ")" | operand condition | identifier
//! operand  := field ["[" arg "]"] | transformer "(" targ ("," targ)* ")" ["[" arg "]"]
//! condition:= "exists" | numop (number | rhs-operand) | strop [blank modifier blank list]
//!             (value | rhs-operand) | listop (list | rhs-operand | identifier)
//! ```
//!
//! Errors carry the byte offset where parsing stopped.

use super::{
    ast::{
        CmpOp, Compare, Expr, FieldRef, Ident, Modifier, Operand, Rhs, Transform, TransformArg,
        Value,
    },
    lexer::Cursor,
};

/// Nesting (parentheses, transformers) deeper than this is refused: it bounds recursion on
/// hostile input, and no real rule comes close.
pub const MAX_DEPTH: usize = 100;

/// Transformers Falco knows (`val` aside, which only marks a field on the right).
pub const TRANSFORMERS: &[&str] = &[
    "tolower", "toupper", "b64", "basename", "len", "join", "concat", "getopt",
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Byte offset in the condition text.
    pub offset: usize,
    pub message: String,
}

/// Parses a whole condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser::new(text);
    if text.is_empty() {
        return Err(p.error("the condition is empty"));
    }
    let expr = p.or()?;
    if !p.c.at_end() {
        let token: String = p.c.rest().chars().take(24).collect();
        return Err(p.error(format!(
            "unexpected {token:?}: expected 'and', 'or' or the end of the condition"
        )));
    }
    Ok(expr)
}

/// Parses a field or transformer at the start of `text` (an output placeholder, an exception
/// field) and returns it with the number of bytes it used; `None` when `text` does not start
/// with one.
pub fn parse_operand_prefix(text: &str) -> Option<(Operand, usize)> {
    let mut p = Parser::new(text);
    let operand = p.operand().ok()??;
    Some((operand, p.c.pos()))
}

struct Parser<'a> {
    c: Cursor<'a>,
    depth: usize,
}

/// `(symbol, operator)` in the order Falco tries them.
const NUM_OPS: [(&str, CmpOp); 4] = [
    ("<=", CmpOp::Le),
    ("<", CmpOp::Lt),
    (">=", CmpOp::Ge),
    (">", CmpOp::Gt),
];
const SYMBOL_STR_OPS: [(&str, CmpOp); 3] = [("==", CmpOp::Eq), ("=", CmpOp::Eq), ("!=", CmpOp::Ne)];
/// Word operators, which need a blank after them.
const WORD_STR_OPS: [(&str, CmpOp); 9] = [
    ("glob", CmpOp::Glob),
    ("iglob", CmpOp::IGlob),
    ("contains", CmpOp::Contains),
    ("icontains", CmpOp::IContains),
    ("bcontains", CmpOp::BContains),
    ("startswith", CmpOp::StartsWith),
    ("bstartswith", CmpOp::BStartsWith),
    ("endswith", CmpOp::EndsWith),
    ("regex", CmpOp::Regex),
];
/// List operators, matched as prefixes (`in(` and even `inx` are `in`, as in Falco).
const LIST_OPS: [(&str, CmpOp); 3] = [
    ("intersects", CmpOp::Intersects),
    ("in", CmpOp::In),
    ("pmatch", CmpOp::Pmatch),
];

const OPERATORS: &str = "=, ==, !=, <, <=, >, >=, contains, icontains, bcontains, startswith, \
                         bstartswith, endswith, glob, iglob, regex, in, intersects, pmatch or exists";

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            c: Cursor::new(text),
            depth: 0,
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.c.pos(),
            message: message.into(),
        }
    }

    fn lex_error(&self, (offset, message): (usize, String)) -> ParseError {
        ParseError { offset, message }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        self.error(if self.c.at_end() {
            format!("expected {expected}; the condition ends here")
        } else {
            let token: String = self.c.rest().chars().take(24).collect();
            format!("expected {expected}, found {token:?}")
        })
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.chain("or", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.chain("and", Self::not, Expr::And)
    }

    /// `operand (keyword operand)*`; after the keyword comes a blank, or a parenthesized
    /// expression right away.
    fn chain(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, ParseError> {
        self.c.blank();
        let mut children = vec![operand(self)?];
        self.c.blank();
        while self.c.eat(keyword) {
            if self.c.blank() {
                children.push(operand(self)?);
            } else if self.c.eat("(") {
                children.push(self.parenthesized()?);
            } else {
                return Err(self.error(format!("expected a blank or '(' after '{keyword}'")));
            }
            self.c.blank();
        }
        Ok(match children.len() {
            1 => children.pop().unwrap_or(Expr::And(Vec::new())),
            _ => join(children),
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        self.c.blank();
        let mut negate = false;
        while self.c.not_space() {
            negate = !negate;
        }
        let child = if self.c.eat("not(") {
            negate = !negate;
            self.parenthesized()?
        } else {
            self.check()?
        };
        Ok(if negate {
            Expr::Not(Box::new(child))
        } else {
            child
        })
    }

    fn check(&mut self) -> Result<Expr, ParseError> {
        self.c.blank();
        if self.c.eat("(") {
            return self.parenthesized();
        }
        let at = self.c.pos();
        if let Some(lhs) = self.operand()? {
            return self.condition(lhs, at);
        }
        if let Some(name) = self.c.identifier() {
            return Ok(Expr::Macro(Ident {
                name: name.to_owned(),
                at,
            }));
        }
        Err(self.unexpected("a field check, a macro name or '('"))
    }

    /// After `(`: an expression and its `)`.
    fn parenthesized(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let expr = self.or()?;
        self.c.blank();
        if !self.c.eat(")") {
            return Err(self.unexpected("')'"));
        }
        self.leave();
        Ok(expr)
    }

    /// A field or a transformer, when the cursor is on one.
    fn operand(&mut self) -> Result<Option<Operand>, ParseError> {
        let at = self.c.pos();
        if let Some(name) = self.c.field_name() {
            return self.field_rest(name, at).map(|f| Some(Operand::Field(f)));
        }
        if let Some(name) = self.transformer_open() {
            return self
                .transform_rest(name, at)
                .map(|t| Some(Operand::Transform(t)));
        }
        Ok(None)
    }

    fn field_rest(&mut self, name: &str, at: usize) -> Result<FieldRef, ParseError> {
        Ok(FieldRef {
            name: name.to_owned(),
            arg: self.field_arg()?,
            at,
        })
    }

    /// `name(` for a known transformer (no blank before the parenthesis); consumes it.
    fn transformer_open(&mut self) -> Option<&'static str> {
        let name = TRANSFORMERS
            .iter()
            .find(|t| self.c.rest().starts_with(*t) && self.c.rest()[t.len()..].starts_with('('))?;
        self.c.advance(name.len() + 1);
        Some(name)
    }

    /// `[arg]`, where arg is a quoted string or a bare one.
    fn field_arg(&mut self) -> Result<Option<String>, ParseError> {
        if !self.c.eat("[") {
            return Ok(None);
        }
        let arg = match self.quoted()? {
            Some(q) => q,
            None => match self.c.field_arg_bare() {
                Some(s) => s.to_owned(),
                None => {
                    return Err(
                        self.error("expected a field argument (a quoted or bare string) after '['")
                    );
                }
            },
        };
        if !self.c.eat("]") {
            return Err(self.error("expected ']' closing the field argument"));
        }
        Ok(Some(arg))
    }

    /// After `name(`: the arguments, `)` and an optional `[arg]`.
    fn transform_rest(&mut self, name: &str, at: usize) -> Result<Transform, ParseError> {
        self.enter()?;
        let mut args = Vec::new();
        self.c.blank();
        loop {
            args.push(self.transform_arg()?);
            self.c.blank();
            if !self.c.eat(",") {
                break;
            }
        }
        self.c.blank();
        if !self.c.eat(")") {
            return Err(self.unexpected(&format!("')' closing {name}(")));
        }
        self.leave();
        Ok(Transform {
            name: name.to_owned(),
            args,
            arg: self.field_arg()?,
            at,
        })
    }

    /// A transformer argument: a number, a quoted string, a list, a transformer or a field.
    fn transform_arg(&mut self) -> Result<TransformArg, ParseError> {
        self.c.blank();
        let at = self.c.pos();
        if let Some(v) = self.literal()? {
            return Ok(TransformArg::Literal(v));
        }
        if self.c.eat("(") {
            return self.transform_list();
        }
        match self.operand()? {
            Some(op) => Ok(TransformArg::Operand(op)),
            None => Err(ParseError {
                offset: at,
                message: "expected a transformer argument: a field, a transformer, a quoted \
                          string, a number or a list"
                    .into(),
            }),
        }
    }

    /// After `(` inside a transformer: fields, transformers, quoted strings and numbers.
    fn transform_list(&mut self) -> Result<TransformArg, ParseError> {
        let mut items = Vec::new();
        self.c.blank();
        if self.c.eat(")") {
            return Ok(TransformArg::List(items));
        }
        loop {
            let at = self.c.pos();
            let item = match self.operand()? {
                Some(op) => TransformArg::Operand(op),
                None => match self.literal()? {
                    Some(v) => TransformArg::Literal(v),
                    None => {
                        return Err(ParseError {
                            offset: at,
                            message: "expected a list item: a field, a transformer, a quoted \
                                      string or a number"
                                .into(),
                        });
                    }
                },
            };
            items.push(item);
            self.c.blank();
            if !self.c.eat(",") {
                break;
            }
            self.c.blank();
        }
        if !self.c.eat(")") {
            return Err(self.unexpected("',' or ')' in the transformer list"));
        }
        Ok(TransformArg::List(items))
    }

    /// A number or a quoted string.
    fn literal(&mut self) -> Result<Option<Value>, ParseError> {
        let at = self.c.pos();
        if let Some(n) = self.c.number() {
            return Ok(Some(Value {
                text: n.to_owned(),
                quoted: false,
                at,
            }));
        }
        Ok(self.quoted()?.map(|text| Value {
            text,
            quoted: true,
            at,
        }))
    }

    fn quoted(&mut self) -> Result<Option<String>, ParseError> {
        self.c.quoted().map_err(|e| self.lex_error(e))
    }

    fn condition(&mut self, lhs: Operand, at: usize) -> Result<Expr, ParseError> {
        self.c.blank();
        // No blank needed after `exists` (`x existsand y` is `x exists and y` in Falco).
        if self.c.eat("exists") {
            return Ok(Expr::Exists(lhs));
        }
        self.c.blank();
        let compare = |op, modifier, rhs| {
            Expr::Compare(Compare {
                lhs,
                op,
                modifier,
                rhs,
                at,
            })
        };
        if let Some(&(_, op)) = NUM_OPS.iter().find(|(s, _)| self.c.eat(s)) {
            return Ok(compare(op, None, self.number_rhs()?));
        }
        let symbol = SYMBOL_STR_OPS.iter().find(|(s, _)| self.c.eat(s));
        let word = match symbol {
            Some(_) => None,
            None => WORD_STR_OPS.iter().find(|(s, _)| self.c.eat_word_blank(s)),
        };
        if let Some(&(_, op)) = symbol.or(word) {
            // Word operators consumed their blank; symbols need one before a modifier.
            let had_blank = word.is_some() || self.c.blank();
            if had_blank && let Some((modifier, rhs)) = self.modifier_rhs()? {
                return Ok(compare(op, Some(modifier), rhs));
            }
            return Ok(compare(op, None, self.string_rhs()?));
        }
        if let Some(&(_, op)) = LIST_OPS.iter().find(|(s, _)| self.c.eat(s)) {
            return Ok(compare(op, None, self.list_rhs()?));
        }
        Err(self.unexpected(&format!("an operator: {OPERATORS}")))
    }

    /// `oneof`/`anyof`/`allof`, a blank, then a list or a name (not `and`/`or`/`not`); the
    /// cursor is left alone when that is not what follows (`= oneof` compares with "oneof").
    fn modifier_rhs(&mut self) -> Result<Option<(Modifier, Rhs)>, ParseError> {
        let start = self.c.pos();
        for word in ["oneof", "anyof", "allof"] {
            if self.c.eat_word_blank(word) {
                let list_follows = self.c.peek() == Some(b'(') || self.c.at_identifier();
                if list_follows && !self.c.bool_keyword_follows() {
                    let modifier = Modifier::from_name(word).unwrap_or(Modifier::AnyOf);
                    let rhs = match self.list()? {
                        Some(list) => list,
                        None => self.list_name()?,
                    };
                    return Ok(Some((modifier, rhs)));
                }
                self.c.set_pos(start);
            }
        }
        Ok(None)
    }

    /// `val(field)` or a transformer on the right-hand side.
    fn rhs_operand(&mut self) -> Result<Option<Rhs>, ParseError> {
        let at = self.c.pos();
        if self.c.eat("val(") {
            self.enter()?;
            self.c.blank();
            let field_at = self.c.pos();
            let Some(name) = self.c.field_name() else {
                return Err(self.error("expected a field inside val()"));
            };
            let field = self.field_rest(name, field_at)?;
            self.c.blank();
            if !self.c.eat(")") {
                return Err(self.unexpected("')' closing val("));
            }
            self.leave();
            return Ok(Some(Rhs::Operand(Operand::Transform(Transform {
                name: "val".into(),
                args: vec![TransformArg::Operand(Operand::Field(field))],
                arg: self.field_arg()?,
                at,
            }))));
        }
        if let Some(name) = self.transformer_open() {
            self.c.blank();
            return self
                .transform_rest(name, at)
                .map(|t| Some(Rhs::Operand(Operand::Transform(t))));
        }
        Ok(None)
    }

    fn number_rhs(&mut self) -> Result<Rhs, ParseError> {
        self.c.blank();
        if let Some(rhs) = self.rhs_operand()? {
            return Ok(rhs);
        }
        let at = self.c.pos();
        match self.c.number() {
            Some(n) => Ok(Rhs::Value(Value {
                text: n.to_owned(),
                quoted: false,
                at,
            })),
            None => Err(self.unexpected("a number or a field with a transformer")),
        }
    }

    fn string_rhs(&mut self) -> Result<Rhs, ParseError> {
        self.c.blank();
        if let Some(rhs) = self.rhs_operand()? {
            return Ok(rhs);
        }
        match self.value()? {
            Some(v) => Ok(Rhs::Value(v)),
            None => Err(self.unexpected("a value (a bare or quoted string)")),
        }
    }

    fn list_rhs(&mut self) -> Result<Rhs, ParseError> {
        self.c.blank();
        if let Some(list) = self.list()? {
            return Ok(list);
        }
        if let Some(rhs) = self.rhs_operand()? {
            return Ok(rhs);
        }
        self.list_name()
    }

    fn list_name(&mut self) -> Result<Rhs, ParseError> {
        let at = self.c.pos();
        match self.c.identifier() {
            Some(name) => Ok(Rhs::ListRef(Ident {
                name: name.to_owned(),
                at,
            })),
            None => Err(self.unexpected("a list: '(a, b, ...)' or a name")),
        }
    }

    /// `(a, "b c", d)` of bare or quoted strings; `()` is an empty list.
    fn list(&mut self) -> Result<Option<Rhs>, ParseError> {
        if !self.c.eat("(") {
            return Ok(None);
        }
        let mut items = Vec::new();
        self.c.blank();
        // As in Falco, a first item that does not parse means the list must be empty.
        if let Ok(Some(first)) = self.value() {
            items.push(first);
            self.c.blank();
            while self.c.eat(",") {
                self.c.blank();
                match self.value()? {
                    Some(v) => items.push(v),
                    None => return Err(self.unexpected("a list item (a bare or quoted string)")),
                }
                self.c.blank();
            }
        }
        if !self.c.eat(")") {
            return Err(self.unexpected("',' or ')' in the list"));
        }
        Ok(Some(Rhs::List(items)))
    }

    /// A quoted or bare string.
    fn value(&mut self) -> Result<Option<Value>, ParseError> {
        let at = self.c.pos();
        if let Some(q) = self.quoted()? {
            return Ok(Some(Value {
                text: q,
                quoted: true,
                at,
            }));
        }
        Ok(self.c.bare_str().map(|s| Value {
            text: s.to_owned(),
            quoted: false,
            at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, at: usize) -> Operand {
        Operand::Field(FieldRef {
            name: name.into(),
            arg: None,
            at,
        })
    }

    fn bare(text: &str, at: usize) -> Value {
        Value {
            text: text.into(),
            quoted: false,
            at,
        }
    }

    #[test]
    fn precedence_and_macros() {
        let e = parse("a or b and not c").unwrap();
        let Expr::Or(children) = e else {
            panic!("{e:?}")
        };
        assert_eq!(children.len(), 2);
        assert!(matches!(&children[1], Expr::And(v) if matches!(&v[1], Expr::Not(_))));
    }

    #[test]
    fn comparisons_without_blanks() {
        let e = parse("proc.name=bash").unwrap();
        assert_eq!(
            e,
            Expr::Compare(Compare {
                lhs: field("proc.name", 0),
                op: CmpOp::Eq,
                modifier: None,
                rhs: Rhs::Value(bare("bash", 10)),
                at: 0,
            })
        );
        assert!(matches!(parse("proc.tty!=0").unwrap(), Expr::Compare(c) if c.op == CmpOp::Ne));
        assert!(
            matches!(parse("evt.type in(execve,execveat)").unwrap(), Expr::Compare(c) if matches!(&c.rhs, Rhs::List(v) if v.len() == 2))
        );
    }

    #[test]
    fn falco_shapes() {
        for text in [
            "(not proc.pname exists or proc.pname in (runc:[0:PARENT], runc:[1:CHILD], runc))",
            "proc.aname[2]=qualys-cloud-ag",
            "k8s.pod.label[app] = juice-shop",
            "k8s.pod.label['app.kubernetes.io/name'] startswith juice",
            "proc.cmdline contains \"sh -c\" and proc.args icontains 'BEGIN RSA'",
            "fd.name glob '/home/*/.ssh/*'",
            "tolower(proc.name) = bash",
            "len(proc.args) > 100",
            "proc.name = val(proc.pname)",
            "proc.name startswith oneof (ba, da)",
            "proc.name == oneof my_list",
            "proc.name in shell_binaries",
            "not(proc.name=bash)",
            "proc.name in ()",
            "x and(y)",
            "join(\"-\", (proc.name, \"x\")) = a-x",
            "getopt(proc.args, \"nt:\")[t] = value",
            "test.op existsand macro",
        ] {
            if let Err(e) = parse(text) {
                panic!("{text}: {e} at {}", e.offset);
            }
        }
    }

    #[test]
    fn modifiers_need_blanks_and_a_list() {
        let modifier = |text: &str| match parse(text) {
            Ok(Expr::Compare(c)) => c.modifier,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(modifier("proc.name == oneof (a, b)"), Some(Modifier::OneOf));
        assert_eq!(modifier("proc.name != allof names"), Some(Modifier::AllOf));
        assert_eq!(modifier("proc.name == oneof"), None, "the value 'oneof'");
        assert!(matches!(
            parse("proc.name == anyof and x"),
            Ok(Expr::And(_))
        ));
        for bad in [
            "proc.name ==oneof (a)",
            "proc.name == oneof(a)",
            "proc.name contains oneof(a)",
            "proc.name in oneof (a)",
            "proc.name == ONEOF (a)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse("proc.name = bash and").unwrap_err();
        assert_eq!(e.offset, 20);
        let e = parse("proc.name bash").unwrap_err();
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("operator"));
        let e = parse("(proc.name = bash").unwrap_err();
        assert!(e.message.contains("')'"), "{e}");
        let e = parse("proc.name = bash xyz").unwrap_err();
        assert_eq!(e.offset, 17);
        let e = parse("proc.tty > zero").unwrap_err();
        assert!(e.message.contains("number"));
        assert!(parse("   ").is_err());
        assert!(parse("proc.name in (a,,b)").is_err());
        assert!(parse("a order").is_err());
        assert!(parse("a or(b) and c").is_err(), "as in Falco");
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nesting"));
        let deep = format!("{}proc.name{}", "tolower(".repeat(500), ")".repeat(500));
        assert!(parse(&format!("{deep} = a")).is_err());
    }

    #[test]
    fn operand_prefix_for_outputs() {
        let (op, used) = parse_operand_prefix("proc.aname[2] rest").unwrap();
        assert_eq!(used, 13);
        assert!(matches!(op, Operand::Field(f) if f.arg.as_deref() == Some("2")));
        assert!(parse_operand_prefix("plain text").is_none());
    }
}
