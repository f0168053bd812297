//! Field and label selectors, evaluated on stored objects as the API server does.

use kube::core::{Selector, SelectorExt};
use serde_json::Value;

use super::{ApiError, resources::ResourceType};

/// `a=b,c!=d` on the fields a resource supports.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(&format!(
                    "invalid field selector: {term:?}: expected field=value or field!=value"
                )));
            };
            let field = field.trim();
            let known = field == "metadata.name"
                || field == "metadata.namespace"
                || rt.fields.iter().any(|f| f == field);
            if !known {
                return Err(ApiError::bad_request(&format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((
                field.split('.').map(str::to_owned).collect(),
                equal,
                value.trim().to_owned(),
            ));
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut v = object;
            for key in path {
                v = &v[key.as_str()];
            }
            let actual = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// A label selector (parsed by the agent's own parser, the syntax `kubectl -l` takes).
#[derive(Clone, Debug, Default)]
pub struct LabelSelector(Selector);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        youwatch_agent::inventory::labels::parse(text)
            .map(Self)
            .map_err(|e| ApiError::bad_request(&format!("unable to parse requirement: {e}")))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        self.0.matches(&labels)
    }
}
