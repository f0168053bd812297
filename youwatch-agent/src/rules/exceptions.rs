//! Rule exceptions → condition text, built as Falco builds it
//! (`rule_loader_compiler.cpp`, `build_rule_exception_infos`): the rule's condition becomes
//! `(condition) and not (exception 1) and not (exception 2)...`, where an exception with a
//! list of fields is `((f1 c1 v1 and f2 c2 v2) or (...))` over its values and one with a
//! single field is `(f c (v1, v2...))` (`c` defaults to `in`, list comps to `=`). Values are
//! written into the text (quoted when they hold a blank, parenthesized for list operators)
//! and parsed with the condition, so `toupper(proc.pname)` as a value compares with that
//! field, as in Falco.

use super::{
    collector::ExceptionDef,
    condition::{
        self,
        ast::{CmpOp, Modifier},
    },
    diagnostics::LoadError,
    document::{Kind, Node},
    lists::quote_item,
    source::Pos,
};

/// An exception's text to append to the condition (`" and not (...)"`), or `None` when it
/// has no values.
pub fn condition_text(ex: &ExceptionDef, what: &str) -> Result<Option<String>, LoadError> {
    let err = |pos: &Pos, m: String| {
        LoadError::invalid(pos, what, format!("exception {:?}: {m}", ex.name))
    };
    let Some(fields_node) = &ex.fields else {
        return Err(err(&ex.pos, "has no 'fields'".into()));
    };
    let fields = entry(fields_node).map_err(|m| err(&fields_node.pos, m))?;
    let comps = ex
        .comps
        .as_ref()
        .map(|c| entry(c).map_err(|m| err(&c.pos, m)))
        .transpose()?;
    let values = ex
        .values
        .iter()
        .map(|v| entry(v).map_err(|m| err(&v.pos, m)))
        .collect::<Result<Vec<_>, _>>()?;
    let text = match fields {
        Entry::Item(field) => {
            check_field(&field).map_err(|m| err(&fields_node.pos, m))?;
            let comp = match comps {
                None => "in".to_owned(),
                Some(Entry::Item(c)) => c.trim().to_owned(),
                Some(Entry::List(_)) => {
                    return Err(err(&ex.pos, "fields and comps must both be strings".into()));
                }
            };
            if !matches!(comp.as_str(), "in" | "pmatch" | "intersects")
                && !is_operator_with_modifier(&comp)
            {
                return Err(err(
                    &ex.pos,
                    format!(
                        "with a single field, comps must be in, pmatch, intersects or an operator \
                         with a modifier (e.g. startswith oneof), not {comp:?}"
                    ),
                ));
            }
            let mut items = Vec::with_capacity(values.len());
            for (v, node) in values.iter().zip(&ex.values) {
                match v {
                    Entry::Item(v) => items.push(quote_item(v)),
                    Entry::List(_) => {
                        return Err(err(
                            &node.pos,
                            "values must be strings when 'fields' is one field".into(),
                        ));
                    }
                }
            }
            if items.is_empty() {
                return Ok(None);
            }
            format!("({field} {comp} ({}))", items.join(", "))
        }
        Entry::List(fields) => {
            let fields = fields
                .into_iter()
                .map(|f| match f {
                    Entry::Item(f) => check_field(&f).map(|()| f),
                    Entry::List(_) => Err("each field must be a string".into()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| err(&fields_node.pos, m))?;
            let comps: Vec<String> = match comps {
                None => vec!["=".to_owned(); fields.len()],
                Some(Entry::List(c)) => c
                    .into_iter()
                    .map(|c| match c {
                        Entry::Item(c) => Ok(c.trim().to_owned()),
                        Entry::List(_) => Err(err(&ex.pos, "each comp must be a string".into())),
                    })
                    .collect::<Result<_, _>>()?,
                Some(Entry::Item(_)) => {
                    return Err(err(
                        &ex.pos,
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
            for c in &comps {
                if CmpOp::from_name(c).is_none() && c != "exists" && !is_operator_with_modifier(c) {
                    return Err(err(
                        &ex.pos,
                        format!("{c:?} is not a supported comparison operator"),
                    ));
                }
            }
            let mut alternatives = Vec::with_capacity(values.len());
            for (value, node) in values.iter().zip(&ex.values) {
                let entries: &[Entry] = match value {
                    Entry::List(e) => e,
                    Entry::Item(_) => &[],
                };
                if entries.len() != fields.len() {
                    return Err(err(
                        &node.pos,
                        format!(
                            "a value has {} entries for {} fields: each value must be a list with one entry per field",
                            entries.len(),
                            fields.len()
                        ),
                    ));
                }
                let checks: Vec<String> = fields
                    .iter()
                    .zip(&comps)
                    .zip(entries)
                    .map(|((field, comp), v)| format!("{field} {comp} {}", value_text(v, comp)))
                    .collect();
                alternatives.push(format!("( {})", checks.join(" and ")));
            }
            if alternatives.is_empty() {
                return Ok(None);
            }
            format!("({})", alternatives.join(" or "))
        }
    };
    Ok(Some(format!(" and not {text}")))
}

/// A value written into the condition: a list in parentheses; a string parenthesized for a
/// list operator, else quoted when it holds a blank.
fn value_text(v: &Entry, comp: &str) -> String {
    match v {
        Entry::List(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Entry::Item(s) => quote_item(s),
                    Entry::List(_) => String::new(),
                })
                .collect();
            format!("({})", items.join(", "))
        }
        Entry::Item(s) => {
            let list_op =
                matches!(comp, "in" | "intersects" | "pmatch") || is_operator_with_modifier(comp);
            match (list_op, s.starts_with('(')) {
                (true, false) => format!("({s})"),
                (true, true) => s.clone(),
                (false, _) => quote_item(s),
            }
        }
    }
}

/// `startswith oneof`, `= allof`...: an operator that takes a modifier, a space, a modifier.
fn is_operator_with_modifier(comp: &str) -> bool {
    let Some((op, modifier)) = comp.split_once(' ') else {
        return false;
    };
    CmpOp::from_name(op).is_some_and(CmpOp::takes_modifier)
        && Modifier::from_name(modifier).is_some()
}

/// An exception field must be a field or a transformer over fields, and nothing more.
fn check_field(field: &str) -> Result<(), String> {
    match condition::parse_operand_prefix(field) {
        Some((_, used)) if used == field.len() => Ok(()),
        _ => Err(format!(
            "{field:?} is not a supported filter field (a field such as proc.name, or a transformer such as tolower(proc.name))"
        )),
    }
}

/// A `fields`/`comps`/`values` entry: a non-empty string, or a list of entries.
enum Entry {
    Item(String),
    List(Vec<Entry>),
}

fn entry(node: &Node) -> Result<Entry, String> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .map(entry)
            .collect::<Result<_, _>>()
            .map(Entry::List),
        _ => match node.as_text() {
            Some(s) if !s.is_empty() => Ok(Entry::Item(s)),
            Some(_) => Err("values must be non-empty".into()),
            None => Err(format!(
                "expected a string or a list of strings, found {}",
                node.kind_name()
            )),
        },
    }
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

    fn text(yaml: &str) -> Result<Option<String>, LoadError> {
        condition_text(&exception(yaml), "rule")
    }

    #[test]
    fn list_fields_become_alternatives() {
        let t = text(
            "- fields: [proc.name, proc.pname]\n  comps: [=, in]\n  values: [[bash, [sshd, login]], [a b, shells]]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            t,
            " and not (( proc.name = bash and proc.pname in (sshd, login)) or ( proc.name = \"a b\" and proc.pname in (shells)))"
        );
    }

    #[test]
    fn single_field_defaults_to_in() {
        let t = text("- fields: container.image.repository\n  values: [docker.io/a, 'b c']\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            t,
            " and not (container.image.repository in (docker.io/a, \"b c\"))"
        );
        let t = text("- fields: [proc.name]\n  comps: [startswith oneof]\n  values: [[[a, b]]]\n")
            .unwrap()
            .unwrap();
        assert_eq!(t, " and not (( proc.name startswith oneof (a, b)))");
    }

    #[test]
    fn transformers_are_written_as_is() {
        let t = text("- fields: [tolower(proc.name)]\n  values: [[toupper(proc.pname)]]\n")
            .unwrap()
            .unwrap();
        assert_eq!(t, " and not (( tolower(proc.name) = toupper(proc.pname)))");
    }

    #[test]
    fn mismatches_are_errors() {
        let e = text("- fields: [proc.name, proc.pname]\n  values: [[bash]]\n").unwrap_err();
        assert!(e.to_string().contains("1 entries for 2 fields"), "{e}");
        assert!(text("- fields: proc.name\n  comps: '='\n  values: [a]\n").is_err());
        assert!(text("- fields: [not a field]\n  values: [[a]]\n").is_err());
        for bad in ["in oneof", ">= oneof", "oneof", "frobulate oneof"] {
            let yaml = format!("- fields: [proc.name]\n  comps: ['{bad}']\n  values: [[[a]]]\n");
            let e = text(&yaml).unwrap_err();
            assert!(
                e.to_string()
                    .contains("not a supported comparison operator"),
                "{bad}: {e}"
            );
        }
        assert!(text("- fields: [proc.name]\n").unwrap().is_none());
    }
}
