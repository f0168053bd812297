//! The manifests under `deploy/`, read as Kubernetes objects: each YAML document parsed into
//! its k8s-openapi type and written back, which must give the document again (a field the
//! type does not know would be lost: a typo, or a field of another API version).

use std::path::{Path, PathBuf};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Container};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document of `path` (relative to `deploy/`), as JSON values.
pub fn documents(path: &str) -> Vec<Value> {
    let full = deploy_dir().join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", full.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `doc` as a `K`, checked to lose nothing on the way.
pub fn typed<K: DeserializeOwned + Serialize>(doc: &Value, origin: &Path) -> K {
    let object: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{}: not a valid {}: {e}",
            origin.display(),
            type_name::<K>()
        )
    });
    let back = serde_json::to_value(&object).unwrap();
    if let Some(lost) = first_difference(doc, &back, "") {
        panic!(
            "{}: {} has a field its type does not know (or a value it changes): {lost}",
            origin.display(),
            type_name::<K>()
        );
    }
    object
}

fn type_name<K>() -> &'static str {
    std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or_default()
}

/// Where `written` differs from `read`, as a path (`spec.template...`).
fn first_difference(written: &Value, read: &Value, at: &str) -> Option<String> {
    match (written, read) {
        (Value::Object(w), Value::Object(r)) => {
            for (key, value) in w {
                let here = format!("{at}.{key}");
                match r.get(key) {
                    Some(v) => {
                        if let Some(d) = first_difference(value, v, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{here} is unknown")),
                }
            }
            None
        }
        (Value::Array(w), Value::Array(r)) if w.len() == r.len() => w
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (w, r))| first_difference(w, r, &format!("{at}[{i}]"))),
        // Quantities and int-or-string values may be written either way.
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if n.to_string() == *s =>
        {
            None
        }
        // A JSON number is a number: `0` and `0.0` (a schema's float bounds) are the same.
        (Value::Number(w), Value::Number(r)) if w.as_f64() == r.as_f64() => None,
        (w, r) if w == r => None,
        (w, r) => Some(format!("{at}: {w} became {r}")),
    }
}

/// The agent's DaemonSet (`deploy/base/daemonset.yaml`).
pub fn daemonset() -> DaemonSet {
    let docs = documents("base/daemonset.yaml");
    typed(&docs[0], &deploy_dir().join("base/daemonset.yaml"))
}

/// The DaemonSet's `agent` container.
pub fn agent_container() -> Container {
    daemonset()
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == "agent"))
        .expect("deploy/base/daemonset.yaml has a container named agent")
}

/// The capabilities the DaemonSet adds, as written (`BPF`, `PERFMON`...).
pub fn added_capabilities() -> Vec<String> {
    agent_container()
        .security_context
        .and_then(|s| s.capabilities)
        .and_then(|c| c.add)
        .unwrap_or_default()
}
