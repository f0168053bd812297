//! What loading rules can report: errors (the rule set is refused) and warnings (something
//! was ignored or disabled, everything else loads). Each names where, as `file:line:column`.

use std::fmt;

use super::source::Pos;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("reading rules file {path}: {message}")]
    Read { path: String, message: String },
    #[error("{pos}: invalid YAML: {message}")]
    Yaml { pos: Pos, message: String },
    #[error("{pos}: {what}: {message}")]
    Invalid {
        pos: Pos,
        what: String,
        message: String,
    },
    #[error("{pos}: {what}: syntax error in condition: {message}")]
    Syntax {
        pos: Pos,
        what: String,
        message: String,
    },
}

impl LoadError {
    pub fn invalid(pos: &Pos, what: &str, message: impl Into<String>) -> Self {
        LoadError::Invalid {
            pos: pos.clone(),
            what: what.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub pos: Pos,
    pub what: String,
    pub message: String,
}

impl Warning {
    /// `file:line:col: <label>: what: message`.
    pub fn labelled(&self, label: &str) -> String {
        format!("{}: {label}: {}: {}", self.pos, self.what, self.message)
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.labelled("warning"))
    }
}

/// Errors, warnings and notes gathered while loading.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<LoadError>,
    pub warnings: Vec<Warning>,
    /// Worth knowing, nothing to fix (e.g. a plugin requirement the agent covers itself).
    pub notes: Vec<Warning>,
}

impl Diagnostics {
    pub fn warn(&mut self, pos: &Pos, what: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            pos: pos.clone(),
            what: what.to_owned(),
            message: message.into(),
        });
    }

    pub fn note(&mut self, pos: &Pos, what: &str, message: impl Into<String>) {
        self.notes.push(Warning {
            pos: pos.clone(),
            what: what.to_owned(),
            message: message.into(),
        });
    }

    pub fn error(&mut self, e: LoadError) {
        self.errors.push(e);
    }
}

/// `rule "Name"`, `macro name`, `list name`: how messages name an item.
pub fn rule_what(name: &str) -> String {
    format!("rule {name:?}")
}
