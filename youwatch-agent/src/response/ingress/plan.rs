//! Client dry-run (`--dry-run`, or a playbook's `dry_run`): print the exact PATCH an action
//! would send — computed from the Ingress as watched, with its resourceVersion — and send
//! nothing. Without a cluster the Ingress cannot be resolved: the plan says what would be
//! looked up, with the change to an Ingress without annotations.

use std::collections::BTreeMap;

use super::{
    coalesce::Done,
    edit::{self, Names, Op, Verdict},
    index::IngressIndex,
    patch::{self, IngressKey},
};
use crate::response::{
    Finished,
    action::Decided,
    dry_run::{PlannedRequest, print_planned},
    metrics::Outcome,
};

/// Prints the PATCH `op` calls for on `key`, if any; what it would do.
pub fn plan(
    names: &Names,
    index: Option<&IngressIndex>,
    decided: &Decided,
    key: &IngressKey,
    op: &Op,
) -> Done {
    let known = index.and_then(|i| i.get(key));
    let annotations = known.as_deref().map(patch::annotations).unwrap_or_default();
    let mut e = edit::edit(&annotations, names, std::slice::from_ref(op));
    if !e.changes.is_empty() {
        print_planned(
            decided,
            &patch::planned(key, known.as_deref(), &e),
            Some(
                "JSON merge patch (application/merge-patch+json); on 409 Conflict the Ingress is re-read and the change recomputed",
            ),
        );
    }
    Done {
        verdict: e.verdicts.pop().unwrap_or(Verdict::NothingToRemove),
        uid: known.and_then(|i| i.metadata.uid.clone()),
    }
}

/// Prints the change `op` makes to an Ingress without annotations, for `wanted` (the
/// Ingresses that could not be looked up).
pub fn plan_unresolved(names: &Names, decided: &Decided, op: &Op, wanted: &str) -> Finished {
    let e = edit::edit(&BTreeMap::new(), names, std::slice::from_ref(op));
    let request = PlannedRequest {
        method: "PATCH",
        path: format!("/apis/networking.k8s.io/v1/namespaces/<namespace>/ingresses/<{wanted}>"),
        body: patch::patch_body(None, &e.changes),
    };
    let note = format!(
        "no cluster: {wanted} and their annotations cannot be read; the body is the change to an Ingress without them (the user's entries are kept, resourceVersion is the one read)"
    );
    print_planned(decided, &request, Some(&note));
    Finished::new(Outcome::DryRun, "planned (client dry-run, no cluster)")
}
