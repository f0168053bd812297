//! The pods the response read from the API server, by namespace/name: what a later reader
//! needs once the pod is gone. A Falco alert names a pod without its uid or labels; the
//! deletion reads the pod first and deletes it milliseconds later, so the correlation, which
//! needs the pod's labels to find its Services, would find nothing left to read.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
};

/// Reads kept, at most (the most recent; a lookup happens within a second of the read).
const KEPT: usize = 256;

/// What a read told about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRead {
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Shared between the deletion and the correlation; cheap to clone.
#[derive(Clone, Default)]
pub struct PodReads(Arc<Mutex<VecDeque<(String, String, PodRead)>>>);

impl PodReads {
    /// Remembers what was read of `namespace/name`.
    pub fn record(&self, namespace: &str, name: &str, read: PodRead) {
        let mut reads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        reads.retain(|(ns, n, _)| !(ns == namespace && n == name));
        if reads.len() >= KEPT {
            reads.pop_front();
        }
        reads.push_back((namespace.to_owned(), name.to_owned(), read));
    }

    /// The last read of `namespace/name`, if still kept.
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodRead> {
        let reads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        reads
            .iter()
            .rev()
            .find(|(ns, n, _)| ns == namespace && n == name)
            .map(|(_, _, r)| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(uid: &str) -> PodRead {
        PodRead {
            uid: Some(uid.into()),
            labels: [("app".to_owned(), "shop".to_owned())].into(),
        }
    }

    #[test]
    fn the_last_read_of_a_pod_is_kept_and_the_oldest_go_first() {
        let reads = PodReads::default();
        reads.record("shop", "web-1", read("a"));
        reads.record("shop", "web-1", read("b"));
        assert_eq!(reads.get("shop", "web-1"), Some(read("b")));
        assert_eq!(reads.get("other", "web-1"), None);
        for i in 0..KEPT {
            reads.record("ns", &format!("p{i}"), read("x"));
        }
        assert_eq!(reads.get("shop", "web-1"), None, "pushed out");
        assert!(reads.get("ns", "p0").is_some());
        assert_eq!(reads.0.lock().unwrap().len(), KEPT);
    }
}
