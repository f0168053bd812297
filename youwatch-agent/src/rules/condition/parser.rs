//! Recursive-descent parser for Falco conditions:
//!
//! ```text
//! or      := and ( "or" and )*
//! and     := not ( "and" not )*
//! not     := "not"* check | "not(" or ")"
//! check   := "(" or ")" | operand cmp | identifier
//! operand := field ( "[" arg "]" )? | transformer "(" targs ")"
//! cmp     := "exists" | numop number | strop [modifier] value | listop list
//! ```
//!
//! Operators and token shapes follow Falco's (libsinsp `filter/parser`), so rule files written
//! for Falco parse the same way. Errors carry the byte offset where parsing stopped.

use super::{
    ast::{
        CmpOp, Compare, Expr, FieldRef, Ident, Modifier, Operand, Rhs, Transform, TransformArg,
        Value,
    },
    lexer::{Cursor, is_ident_byte},
};

/// Nesting (parentheses, transformers) deeper than this is refused: it bounds recursion on
/// hostile input, and no real rule comes close.
pub const MAX_DEPTH: usize = 100;

/// Transformers Falco knows; those the agent cannot evaluate are refused when compiling.
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
    let mut p = Parser {
        c: Cursor::new(text),
        depth: 0,
    };
    p.c.blank();
    if p.c.at_end() {
        return Err(p.error("the condition is empty"));
    }
    let expr = p.or()?;
    p.c.blank();
    if !p.c.at_end() {
        let token: String = p.c.rest().chars().take(24).collect();
        return Err(p.error(format!(
            "unexpected {token:?}: expected 'and', 'or' or the end of the condition"
        )));
    }
    Ok(expr)
}

/// Parses one inline list, `(a, "b c", d)`, as written in exception values.
pub fn parse_list(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut p = Parser {
        c: Cursor::new(text),
        depth: 0,
    };
    p.c.blank();
    if !p.c.eat("(") {
        return Err(p.error("expected '('"));
    }
    let items = p.list_rest()?;
    p.c.blank();
    if !p.c.at_end() {
        return Err(p.error("unexpected text after the list"));
    }
    Ok(items)
}

/// Parses a field or transformer at the start of `text` (an output placeholder) and returns
/// it with the number of bytes it used; `None` when `text` does not start with one.
pub fn parse_operand_prefix(text: &str) -> Option<(Operand, usize)> {
    let mut p = Parser {
        c: Cursor::new(text),
        depth: 0,
    };
    let operand = p.operand().ok()??;
    Some((operand, p.c.pos()))
}

struct Parser<'a> {
    c: Cursor<'a>,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.c.pos(),
            message: message.into(),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.chain("or", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.chain("and", Self::not, Expr::And)
    }

    /// `operand (keyword operand)*`; one operand stands alone.
    fn chain(
        &mut self,
        keyword: &str,
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Result<Expr, ParseError> {
        let mut children = vec![operand(self)?];
        loop {
            self.c.blank();
            if !self.c.keyword(keyword, b"(") {
                break;
            }
            self.c.blank();
            children.push(operand(self)?);
        }
        Ok(match children.len() {
            1 => children.pop().unwrap_or(Expr::And(Vec::new())),
            _ => join(children),
        })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        let mut negate = false;
        loop {
            self.c.blank();
            if self.c.keyword("not", b"(") {
                negate = !negate;
            } else {
                break;
            }
        }
        let child = self.check()?;
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
            return self.comparison(lhs, at);
        }
        if let Some(name) = self.c.identifier() {
            return Ok(Expr::Macro(Ident {
                name: name.to_owned(),
                at,
            }));
        }
        Err(self.error(if self.c.at_end() {
            "the condition ends too early: expected a field check, a macro name or '('".to_owned()
        } else {
            let token: String = self.c.rest().chars().take(24).collect();
            format!("unexpected {token:?}: expected a field check, a macro name or '('")
        }))
    }

    /// After `(`: an expression and its `)`.
    fn parenthesized(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let expr = self.or()?;
        self.c.blank();
        if !self.c.eat(")") {
            return Err(self.error("expected ')'"));
        }
        self.depth -= 1;
        Ok(expr)
    }

    /// A field or a transformer, when the cursor is on one.
    fn operand(&mut self) -> Result<Option<Operand>, ParseError> {
        let at = self.c.pos();
        if let Some(name) = self.transformer_open() {
            return self
                .transform_rest(name, at)
                .map(|t| Some(Operand::Transform(t)));
        }
        if let Some(name) = self.c.field_name() {
            let arg = self.field_arg()?;
            return Ok(Some(Operand::Field(FieldRef {
                name: name.to_owned(),
                arg,
                at,
            })));
        }
        Ok(None)
    }

    /// `name(` for a known transformer; consumes it.
    fn transformer_open(&mut self) -> Option<String> {
        let start = self.c.pos();
        let name = self.c.identifier()?;
        if TRANSFORMERS.contains(&name) && self.c.eat("(") {
            return Some(name.to_owned());
        }
        self.c.set_pos(start);
        None
    }

    fn field_arg(&mut self) -> Result<Option<String>, ParseError> {
        if !self.c.eat("[") {
            return Ok(None);
        }
        let arg = match self
            .c
            .quoted()
            .map_err(|(offset, message)| ParseError { offset, message })?
        {
            Some(q) => q,
            None => match self.c.field_arg_bare() {
                Some(s) => s.to_owned(),
                None => {
                    return Err(
                        self.error("expected a field argument (a bare or quoted string) after '['")
                    );
                }
            },
        };
        if !self.c.eat("]") {
            return Err(self.error("expected ']' closing the field argument"));
        }
        Ok(Some(arg))
    }

    /// After `name(`: the arguments and `)`.
    fn transform_rest(&mut self, name: String, at: usize) -> Result<Transform, ParseError> {
        self.enter()?;
        let mut args = Vec::new();
        loop {
            self.c.blank();
            args.push(self.transform_arg()?);
            self.c.blank();
            if !self.c.eat(",") {
                break;
            }
        }
        if !self.c.eat(")") {
            return Err(self.error(format!("expected ')' closing {name}(")));
        }
        self.depth -= 1;
        // Falco accepts an argument after a transformer (`getopt(proc.args)[x]`); keep it
        // as a trailing field argument so the compiler can refuse it by name.
        if let Some(index) = self.field_arg()? {
            args.push(TransformArg::Literal(Value {
                text: index,
                quoted: true,
                at: self.c.pos(),
            }));
        }
        Ok(Transform { name, args, at })
    }

    fn transform_arg(&mut self) -> Result<TransformArg, ParseError> {
        let at = self.c.pos();
        if let Some(n) = self.c.number() {
            return Ok(TransformArg::Literal(Value {
                text: n.to_owned(),
                quoted: false,
                at,
            }));
        }
        if let Some(q) = self.quoted()? {
            return Ok(TransformArg::Literal(Value {
                text: q,
                quoted: true,
                at,
            }));
        }
        if self.c.eat("(") {
            self.enter()?;
            let mut items = Vec::new();
            self.c.blank();
            if !self.c.eat(")") {
                loop {
                    self.c.blank();
                    items.push(self.transform_arg()?);
                    self.c.blank();
                    if self.c.eat(")") {
                        break;
                    }
                    if !self.c.eat(",") {
                        return Err(self.error("expected ',' or ')' in the transformer list"));
                    }
                }
            }
            self.depth -= 1;
            return Ok(TransformArg::List(items));
        }
        match self.operand()? {
            Some(op) => Ok(TransformArg::Operand(op)),
            None => Err(self.error(
                "expected a transformer argument: a field, a transformer, a quoted string, a number or a list",
            )),
        }
    }

    fn quoted(&mut self) -> Result<Option<String>, ParseError> {
        self.c
            .quoted()
            .map_err(|(offset, message)| ParseError { offset, message })
    }

    fn comparison(&mut self, lhs: Operand, at: usize) -> Result<Expr, ParseError> {
        self.c.blank();
        let word = self.c.peek_word();
        if word == "exists" {
            self.c.advance(word.len());
            return Ok(Expr::Exists(lhs));
        }
        let (op, kind) = match self.operator() {
            Some(found) => found,
            None => {
                return Err(self.error(
                    "expected an operator: =, ==, !=, <, <=, >, >=, contains, icontains, bcontains, \
                     startswith, bstartswith, endswith, glob, iglob, regex, in, intersects, pmatch or exists",
                ));
            }
        };
        self.c.blank();
        let mut modifier = None;
        let rhs = match kind {
            OpKind::Number => self.number_rhs()?,
            OpKind::List => self.list_rhs()?,
            OpKind::String => {
                modifier = self.modifier();
                if modifier.is_some() {
                    self.c.eat("(");
                    Rhs::List(self.list_rest()?)
                } else {
                    self.string_rhs()?
                }
            }
        };
        Ok(Expr::Compare(Compare {
            lhs,
            op,
            modifier,
            rhs,
            at,
        }))
    }

    fn operator(&mut self) -> Option<(CmpOp, OpKind)> {
        for (sym, op, kind) in [
            ("==", CmpOp::Eq, OpKind::String),
            ("!=", CmpOp::Ne, OpKind::String),
            ("<=", CmpOp::Le, OpKind::Number),
            (">=", CmpOp::Ge, OpKind::Number),
            ("=", CmpOp::Eq, OpKind::String),
            ("<", CmpOp::Lt, OpKind::Number),
            (">", CmpOp::Gt, OpKind::Number),
        ] {
            if self.c.eat(sym) {
                return Some((op, kind));
            }
        }
        let word = self.c.peek_word();
        let op = CmpOp::from_name(word)?;
        let kind = if op.takes_list() {
            // `in(` is fine; `inx` is not an operator.
            if self.c.rest()[word.len()..]
                .bytes()
                .next()
                .is_some_and(is_ident_byte)
            {
                return None;
            }
            OpKind::List
        } else {
            // Word operators need a blank after them (`contains x`, not `containsx`).
            if !self.c.keyword(word, b"") {
                return None;
            }
            return Some((op, OpKind::String));
        };
        self.c.advance(word.len());
        Some((op, kind))
    }

    /// `oneof` / `anyof` / `allof` followed by a list.
    fn modifier(&mut self) -> Option<Modifier> {
        let start = self.c.pos();
        let word = self.c.peek_word();
        let modifier = match word {
            "oneof" | "anyof" => Modifier::Any,
            "allof" => Modifier::All,
            _ => return None,
        };
        self.c.advance(word.len());
        self.c.blank();
        if self.c.peek() == Some(b'(') {
            Some(modifier)
        } else {
            // A bare value that happens to be spelled `oneof`.
            self.c.set_pos(start);
            None
        }
    }

    /// `val(field)` or a transformer on the right-hand side.
    fn rhs_operand(&mut self) -> Result<Option<Rhs>, ParseError> {
        let start = self.c.pos();
        if self.c.eat("val(") {
            self.enter()?;
            self.c.blank();
            let at = self.c.pos();
            let Some(name) = self.c.field_name() else {
                return Err(self.error("expected a field inside val()"));
            };
            let arg = self.field_arg()?;
            self.c.blank();
            if !self.c.eat(")") {
                return Err(self.error("expected ')' closing val("));
            }
            self.depth -= 1;
            return Ok(Some(Rhs::Operand(Operand::Field(FieldRef {
                name: name.to_owned(),
                arg,
                at,
            }))));
        }
        if let Some(name) = self.transformer_open() {
            return self
                .transform_rest(name, start)
                .map(|t| Some(Rhs::Operand(Operand::Transform(t))));
        }
        Ok(None)
    }

    fn number_rhs(&mut self) -> Result<Rhs, ParseError> {
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
            None => Err(self.error("expected a number")),
        }
    }

    fn string_rhs(&mut self) -> Result<Rhs, ParseError> {
        if let Some(rhs) = self.rhs_operand()? {
            return Ok(rhs);
        }
        match self.value()? {
            Some(v) => Ok(Rhs::Value(v)),
            None => Err(self.error("expected a value (a bare or quoted string)")),
        }
    }

    fn list_rhs(&mut self) -> Result<Rhs, ParseError> {
        if self.c.eat("(") {
            return Ok(Rhs::List(self.list_rest()?));
        }
        if let Some(rhs) = self.rhs_operand()? {
            return Ok(rhs);
        }
        let at = self.c.pos();
        match self.c.identifier() {
            Some(name) => Ok(Rhs::ListRef(Ident {
                name: name.to_owned(),
                at,
            })),
            None => Err(self.error("expected a list: '(a, b, ...)' or a list name")),
        }
    }

    /// After `(`: comma-separated values and `)`. `()` is an empty list.
    fn list_rest(&mut self) -> Result<Vec<Value>, ParseError> {
        let mut items = Vec::new();
        self.c.blank();
        if self.c.eat(")") {
            return Ok(items);
        }
        loop {
            self.c.blank();
            match self.value()? {
                Some(v) => items.push(v),
                None => return Err(self.error("expected a list item (a bare or quoted string)")),
            }
            self.c.blank();
            if self.c.eat(")") {
                return Ok(items);
            }
            if !self.c.eat(",") {
                return Err(self.error("expected ',' or ')' in the list"));
            }
        }
    }

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

#[derive(Clone, Copy)]
enum OpKind {
    Number,
    String,
    List,
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
            "evt.arg.flags contains \"O_TRUNC\"",
            "tolower(proc.name) = bash",
            "len(proc.args) > 100",
            "proc.name = val(proc.pname)",
            "proc.name startswith oneof (ba, da)",
            "proc.name in shell_binaries",
            "not(proc.name=bash)",
            "proc.name in ()",
            "fd.sip.name=\"kubernetes.default.svc.cluster.local\"",
            "evt.rawres >= 0 or evt.res = EINPROGRESS",
            "x and(y)",
        ] {
            if let Err(e) = parse(text) {
                panic!("{text}: {e} at {}", e.offset);
            }
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
    fn list_parsing() {
        assert_eq!(
            parse_list("(a, \"b c\")").unwrap(),
            vec![
                bare("a", 1),
                Value {
                    text: "b c".into(),
                    quoted: true,
                    at: 4
                }
            ]
        );
    }

    #[test]
    fn operand_prefix_for_outputs() {
        let (op, used) = parse_operand_prefix("proc.aname[2] rest").unwrap();
        assert_eq!(used, 13);
        assert!(matches!(op, Operand::Field(f) if f.arg.as_deref() == Some("2")));
        assert!(parse_operand_prefix("plain text").is_none());
    }
}
