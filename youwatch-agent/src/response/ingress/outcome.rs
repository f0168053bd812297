//! One outcome for an action that touched several Ingresses, and a detail naming each.

use crate::response::{
    DryRun, Finished,
    metrics::Outcome,
    retry::{ErrorClass, Failure},
};

/// The per-Ingress results of one action.
#[derive(Default)]
pub struct Tally {
    pub applied: Vec<String>,
    pub already: Vec<String>,
    pub refused: Vec<String>,
    pub failed: Vec<(String, Failure)>,
}

impl Tally {
    /// One outcome: a failure anywhere fails the action (a later detection retries; the
    /// Ingresses already done then say so), else applied anywhere, else refused, else
    /// already done. The detail (logged by the stage, in the action alert) names each
    /// Ingress and why.
    pub fn finish(self, dry: DryRun, what: &str) -> Finished {
        let mut parts = Vec::new();
        if !self.applied.is_empty() {
            parts.push(format!("{what} on {}", listed(&self.applied, ", ")));
        }
        if !self.refused.is_empty() {
            parts.push(format!("refused on {}", listed(&self.refused, "; ")));
        }
        if !self.already.is_empty() {
            parts.push(format!("nothing to do on {}", listed(&self.already, "; ")));
        }
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|(key, f)| format!("{key}: {f}"))
            .collect();
        if !failed.is_empty() {
            parts.push(format!("failed on {}", listed(&failed, "; ")));
        }
        let detail = parts.join("; ");
        let outcome = if !self.failed.is_empty() {
            if self
                .failed
                .iter()
                .any(|(_, f)| f.class == ErrorClass::Transient)
            {
                Outcome::GaveUp
            } else {
                Outcome::Failed
            }
        } else if !self.applied.is_empty() {
            if dry == DryRun::Off {
                Outcome::Applied
            } else {
                Outcome::DryRun
            }
        } else if !self.refused.is_empty() {
            Outcome::Refused
        } else {
            Outcome::AlreadyDone
        };
        Finished::new(outcome, detail)
    }
}

/// Ingresses named in an action's detail at most (a host-less ban may touch them all).
const MAX_LISTED: usize = 10;

/// `items` joined, the first [`MAX_LISTED`] of them.
fn listed(items: &[String], separator: &str) -> String {
    let mut text = items[..items.len().min(MAX_LISTED)].join(separator);
    if items.len() > MAX_LISTED {
        text.push_str(&format!("{separator}and {} more", items.len() - MAX_LISTED));
    }
    text
}

pub fn failed(doing: &str, f: &Failure) -> Finished {
    let outcome = if f.class == ErrorClass::Transient {
        Outcome::GaveUp
    } else {
        Outcome::Failed
    };
    Finished::new(outcome, format!("{doing}: {f}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(class: ErrorClass) -> Failure {
        Failure {
            class,
            message: "m".into(),
        }
    }

    #[test]
    fn a_failure_anywhere_fails_the_action_else_applied_wins() {
        let tally = |applied: &[&str], refused: &[&str], failed: Option<ErrorClass>| Tally {
            applied: applied.iter().map(|s| s.to_string()).collect(),
            already: vec!["shop/c: denied".into()],
            refused: refused.iter().map(|s| s.to_string()).collect(),
            failed: failed
                .map(|c| vec![("shop/d".to_owned(), failure(c))])
                .unwrap_or_default(),
        };
        let off = DryRun::Off;
        let f = tally(&["shop/a"], &["shop/b: full"], None).finish(off, "client x");
        assert_eq!(f.outcome, Outcome::Applied);
        assert_eq!(
            f.detail,
            "client x on shop/a; refused on shop/b: full; nothing to do on shop/c: denied"
        );
        let t = tally(&["shop/a"], &[], Some(ErrorClass::Transient));
        assert_eq!(t.finish(off, "x").outcome, Outcome::GaveUp);
        let t = tally(&[], &["shop/b"], Some(ErrorClass::Permanent));
        assert_eq!(t.finish(off, "x").outcome, Outcome::Failed);
        assert_eq!(
            tally(&[], &["b"], None).finish(off, "x").outcome,
            Outcome::Refused
        );
        assert_eq!(
            tally(&[], &[], None).finish(off, "x").outcome,
            Outcome::AlreadyDone
        );
        assert_eq!(
            tally(&["a"], &[], None).finish(DryRun::Server, "x").outcome,
            Outcome::DryRun
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let items: Vec<String> = (0..12).map(|i| format!("ns/i{i}")).collect();
        let text = listed(&items, ", ");
        assert!(
            text.starts_with("ns/i0, ns/i1") && text.ends_with("ns/i9, and 2 more"),
            "{text}"
        );
    }
}
