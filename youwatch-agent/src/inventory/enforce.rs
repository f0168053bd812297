//! Which watched cgroups are enforced (forbidden execs stopped by the kernel): guarded pods
//! that opt in with a label (`youwatch.dev/enforce: "true"`) or match `enforce.pod_selector`,
//! and the `--watch-cgroup` subtrees when the agent runs with `--enforce`. Never the agent's
//! own pod, nor a cgroup the agent itself runs in.

use std::path::{Path, PathBuf};

use kube::core::{Selector, SelectorExt};

use super::{labels, pod::PodRecord};
use crate::enforce::EnforceConfig;

/// The label value that opts a pod in.
pub const OPT_IN_VALUE: &str = "true";

/// The enforcement selection, built once from the `enforce:` config.
#[derive(Clone, Debug)]
pub struct EnforceSelection {
    label: Option<String>,
    selector: Option<Selector>,
    /// Enforce the `--watch-cgroup` subtrees.
    explicit: bool,
    /// The agent's own pod (namespace, name), when it runs in one.
    own_pod: Option<(String, String)>,
    /// The cgroup the agent runs in (absolute path under the cgroup v2 mount).
    own_cgroup: Option<PathBuf>,
}

impl EnforceSelection {
    /// `own_pod` is the agent's (namespace, name) in cluster mode; `explicit` enforces the
    /// `--watch-cgroup` subtrees (`--enforce`).
    pub fn new(
        config: &EnforceConfig,
        explicit: bool,
        own_pod: Option<(String, String)>,
    ) -> Result<Self, labels::LabelSelectorError> {
        let selector = if config.pod_selector.trim().is_empty() {
            None
        } else {
            Some(labels::parse(&config.pod_selector)?)
        };
        Ok(Self {
            label: (!config.opt_in_label.is_empty()).then(|| config.opt_in_label.clone()),
            selector,
            explicit,
            own_pod,
            own_cgroup: own_cgroup(),
        })
    }

    /// Whether a guarded pod is enforced.
    pub fn pod(&self, pod: &PodRecord) -> bool {
        let info = &pod.info;
        if self
            .own_pod
            .as_ref()
            .is_some_and(|(ns, name)| *ns == info.namespace && *name == info.name)
        {
            return false;
        }
        let labelled = self
            .label
            .as_ref()
            .is_some_and(|key| info.labels.get(key).is_some_and(|v| v == OPT_IN_VALUE));
        labelled
            || self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&info.labels))
    }

    /// Whether the `--watch-cgroup` subtrees are enforced.
    pub fn explicit(&self) -> bool {
        self.explicit
    }

    /// Refuses a cgroup whose subtree holds the agent itself: enforcement there could stop
    /// what the agent runs, and a node's agent must never be contained by its own rules.
    pub fn allowed(&self, cgroup: &Path) -> Result<(), String> {
        match &self.own_cgroup {
            Some(own) if own.starts_with(cgroup) => Err(format!(
                "the agent itself runs in its subtree ({})",
                own.display()
            )),
            _ => Ok(()),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_own_cgroup(mut self, path: Option<PathBuf>) -> Self {
        self.own_cgroup = path;
        self
    }
}

/// The agent's cgroup as a path under the cgroup v2 mount (from `/proc/self/cgroup`'s
/// `0::` line). Inside a cgroup namespace this is the namespace's root, which no pod
/// cgroup is above: the pod identity check covers that case.
fn own_cgroup() -> Option<PathBuf> {
    let mount = crate::cgroupfs::unified_mount().ok()?;
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::pod::tests::pod;

    fn record(namespace: &str, name: &str, labels: &[(&str, &str)]) -> PodRecord {
        let mut rec = PodRecord::from_pod(&pod()).unwrap();
        rec.info.namespace = namespace.into();
        rec.info.name = name.into();
        rec.info.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        rec
    }

    fn own() -> Option<(String, String)> {
        Some(("youwatch".into(), "youwatch-agent-x1".into()))
    }

    #[test]
    fn pods_opt_in_by_label_or_selector_never_the_agents_own() {
        let sel = EnforceSelection::new(&EnforceConfig::default(), false, own()).unwrap();
        let opted = [("youwatch.dev/enforce", "true")];
        assert!(sel.pod(&record("shop", "juice-shop-1", &opted)));
        assert!(!sel.pod(&record(
            "shop",
            "juice-shop-1",
            &[("youwatch.dev/enforce", "yes")]
        )));
        assert!(!sel.pod(&record("shop", "juice-shop-1", &[("app", "juice-shop")])));
        assert!(!sel.pod(&record("youwatch", "youwatch-agent-x1", &opted)));

        let config = EnforceConfig {
            pod_selector: "app=juice-shop".into(),
            opt_in_label: String::new(),
            ..Default::default()
        };
        let sel = EnforceSelection::new(&config, false, own()).unwrap();
        assert!(sel.pod(&record("shop", "juice-shop-1", &[("app", "juice-shop")])));
        assert!(
            !sel.pod(&record("shop", "juice-shop-1", &opted)),
            "no label opt-in"
        );
        assert!(!sel.pod(&record(
            "youwatch",
            "youwatch-agent-x1",
            &[("app", "juice-shop")]
        )));
    }

    #[test]
    fn a_cgroup_holding_the_agent_is_refused() {
        let sel = EnforceSelection::new(&EnforceConfig::default(), true, None)
            .unwrap()
            .with_own_cgroup(Some("/sys/fs/cgroup/system.slice/agent.scope".into()));
        assert!(
            sel.allowed(Path::new("/sys/fs/cgroup/system.slice"))
                .is_err()
        );
        assert!(
            sel.allowed(Path::new("/sys/fs/cgroup/system.slice/agent.scope"))
                .is_err()
        );
        assert!(
            sel.allowed(Path::new("/sys/fs/cgroup/kubepods.slice"))
                .is_ok()
        );
        assert!(
            sel.allowed(Path::new("/sys/fs/cgroup/system.slice/agent.scope2"))
                .is_ok()
        );
    }
}
