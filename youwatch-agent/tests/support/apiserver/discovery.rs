//! Discovery, as kubectl reads it before any request: `/api` (core versions), `/apis` (the
//! groups and their versions), `/api/v1` and `/apis/<group>/<version>` (the resources with
//! their verbs and kinds). Generated from the served resource types.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// The discovery document for `path`, when it is one.
pub fn document(path: &str, resources: &[ResourceType]) -> Option<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api"] => Some(json!({
            "kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })),
        ["apis"] => {
            let mut groups: Vec<(&str, &str)> = resources
                .iter()
                .filter(|r| !r.group.is_empty())
                .map(|r| (r.group.as_str(), r.version.as_str()))
                .collect();
            groups.sort();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", version] => Some(resource_list("", version, resources)),
        ["apis", group, version] => Some(resource_list(group, version, resources)),
        _ => None,
    }
}

fn resource_list(group: &str, version: &str, resources: &[ResourceType]) -> Value {
    let mut list = Vec::new();
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        for sub in &r.subresources {
            list.push(json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}
