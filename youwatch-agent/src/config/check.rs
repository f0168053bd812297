//! `youwatch-agent config check FILE`: every error of a configuration file with its key path
//! (`response.playbooks[1].when.min_priority: unknown priority "hgih"`), then the checks each
//! stage makes at start-up (WAF scoring, playbooks, rule files, the listen address), and the
//! effective configuration: the file laid over the embedded defaults (a bad key takes its
//! default there).
//!
//! serde stops at the first error. To report them all, the file is also read as a plain YAML
//! tree, deserialized with its path tracked, and each bad key is taken out (so it falls back
//! to its default) before the next try.

use std::path::Path;

use serde_json::Value;

use super::{Config, DEFAULT_YAML};

/// Errors reported at most (a file of garbage need not list thousands).
const MAX_PROBLEMS: usize = 50;

/// What `config check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The configuration the agent would run with (the file over the defaults), as YAML.
    pub effective: Option<String>,
    /// Every problem, each starting with its key path.
    pub problems: Vec<String>,
}

/// Checks `text`, the contents of `origin`.
pub fn check(text: &str, origin: &Path) -> CheckReport {
    let tree = match yaml_tree(text) {
        Ok(tree) => tree,
        Err(message) => {
            return CheckReport {
                effective: None,
                problems: vec![message],
            };
        }
    };
    let (problems, tree) = match Config::parse(text, origin) {
        Ok(config) => (semantic_problems(&config), tree),
        Err(authoritative) => {
            let (mut problems, cleaned) = key_problems(tree);
            if problems.is_empty() {
                problems.push(authoritative.to_string());
            }
            (problems, cleaned)
        }
    };
    let effective = yaml_tree(DEFAULT_YAML).ok().map(|mut defaults| {
        overlay(&mut defaults, tree);
        serde_saphyr::to_string(&defaults).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    });
    CheckReport {
        effective,
        problems,
    }
}

/// The file as a YAML tree; an empty (or all-comment) file is an empty mapping.
fn yaml_tree(text: &str) -> Result<Value, String> {
    match serde_saphyr::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(Value::Object(Default::default())),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// Deserializes `tree` again and again, taking out each bad key (so it takes its default),
/// until it passes. Returns the problems and what is left of the tree.
fn key_problems(mut tree: Value) -> (Vec<String>, Value) {
    let mut problems = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let err = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(_) => break,
            Err(e) => e,
        };
        let path = err.path().to_string();
        let message = err.inner().to_string();
        problems.push(if path == "." {
            message.clone()
        } else {
            format!("{path}: {message}")
        });
        // An unknown key is reported at its own path; take it out, or the bad value.
        let mut segments = segments(&path);
        if let Some(unknown) = unknown_field(&message)
            && segments
                .last()
                .is_none_or(|s| *s != Segment::Key(unknown.clone()))
        {
            segments.push(Segment::Key(unknown));
        }
        if !remove(&mut tree, &segments) {
            break;
        }
    }
    (problems, tree)
}

/// The checks the stages make when the agent starts (beyond what the types enforce).
fn semantic_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = config.enforce.validate() {
        problems.push(e);
    }
    if let Err(e) = config.waf.validate() {
        problems.push(e);
    }
    if let Err(e) = config.response.validate() {
        problems.push(e.to_string());
    }
    if let Err(e) = config.telemetry.listen_addr() {
        problems.push(e);
    }
    if let Err(e) = config
        .rules
        .engine(String::new(), crate::rules::RulesMetrics::default())
    {
        problems.push(format!("rules: {e:#}"));
    }
    problems
}

/// Lays `over` onto `base`: mappings merge key by key, anything else replaces.
fn overlay(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => overlay(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `a.b[1].c` as segments.
fn segments(path: &str) -> Vec<Segment> {
    if path == "." {
        return Vec::new();
    }
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Segment::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            out.push(Segment::Key(rest.to_owned()));
        }
    }
    out
}

/// serde's "unknown field `x`, expected ..." → `x`.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// Takes the node at `path` out of `tree`; false when there is none (or it is the root).
fn remove(tree: &mut Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for seg in parents {
        node = match (node, seg) {
            (Value::Object(m), Segment::Key(k)) => match m.get_mut(k) {
                Some(n) => n,
                None => return false,
            },
            (Value::Array(a), Segment::Index(i)) => match a.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (node, last) {
        (Value::Object(m), Segment::Key(k)) => m.remove(k).is_some(),
        // A bad list item becomes an empty mapping, so the indexes of the rest hold.
        (Value::Array(a), Segment::Index(i)) if *i < a.len() => {
            a[*i] = Value::Object(Default::default());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> CheckReport {
        check(text, Path::new("my.yaml"))
    }

    #[test]
    fn every_error_is_named_by_its_key_path() {
        let report = run(
            "agent:\n  nod_name: x\nresponse:\n  playbooks:\n    - name: a\n      actions: [delete_pod]\n    - name: b\n      when:\n        min_priority: hgih\n      actions: [delete_pod]\nwaf:\n  scoring:\n    threshold: many\n",
        );
        let all = report.problems.join("\n");
        assert_eq!(report.problems.len(), 3, "{all}");
        assert!(
            all.contains("agent.nod_name: unknown field `nod_name`"),
            "{all}"
        );
        assert!(
            all.contains("response.playbooks[1].when.min_priority: ") && all.contains("hgih"),
            "{all}"
        );
        assert!(all.contains("waf.scoring.threshold: "), "{all}");
        let effective = report.effective.unwrap();
        assert!(
            !effective.contains("nod_name") && !effective.contains("hgih"),
            "{effective}"
        );
    }

    #[test]
    fn semantic_checks_of_the_stages_are_reported() {
        let report = run("waf:\n  scoring:\n    threshold: 0\ntelemetry:\n  listen: nowhere\n");
        let all = report.problems.join("\n");
        assert!(
            all.contains("waf.scoring.threshold must be at least 1"),
            "{all}"
        );
        assert!(all.contains("telemetry.listen \"nowhere\""), "{all}");
    }

    #[test]
    fn the_effective_config_is_the_file_over_the_defaults() {
        let report = run("agent:\n  state_dir: /tmp/yw\n");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let effective = report.effective.unwrap();
        let parsed = Config::parse(&effective, Path::new("effective")).unwrap();
        let mut expected = Config::default();
        expected.agent.state_dir = "/tmp/yw".into();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn a_yaml_syntax_error_is_reported() {
        let report = run("agent: [\n");
        assert!(report.effective.is_none());
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    }

    #[test]
    fn paths_split_into_keys_and_indexes() {
        assert_eq!(
            segments("response.playbooks[1].when"),
            [
                Segment::Key("response".into()),
                Segment::Key("playbooks".into()),
                Segment::Index(1),
                Segment::Key("when".into())
            ]
        );
        assert_eq!(
            unknown_field("unknown field `nod_name`, expected one of"),
            Some("nod_name".into())
        );
    }
}
