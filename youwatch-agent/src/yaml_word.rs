//! One-word settings as YAML 1.1 reads them: an unquoted `off` arrives as the boolean
//! `false`, so `mode: off` must mean the word `off`, not a type error.

use serde::Deserialize;

/// A one-word setting, as written.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum YamlWord {
    Text(String),
    Bool(bool),
}

impl YamlWord {
    /// The word: `false` (an unquoted `off`) is `off` again; `true` stays `true`, which no
    /// setting accepts.
    pub fn text(&self) -> &str {
        match self {
            YamlWord::Text(t) => t,
            YamlWord::Bool(false) => "off",
            YamlWord::Bool(true) => "true",
        }
    }
}
