//! `deploy/base/rbac.yaml` grants exactly the API calls the code makes (the table in
//! `src/cluster/rbac.rs`): every call is granted, in the ClusterRole of its scope, and every
//! grant is a call. Also the roles are bound to the agent's ServiceAccount.

mod support;

use std::collections::BTreeSet;

use k8s_openapi::api::{
    core::v1::ServiceAccount,
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use support::manifests::{deploy_dir, documents, typed};
use youwatch_agent::cluster::rbac::{ALL, Scope};

/// (role, api group, resource, verb)
type Grant = (String, String, String, String);

struct Rbac {
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    accounts: Vec<ServiceAccount>,
}

fn rbac() -> Rbac {
    let origin = deploy_dir().join("base/rbac.yaml");
    let mut rbac = Rbac {
        roles: Vec::new(),
        bindings: Vec::new(),
        accounts: Vec::new(),
    };
    for doc in documents("base/rbac.yaml") {
        match doc["kind"].as_str() {
            Some("ClusterRole") => rbac.roles.push(typed(&doc, &origin)),
            Some("ClusterRoleBinding") => rbac.bindings.push(typed(&doc, &origin)),
            Some("ServiceAccount") => rbac.accounts.push(typed(&doc, &origin)),
            other => panic!("rbac.yaml: unexpected kind {other:?} (a Role? add it to this test)"),
        }
    }
    rbac
}

fn granted(rbac: &Rbac) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for role in &rbac.roles {
        let name = role.metadata.name.clone().unwrap_or_default();
        for rule in role.rules.iter().flatten() {
            assert!(
                rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
                "{name}: this test does not know resourceNames / nonResourceURLs"
            );
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        assert!(
                            group != "*" && resource != "*" && verb != "*",
                            "{name}: no wildcards"
                        );
                        out.insert((name.clone(), group.clone(), resource.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    out
}

fn needed() -> BTreeSet<Grant> {
    ALL.iter()
        .flat_map(|call| {
            call.verbs.iter().map(move |verb| {
                (
                    call.scope.cluster_role().to_owned(),
                    call.group.to_owned(),
                    call.resource.to_owned(),
                    (*verb).to_owned(),
                )
            })
        })
        .collect()
}

#[test]
fn every_api_call_is_granted_in_the_role_of_its_scope() {
    let granted = granted(&rbac());
    let missing: Vec<_> = needed().difference(&granted).cloned().collect();
    assert!(
        missing.is_empty(),
        "the code makes these calls but deploy/base/rbac.yaml does not grant them (role, group, resource, verb): {missing:#?}"
    );
}

#[test]
fn every_grant_is_a_call_the_code_makes() {
    let granted = granted(&rbac());
    let extra: Vec<_> = granted.difference(&needed()).cloned().collect();
    assert!(
        extra.is_empty(),
        "deploy/base/rbac.yaml grants what no code calls (role, group, resource, verb); remove it, or add the call's row to src/cluster/rbac.rs: {extra:#?}"
    );
}

#[test]
fn each_role_is_bound_to_the_agents_service_account() {
    let rbac = rbac();
    let account = rbac.accounts[0].metadata.name.clone().unwrap();
    for scope in [Scope::Cluster, Scope::Namespaced] {
        let role = scope.cluster_role();
        let binding = rbac
            .bindings
            .iter()
            .find(|b| b.role_ref.kind == "ClusterRole" && b.role_ref.name == role)
            .unwrap_or_else(|| panic!("no binding of ClusterRole {role}"));
        assert!(
            binding
                .subjects
                .iter()
                .flatten()
                .any(|s| s.kind == "ServiceAccount" && s.name == account),
            "{role} is not bound to ServiceAccount {account}"
        );
    }
}
