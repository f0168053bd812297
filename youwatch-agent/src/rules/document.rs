//! A rules file as a tree of YAML nodes that remember where they were written. The loader
//! reads items from it; keeping positions lets every message say `file:line:column`.

use std::{fmt, sync::Arc};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::{
    LoadError,
    source::{Pos, Scalar, ScalarOrigin, SourceFile},
};

/// Rules files larger than this are refused before parsing (they are hand-written YAML; the
/// upstream Falco ruleset is 64 KiB).
pub const MAX_FILE_BYTES: usize = 16 << 20;

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
    origin: Option<ScalarOrigin>,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text (numbers and booleans spelled as YAML would), `None` for
    /// sequences, mappings and null.
    pub fn as_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    pub fn as_scalar(&self) -> Option<Scalar> {
        Some(Scalar {
            value: self.as_text()?,
            pos: self.pos.clone(),
            origin: self.origin.clone(),
        })
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The keys of a mapping, with their nodes (for unknown-key warnings).
    pub fn keys(&self) -> impl Iterator<Item = (String, &Node)> {
        let entries: &[(Node, Node)] = match &self.kind {
            Kind::Map(entries) => entries,
            _ => &[],
        };
        entries
            .iter()
            .map(|(k, _)| (k.as_text().unwrap_or_default(), k))
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a sequence",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// Parses a rules file into its top-level items (all YAML documents of the file, in order).
pub fn parse(file: &Arc<SourceFile>) -> Result<Vec<Node>, LoadError> {
    if file.text.len() > MAX_FILE_BYTES {
        return Err(LoadError::Read {
            path: file.name.to_string(),
            message: format!(
                "{} bytes is more than the {MAX_FILE_BYTES} a rules file may have",
                file.text.len()
            ),
        });
    }
    let docs: Vec<Spanned<Raw>> = serde_saphyr::from_multiple(&file.text).map_err(|e| {
        let pos = e
            .location()
            .map(|l| Pos {
                file: file.name.clone(),
                line: u32::try_from(l.line()).unwrap_or(0),
                column: u32::try_from(l.column()).unwrap_or(0),
            })
            .unwrap_or_else(|| Pos::unknown(&file.name));
        LoadError::Yaml {
            pos,
            message: yaml_message(&e),
        }
    })?;
    let mut items = Vec::new();
    for doc in docs {
        let node = convert(file, doc);
        match node.kind {
            Kind::Null => {}
            Kind::Seq(nodes) => items.extend(nodes),
            _ => {
                return Err(LoadError::Invalid {
                    pos: node.pos.clone(),
                    what: "rules file".into(),
                    message: format!(
                        "expected a sequence of items (- rule:, - macro:, - list:), found {}",
                        node.kind_name()
                    ),
                });
            }
        }
    }
    Ok(items)
}

/// serde-saphyr's message without its snippet and its own position prefix.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 2 column 14: expected ..." → "expected ..."
    match first.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_owned(),
        _ => first.to_owned(),
    }
}

fn convert(file: &Arc<SourceFile>, raw: Spanned<Raw>) -> Node {
    let loc = raw.referenced;
    let byte = loc
        .span()
        .byte_offset()
        .and_then(|b| usize::try_from(b).ok());
    let pos = match byte {
        Some(b) => file.pos(b),
        None => Pos {
            file: file.name.clone(),
            line: u32::try_from(loc.line()).unwrap_or(0),
            column: u32::try_from(loc.column()).unwrap_or(0),
        },
    };
    let origin = byte.map(|byte| ScalarOrigin {
        file: file.clone(),
        byte,
    });
    let kind = match raw.value {
        Raw::Null => Kind::Null,
        Raw::Bool(b) => Kind::Bool(b),
        Raw::Int(i) => Kind::Int(i),
        Raw::Float(f) => Kind::Float(f),
        Raw::Str(s) => Kind::Str(s),
        Raw::Seq(items) => Kind::Seq(items.into_iter().map(|n| convert(file, n)).collect()),
        Raw::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(k, v)| (convert(file, k), convert(file, v)))
                .collect(),
        ),
    };
    Node { kind, pos, origin }
}

/// Any YAML value; children keep their spans.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        i128::try_from(v)
            .map(Raw::Int)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Node>, LoadError> {
        parse(&SourceFile::new("t.yaml", text.to_owned()))
    }

    #[test]
    fn items_keep_positions_and_types() {
        let items = load(
            "- list: ports\n  items: [80, \"443\", true]\n- macro: m\n  condition: >\n    a and\n    b\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let list = items[0].get("items").unwrap();
        let Kind::Seq(values) = &list.kind else {
            panic!()
        };
        let texts: Vec<_> = values.iter().map(|v| v.as_text().unwrap()).collect();
        assert_eq!(texts, ["80", "443", "true"]);
        let cond = items[1].get("condition").unwrap();
        assert_eq!(cond.as_text().unwrap(), "a and b\n");
        assert_eq!(cond.pos.to_string(), "t.yaml:5:5");
        assert_eq!(items[1].pos.to_string(), "t.yaml:3:3");
    }

    #[test]
    fn yaml_errors_have_positions() {
        let err = load("- rule: x\n  condition: [\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("t.yaml:"), "{text}");
    }

    #[test]
    fn empty_and_multi_document_files() {
        assert!(load("").unwrap().is_empty());
        assert!(load("# only a comment\n").unwrap().is_empty());
        let items = load("- list: a\n  items: []\n---\n- list: b\n  items: []\n").unwrap();
        assert_eq!(items.len(), 2);
        assert!(load("rule: x\n").is_err());
    }
}
