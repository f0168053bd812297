//! Which pods on this node are guarded: namespace include/exclude, a label selector and a
//! glob on the pod name, all from the `inventory:` config section.

use globset::{GlobBuilder, GlobMatcher};
use kube::core::{Selector, SelectorExt};

use super::{InventoryConfig, labels, pod::PodRecord};

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("inventory.label_selector: {0}")]
    Labels(#[from] labels::LabelSelectorError),
    #[error("inventory.pod_name_pattern {pattern:?} is not a valid glob: {message}")]
    NamePattern { pattern: String, message: String },
}

/// The guarded-pod predicate.
#[derive(Clone, Debug)]
pub struct PodSelector {
    include: Vec<String>,
    exclude: Vec<String>,
    labels: Selector,
    name: Option<GlobMatcher>,
}

impl PodSelector {
    /// From config; `own_namespace` (the agent's) is excluded when
    /// `namespaces.exclude_own` is set.
    pub fn new(
        config: &InventoryConfig,
        own_namespace: Option<&str>,
    ) -> Result<PodSelector, SelectError> {
        let mut exclude = config.namespaces.exclude.clone();
        if config.namespaces.exclude_own
            && let Some(own) = own_namespace
        {
            exclude.push(own.to_owned());
        }
        let pattern = &config.pod_name_pattern;
        let name = if pattern.is_empty() {
            None
        } else {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|e| SelectError::NamePattern {
                    pattern: pattern.clone(),
                    message: e.kind().to_string(),
                })?;
            Some(glob.compile_matcher())
        };
        Ok(PodSelector {
            include: config.namespaces.include.clone(),
            exclude,
            labels: labels::parse(&config.label_selector)?,
            name,
        })
    }

    pub fn matches(&self, pod: &PodRecord) -> bool {
        let ns = pod.info.namespace.as_str();
        if self.exclude.iter().any(|e| e == ns) {
            return false;
        }
        if !self.include.is_empty() && !self.include.iter().any(|i| i == ns) {
            return false;
        }
        if !self.labels.matches(&pod.info.labels) {
            return false;
        }
        self.name
            .as_ref()
            .is_none_or(|glob| glob.is_match(&pod.info.name))
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "namespaces include={:?} exclude={:?}, labels {:?}, name {:?}",
            self.include,
            self.exclude,
            self.labels.to_string(),
            self.name.as_ref().map(|g| g.glob().glob()).unwrap_or("*"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::pod::tests::pod;

    fn record(namespace: &str, name: &str) -> PodRecord {
        let mut rec = PodRecord::from_pod(&pod()).unwrap();
        rec.info.namespace = namespace.into();
        rec.info.name = name.into();
        rec
    }

    #[test]
    fn default_guards_juice_shop_outside_system_namespaces() {
        let sel = PodSelector::new(&InventoryConfig::default(), Some("youwatch")).unwrap();
        assert!(sel.matches(&record("shop", "juice-shop-7d9f8b6c5-x2x4z")));
        assert!(sel.matches(&record("default", "my-juice-shop")));
        assert!(!sel.matches(&record("shop", "nginx-1")));
        assert!(!sel.matches(&record("kube-system", "juice-shop-x")));
        assert!(!sel.matches(&record("youwatch", "juice-shop-x")));
    }

    #[test]
    fn own_namespace_can_be_guarded_when_asked() {
        let mut config = InventoryConfig::default();
        config.namespaces.exclude_own = false;
        let sel = PodSelector::new(&config, Some("youwatch")).unwrap();
        assert!(sel.matches(&record("youwatch", "juice-shop-x")));
    }

    #[test]
    fn include_list_and_labels_narrow_the_selection() {
        let config = InventoryConfig {
            label_selector: "app=juice-shop".into(),
            pod_name_pattern: String::new(),
            namespaces: crate::inventory::NamespaceConfig {
                include: vec!["shop".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let sel = PodSelector::new(&config, None).unwrap();
        assert!(sel.matches(&record("shop", "anything")));
        assert!(!sel.matches(&record("other", "anything")));
        let mut unlabelled = record("shop", "anything");
        unlabelled.info.labels.clear();
        assert!(!sel.matches(&unlabelled));
    }

    #[test]
    fn bad_settings_are_named() {
        let config = InventoryConfig {
            pod_name_pattern: "juice-[shop".into(),
            ..Default::default()
        };
        let err = PodSelector::new(&config, None).unwrap_err().to_string();
        assert!(
            err.contains("pod_name_pattern") && err.contains("juice-[shop"),
            "{err}"
        );
        let config = InventoryConfig {
            label_selector: "app in".into(),
            ..Default::default()
        };
        let err = PodSelector::new(&config, None).unwrap_err().to_string();
        assert!(
            err.contains("label_selector") && err.contains("app in"),
            "{err}"
        );
    }
}
