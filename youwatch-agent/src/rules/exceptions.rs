//! Rule exceptions → conditions, expanded as Falco expands them: a rule's condition becomes
//! `(condition) and not (exception 1) and not (exception 2)...`, where an exception with a
//! list of fields is `(f1 c1 v1 and f2 c2 v2) or (...)` over its values and one with a single
//! field is `f c (v1, v2...)` (`c` defaults to `in`, list comps to `=`).

use super::{
    collect::ExceptionDef,
    condition::{
        self,
        ast::{CmpOp, Compare, Expr, FieldRef, Modifier, Operand, Rhs, Value},
    },
    diagnostics::LoadError,
    document::{Kind, Node},
};

/// The condition excluding what the exception describes; `None` when it has no values.
pub fn to_expr(ex: &ExceptionDef, what: &str) -> Result<Option<Expr>, LoadError> {
    let err = |pos: &super::source::Pos, m: String| {
        LoadError::invalid(pos, what, format!("exception {:?}: {m}", ex.name))
    };
    let Some(fields) = &ex.fields else {
        return Err(err(&ex.pos, "has no 'fields'".into()));
    };
    if ex.values.is_empty() {
        return Ok(None);
    }
    match &fields.kind {
        Kind::Seq(field_nodes) => {
            let fields: Vec<FieldRef> = field_nodes
                .iter()
                .map(|f| field_ref(f).map_err(|m| err(&f.pos, m)))
                .collect::<Result<_, _>>()?;
            let comps: Vec<(CmpOp, Option<Modifier>)> = match &ex.comps {
                None => vec![(CmpOp::Eq, None); fields.len()],
                Some(Node {
                    kind: Kind::Seq(c), ..
                }) => c
                    .iter()
                    .map(|n| comp(n).map_err(|m| err(&n.pos, m)))
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(err(
                        &other.pos,
                        "'comps' must be a list as long as 'fields' when 'fields' is a list".into(),
                    ));
                }
            };
            if comps.len() != fields.len() {
                return Err(err(
                    &ex.pos,
                    format!(
                        "{} fields but {} comps: they must pair up",
                        fields.len(),
                        comps.len()
                    ),
                ));
            }
            let mut alternatives = Vec::new();
            for value in &ex.values {
                let Kind::Seq(entries) = &value.kind else {
                    return Err(err(
                        &value.pos,
                        "each value must be a list with one entry per field".into(),
                    ));
                };
                if entries.len() != fields.len() {
                    return Err(err(
                        &value.pos,
                        format!(
                            "a value has {} entries for {} fields",
                            entries.len(),
                            fields.len()
                        ),
                    ));
                }
                let mut checks = Vec::new();
                for ((field, (op, modifier)), entry) in fields.iter().zip(&comps).zip(entries) {
                    let rhs = entry_rhs(entry, *op, modifier.is_some())
                        .map_err(|m| err(&entry.pos, m))?;
                    checks.push(compare(field.clone(), *op, *modifier, rhs));
                }
                alternatives.push(Expr::And(checks));
            }
            Ok(Some(Expr::Or(alternatives)))
        }
        _ => {
            let field = field_ref(fields).map_err(|m| err(&fields.pos, m))?;
            let (op, modifier) = match &ex.comps {
                None => (CmpOp::In, None),
                Some(c) => comp(c).map_err(|m| err(&c.pos, m))?,
            };
            if !op.takes_list() && modifier.is_none() {
                return Err(err(
                    &ex.pos,
                    format!(
                        "with a single field, comps must be in, pmatch, intersects or a oneof/allof operator, not '{op}'"
                    ),
                ));
            }
            let values = ex
                .values
                .iter()
                .map(|v| {
                    v.as_text().map(|t| value(&t)).ok_or_else(|| {
                        err(
                            &v.pos,
                            "values must be strings when 'fields' is one field".into(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(compare(field, op, modifier, Rhs::List(values))))
        }
    }
}

fn compare(field: FieldRef, op: CmpOp, modifier: Option<Modifier>, rhs: Rhs) -> Expr {
    Expr::Compare(Compare {
        lhs: Operand::Field(field),
        op,
        modifier,
        rhs,
        at: 0,
    })
}

fn field_ref(node: &Node) -> Result<FieldRef, String> {
    let text = node.as_text().unwrap_or_default();
    match condition::parse_operand_prefix(&text) {
        Some((Operand::Field(f), used)) if used == text.len() => Ok(f),
        _ => Err(format!("{text:?} is not a field name such as proc.name")),
    }
}

/// `in`, `=`, `startswith oneof`...
fn comp(node: &Node) -> Result<(CmpOp, Option<Modifier>), String> {
    let text = node.as_text().unwrap_or_default();
    let mut words = text.split_whitespace();
    let op = words
        .next()
        .and_then(CmpOp::from_name)
        .ok_or_else(|| format!("{text:?} is not a comparison operator"))?;
    let modifier = match words.next() {
        None => None,
        Some("oneof" | "anyof") => Some(Modifier::Any),
        Some("allof") => Some(Modifier::All),
        Some(other) => return Err(format!("{other:?} is not oneof, anyof or allof")),
    };
    Ok((op, modifier))
}

/// One value entry: a list, or a string (parenthesized for list operators, as Falco does).
fn entry_rhs(entry: &Node, op: CmpOp, with_modifier: bool) -> Result<Rhs, String> {
    if let Kind::Seq(items) = &entry.kind {
        let values = items
            .iter()
            .map(|i| {
                i.as_text()
                    .map(|t| value(&t))
                    .ok_or("list entries must be strings")
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Rhs::List(values));
    }
    let text = entry
        .as_text()
        .ok_or("value entries must be strings or lists of strings")?;
    if op.takes_list() || with_modifier {
        if text.trim_start().starts_with('(') {
            return condition::parse_list(&text)
                .map(Rhs::List)
                .map_err(|e| format!("{text:?}: {}", e.message));
        }
        return Ok(Rhs::List(vec![value(&text)]));
    }
    Ok(Rhs::Value(value(&text)))
}

/// A value as Falco reads it: already quoted → unquoted (and never a list name); containing a
/// blank → taken literally; otherwise bare (a list name expands).
fn value(text: &str) -> Value {
    let bytes = text.as_bytes();
    if bytes.len() >= 2
        && matches!(bytes[0], b'"' | b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
        && let Ok(mut items) = condition::parse_list(&format!("({text})"))
        && items.len() == 1
    {
        let mut v = items.remove(0);
        v.at = 0;
        return v;
    }
    Value {
        text: text.to_owned(),
        quoted: text.contains(char::is_whitespace),
        at: 0,
    }
}

/// Unquotes a list item as written in a `list:` (`'"75-system-updat"'` → `75-system-updat`).
pub fn list_item(text: &str) -> String {
    value(text).text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{document, source::SourceFile};

    fn exception(yaml: &str) -> ExceptionDef {
        let f = SourceFile::new("e.yaml", yaml.to_owned());
        let items = document::parse(&f).unwrap();
        let n = &items[0];
        ExceptionDef {
            name: "e".into(),
            fields: n.get("fields").cloned(),
            comps: n.get("comps").cloned(),
            values: match n.get("values").map(|v| &v.kind) {
                Some(Kind::Seq(v)) => v.clone(),
                _ => Vec::new(),
            },
            pos: n.pos.clone(),
        }
    }

    #[test]
    fn list_fields_become_alternatives() {
        let ex = exception(
            "- fields: [proc.name, proc.pname]\n  comps: [=, in]\n  values: [[bash, [sshd, login]], [sh, shells]]\n",
        );
        let Some(Expr::Or(alts)) = to_expr(&ex, "rule").unwrap() else {
            panic!()
        };
        assert_eq!(alts.len(), 2);
        let Expr::And(checks) = &alts[1] else {
            panic!()
        };
        let Expr::Compare(c) = &checks[1] else {
            panic!()
        };
        assert!(
            matches!(&c.rhs, Rhs::List(v) if v.len() == 1 && v[0].text == "shells" && !v[0].quoted)
        );
    }

    #[test]
    fn single_field_defaults_to_in() {
        let ex =
            exception("- fields: container.image.repository\n  values: [docker.io/a, '\"b c\"']\n");
        let Some(Expr::Compare(c)) = to_expr(&ex, "rule").unwrap() else {
            panic!()
        };
        assert_eq!(c.op, CmpOp::In);
        let Rhs::List(v) = &c.rhs else { panic!() };
        assert_eq!(v[1].text, "b c");
    }

    #[test]
    fn mismatches_are_errors() {
        let ex = exception("- fields: [proc.name, proc.pname]\n  values: [[bash]]\n");
        assert!(
            to_expr(&ex, "rule")
                .unwrap_err()
                .to_string()
                .contains("entries for 2 fields")
        );
        let ex = exception("- fields: proc.name\n  comps: '='\n  values: [a]\n");
        assert!(to_expr(&ex, "rule").is_err());
        let ex = exception("- fields: [not a field]\n  values: [[a]]\n");
        assert!(to_expr(&ex, "rule").is_err());
        let ex = exception("- fields: [proc.name]\n");
        assert!(to_expr(&ex, "rule").unwrap().is_none());
    }

    #[test]
    fn list_items_unquote() {
        assert_eq!(
            list_item("'\"75-system-updat\"'".trim_matches('\'')),
            "75-system-updat"
        );
        assert_eq!(
            list_item("\"sh -c node -e \\\"require('nan')\\\"\""),
            "sh -c node -e \"require('nan')\""
        );
        assert_eq!(list_item("runc:[0:PARENT]"), "runc:[0:PARENT]");
    }
}
