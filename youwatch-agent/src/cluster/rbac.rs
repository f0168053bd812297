//! Every Kubernetes API call the agent makes: resource, verbs, scope and why. Call sites build
//! their `Api` from their row ([`ApiCall::all`], [`ApiCall::namespaced`]), and a test
//! (`tests/deploy_rbac.rs`) holds `deploy/base/rbac.yaml` equal to this table in both directions,
//! so the ClusterRoles grant exactly what the code uses.
//!
//! Adding a call is one row below, then the same verb in `deploy/base/rbac.yaml`.

use kube::{Api, Client, Resource};

/// Where a call reaches, hence how its permission may be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Across every namespace at once (a list or watch over the whole cluster): needs a
    /// ClusterRoleBinding.
    Cluster,
    /// In the namespace of the object concerned (a guarded pod, its Ingress): the role may be
    /// bound per namespace with RoleBindings instead.
    Namespaced,
}

impl Scope {
    /// The ClusterRole in `deploy/base/rbac.yaml` that grants calls of this scope.
    pub fn cluster_role(self) -> &'static str {
        match self {
            Scope::Cluster => "youwatch-agent-cluster",
            Scope::Namespaced => "youwatch-agent-namespaced",
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// Plural resource name, as RBAC rules name it.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// Which function makes the call, and what for.
    pub why: &'static str,
}

macro_rules! api_calls {
    ($($id:ident: $group:literal $resource:literal [$($verb:literal),+] $scope:ident $why:literal;)+) => {
        $(pub const $id: ApiCall = ApiCall {
            group: $group,
            resource: $resource,
            verbs: &[$($verb),+],
            scope: Scope::$scope,
            why: $why,
        };)+
        /// Every row.
        pub const ALL: &[ApiCall] = &[$($id),+];
    };
}

api_calls! {
    POD_WATCH: "" "pods" ["list", "watch"] Cluster "inventory: the pods of this node (fieldSelector spec.nodeName) in every namespace, to guard their cgroups";
    POD_GET: "" "pods" ["get"] Namespaced "response delete_pod: the uid, owner and node of a pod a Falco alert names";
    POD_DELETE: "" "pods" ["delete"] Namespaced "response delete_pod: delete a compromised pod (uid precondition)";
    REPLICASET_GET: "apps" "replicasets" ["get"] Namespaced "response delete_pod: desired and available replicas (min_available)";
    STATEFULSET_GET: "apps" "statefulsets" ["get"] Namespaced "response delete_pod: desired and available replicas (min_available)";
    DAEMONSET_GET: "apps" "daemonsets" ["get"] Namespaced "response delete_pod: desired and available replicas (min_available)";
    EVENT_CREATE: "events.k8s.io" "events" ["create"] Namespaced "response: one Event per action, on the object acted on";
    EVIDENCE_WRITE: "events.k8s.io" "events" ["create", "patch"] Namespaced "correlation: this node's evidence Event per Service its WAF saw suspicious requests to";
    EVIDENCE_LIST: "events.k8s.io" "events" ["list"] Namespaced "correlation: the evidence Events other nodes published for a Service (label youwatch.dev/evidence=waf)";
    INGRESS_WATCH: "networking.k8s.io" "ingresses" ["list", "watch"] Cluster "response deny_ip/quarantine: the Ingresses serving each host and their ledgers (expiry); bans lists them";
    INGRESS_PATCH: "networking.k8s.io" "ingresses" ["get", "patch"] Namespaced "response deny_ip/quarantine/expiry, unban, release: re-read and patch the annotations (resourceVersion precondition)";
    SERVICE_LIST: "" "services" ["list"] Namespaced "response quarantine by pod: the Services selecting the pod, to find its Ingresses";
    IPBAN_WATCH: "youwatch.dev" "ipbans" ["list", "watch"] Cluster "node ban: every IPBan (the cluster's ban ledger), enforced in this node's kernel and deleted once expired; bans lists them";
    IPBAN_WRITE: "youwatch.dev" "ipbans" ["get", "create", "patch"] Cluster "response deny_ip with the node-tc backend: create the banned address's IPBan, or extend it (resourceVersion precondition)";
    IPBAN_DELETE: "youwatch.dev" "ipbans" ["delete"] Cluster "node ban: delete an expired IPBan (uid and resourceVersion preconditions); unban deletes one";
}

impl ApiCall {
    /// The API of `K` across every namespace.
    pub fn all<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<DynamicType = ()>,
    {
        self.expect::<K>();
        Api::all(client)
    }

    /// The API of `K` in `namespace`.
    pub fn namespaced<K>(&self, client: Client, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        self.expect::<K>();
        Api::namespaced(client, namespace)
    }

    /// Whether `K` is this row's resource.
    pub fn is_for<K: Resource<DynamicType = ()>>(&self) -> bool {
        K::group(&()) == self.group && K::plural(&()) == self.resource
    }

    fn expect<K: Resource<DynamicType = ()>>(&self) {
        debug_assert!(
            self.is_for::<K>(),
            "API call row {}/{} used for {}/{}",
            self.group,
            self.resource,
            K::group(&()),
            K::plural(&())
        );
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1::{DaemonSet, ReplicaSet, StatefulSet},
        core::v1::{Pod, Service},
        events::v1::Event,
        networking::v1::Ingress,
    };

    use super::*;

    #[test]
    fn rows_name_the_resources_of_their_types() {
        assert!(POD_WATCH.is_for::<Pod>() && POD_GET.is_for::<Pod>() && POD_DELETE.is_for::<Pod>());
        assert!(REPLICASET_GET.is_for::<ReplicaSet>());
        assert!(STATEFULSET_GET.is_for::<StatefulSet>());
        assert!(DAEMONSET_GET.is_for::<DaemonSet>());
        assert!(EVENT_CREATE.is_for::<Event>());
        assert!(INGRESS_WATCH.is_for::<Ingress>() && INGRESS_PATCH.is_for::<Ingress>());
        assert!(SERVICE_LIST.is_for::<Service>());
        use crate::netban::crd::IpBan;
        assert!(IPBAN_WATCH.is_for::<IpBan>() && IPBAN_WRITE.is_for::<IpBan>());
        assert!(IPBAN_DELETE.is_for::<IpBan>());
        assert!(!POD_GET.is_for::<Event>());
    }

    #[test]
    fn every_row_says_why() {
        for row in ALL {
            assert!(!row.why.is_empty() && !row.verbs.is_empty(), "{row:?}");
        }
    }
}
