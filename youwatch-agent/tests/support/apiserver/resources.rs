//! The resource types the test API server serves. Adding one is a table entry
//! ([`ApiServer::add_resource`](super::ApiServer::add_resource)).

/// One served resource, as discovery would describe it.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Field selectors accepted besides `metadata.name` and `metadata.namespace` (a real API
    /// server rejects the others with 400).
    pub fields: Vec<String>,
    /// Subresources served (`status`, `ephemeralcontainers`, `eviction`).
    pub subresources: Vec<String>,
}

impl ResourceType {
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            fields: Vec::new(),
            subresources: vec!["status".into()],
        }
    }

    pub fn with_fields(mut self, fields: &[&str]) -> Self {
        self.fields = fields.iter().map(|f| f.to_string()).collect();
        self
    }

    pub fn with_subresources(mut self, subs: &[&str]) -> Self {
        self.subresources = subs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// How tests name it: `pods`, `apps/replicasets`, `events.k8s.io/events`.
    pub fn plural_key(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}/{}", self.group, self.plural)
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What the agent uses now and soon: pods, events, ingresses, replicasets, deployments, nodes.
pub fn defaults() -> Vec<ResourceType> {
    vec![
        ResourceType::new("", "v1", "pods", "Pod", true)
            .with_fields(&[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ])
            .with_subresources(&["status", "ephemeralcontainers", "eviction"]),
        ResourceType::new("", "v1", "events", "Event", true)
            .with_fields(&[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ])
            .with_subresources(&[]),
        ResourceType::new("events.k8s.io", "v1", "events", "Event", true)
            .with_fields(&[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "reason",
                "reportingController",
                "type",
            ])
            .with_subresources(&[]),
        ResourceType::new("networking.k8s.io", "v1", "ingresses", "Ingress", true),
        ResourceType::new("apps", "v1", "replicasets", "ReplicaSet", true),
        ResourceType::new("apps", "v1", "deployments", "Deployment", true),
        ResourceType::new("apps", "v1", "statefulsets", "StatefulSet", true),
        ResourceType::new("apps", "v1", "daemonsets", "DaemonSet", true),
        ResourceType::new("", "v1", "services", "Service", true),
        ResourceType::new("", "v1", "nodes", "Node", false),
    ]
}
