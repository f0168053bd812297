//! Pods from the API server (JSON) into what the inventory keeps: never panic, and a UID that
//! is accepted is safe to put in a path.
#![no_main]

use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use youwatch_agent::inventory::{layout::KubepodsRoot, pod::PodRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(pod) = serde_json::from_slice::<Pod>(data) else {
        return;
    };
    if let Ok(record) = PodRecord::from_pod(&pod) {
        let root = KubepodsRoot::new("/sys/fs/cgroup/kubepods.slice".into());
        for dir in root.pod_dirs(&record.cgroup_uid, record.qos) {
            assert!(dir.starts_with(&root.path));
            assert!(!dir.to_string_lossy().contains(".."), "{dir:?}");
        }
        for c in &record.containers {
            if let Some(id) = &c.id {
                let _ = c.info(id);
            }
        }
        let _ = record.only_unstarted();
    }
});
