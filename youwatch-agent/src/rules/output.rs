//! Rule outputs: `%field` and `%field[arg]` placeholders (and transformers such as
//! `%tolower(proc.name)`), parsed once, rendered per alert. Values the event does not carry
//! render as `<NA>`, as in Falco, and as `null` in `output_fields`.

use std::collections::BTreeMap;

use super::{
    compile::{self, CompileError, OperandIr},
    condition,
    fields::EventView,
    program::Operand,
    source::SourceText,
};

/// Falco's text for a value that is not available.
pub const NOT_AVAILABLE: &str = "<NA>";

#[derive(Clone, Debug)]
pub struct OutputFormat {
    parts: Box<[Part]>,
    fields: Box<[OutField]>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(Box<str>),
    /// Index into `fields`.
    Field(usize),
}

/// One field of an output: its key in `output_fields` and how to read it (`None` when exec
/// events do not carry it).
#[derive(Clone, Debug)]
pub struct OutField {
    pub key: Box<str>,
    value: Option<Operand>,
}

impl OutField {
    /// A field given by name (the `extra_output_fields` setting).
    pub fn named(name: &str) -> Result<OutField, String> {
        let (op, _) = condition::parse_operand_prefix(name)
            .filter(|(_, used)| *used == name.len())
            .ok_or_else(|| format!("{name:?} is not a field name such as k8s.pod.name"))?;
        let text = SourceText::literal(name);
        let value = match compile::operand(&op, &text).map_err(|e| e.message)? {
            OperandIr::Value(op, _) => Some(op),
            OperandIr::Unknown(_) => None,
        };
        Ok(OutField {
            key: name.into(),
            value,
        })
    }

    fn value(&self, ev: &EventView<'_>) -> serde_json::Value {
        self.value
            .as_ref()
            .and_then(|o| o.value(ev))
            .map_or(serde_json::Value::Null, |v| v.into_json())
    }
}

impl OutputFormat {
    /// Parses an output. `text` holds the output as written, for error positions.
    pub fn compile(text: &SourceText) -> Result<OutputFormat, CompileError> {
        let format = text.as_str();
        let mut parts = Vec::new();
        let mut fields: Vec<OutField> = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            // An optional width (`%20proc.name`) is accepted and ignored.
            let width = after.bytes().take_while(u8::is_ascii_digit).count();
            let spec = &after[width..];
            match condition::parse_operand_prefix(spec) {
                Some((op, used)) => {
                    let key = &spec[..used];
                    let offset = format.len() - spec.len();
                    rest = &spec[used..];
                    // Deprecated; Falco expands it to nothing since the container plugin.
                    if key == "container.info" {
                        continue;
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal).into()));
                    }
                    let value = match compile::operand(&op, text).map_err(|e| CompileError {
                        pos: text.pos(offset),
                        message: format!("in output: {}", e.message),
                    })? {
                        OperandIr::Value(op, _) => Some(op),
                        OperandIr::Unknown(_) => None,
                    };
                    let index = match fields.iter().position(|f| &*f.key == key) {
                        Some(existing) => existing,
                        None => {
                            fields.push(OutField {
                                key: key.into(),
                                value,
                            });
                            fields.len() - 1
                        }
                    };
                    parts.push(Part::Field(index));
                }
                None => {
                    // A lone `%` (e.g. "100%") stays text.
                    literal.push('%');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal.into()));
        }
        Ok(OutputFormat {
            parts: parts.into(),
            fields: fields.into(),
        })
    }

    /// The rendered line (trimmed, as Falco does) and the values of every field it names,
    /// plus `extra` fields.
    pub fn render(
        &self,
        ev: &EventView<'_>,
        extra: &[OutField],
    ) -> (String, BTreeMap<String, serde_json::Value>) {
        let mut line = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Text(t) => line.push_str(t),
                Part::Field(i) => match self.fields[*i].value.as_ref().and_then(|o| o.value(ev)) {
                    Some(v) => v.render(&mut line),
                    None => line.push_str(NOT_AVAILABLE),
                },
            }
        }
        let mut values = BTreeMap::new();
        for f in self.fields.iter().chain(extra) {
            values
                .entry(f.key.to_string())
                .or_insert_with(|| f.value(ev));
        }
        (line.trim().to_owned(), values)
    }

    /// The keys of the fields the output names, in order.
    pub fn field_keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| &*f.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::sample::Exec;

    fn render(format: &str, extra: &[OutField]) -> (String, BTreeMap<String, serde_json::Value>) {
        let exec = Exec::new(["bash", "-c", "id"])
            .ancestor(["sshd", "-D"])
            .pod("shop", "juice-shop-1")
            .build();
        let ev = EventView::new(&exec, 1, "node-1");
        OutputFormat::compile(&SourceText::literal(format))
            .unwrap()
            .render(&ev, extra)
    }

    #[test]
    fn placeholders_and_values() {
        let (line, fields) = render(
            "  shell %proc.name (parent=%proc.aname[1] pod=%k8s.pod.label[app] fd=%fd.name) %proc.name %container.info 100% done  ",
            &[],
        );
        assert_eq!(
            line,
            "shell bash (parent=sshd pod=juice fd=<NA>) bash  100% done"
        );
        assert_eq!(fields["proc.aname[1]"], "sshd");
        assert_eq!(fields["fd.name"], serde_json::Value::Null);
        assert_eq!(fields.len(), 4, "{fields:?}");
    }

    #[test]
    fn transformers_widths_and_extra_fields() {
        let extra = [
            OutField::named("k8s.ns.name").unwrap(),
            OutField::named("proc.cwd").unwrap(),
        ];
        let (line, fields) = render("%toupper(proc.name) %10proc.pname", &extra);
        assert_eq!(line, "BASH sshd");
        assert_eq!(fields["toupper(proc.name)"], "BASH");
        assert_eq!(fields["k8s.ns.name"], "shop");
        assert_eq!(fields["proc.cwd"], serde_json::Value::Null);
        assert!(OutField::named("not a field").is_err());
        assert!(OutputFormat::compile(&SourceText::literal("%proc.aname[x]")).is_err());
    }
}
