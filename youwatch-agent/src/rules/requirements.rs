//! `required_engine_version` and `required_plugin_versions` items: what a rules file needs
//! from the engine, checked against what the agent implements.

use super::{
    diagnostics::{Diagnostics, LoadError},
    document::{Kind, Node},
};

/// The Falco engine version whose condition language and fields the agent implements.
pub const ENGINE_VERSION: Version = Version(0, 57, 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

pub fn engine_version(v: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
    let what = "required_engine_version";
    let text = v.as_text().unwrap_or_default();
    let version = parse_version(&text, matches!(v.kind, Kind::Int(_))).ok_or_else(|| {
        LoadError::invalid(
            &v.pos,
            what,
            format!("{text:?} is not a version such as 0.57.0 (or a legacy integer such as 13)"),
        )
    })?;
    if version > ENGINE_VERSION {
        diag.warn(
            &v.pos,
            what,
            format!(
                "the file asks for Falco engine {version}; the agent implements the {ENGINE_VERSION} \
                 condition language: rules using newer fields are disabled, newer syntax is an error"
            ),
        );
    }
    Ok(())
}

/// `0.57.0`, or a legacy integer `N` meaning `0.N.0`.
fn parse_version(text: &str, integer: bool) -> Option<Version> {
    if integer {
        return text.parse().ok().map(|n| Version(0, n, 0));
    }
    let mut parts = text.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    // Tolerate a pre-release suffix: 0.57.0-rc1.
    let patch = parts.next()?.split(['-', '+']).next()?.parse().ok()?;
    Some(Version(major, minor, patch))
}

pub fn plugin_versions(v: &Node, diag: &mut Diagnostics) -> Result<(), LoadError> {
    let what = "required_plugin_versions";
    let Kind::Seq(plugins) = &v.kind else {
        return Err(LoadError::invalid(
            &v.pos,
            what,
            "must be a sequence of {name, version}",
        ));
    };
    for p in plugins {
        let name = p.get("name").and_then(Node::as_text).unwrap_or_default();
        let version = p.get("version").and_then(Node::as_text).unwrap_or_default();
        if name.is_empty() || version.is_empty() {
            return Err(LoadError::invalid(
                &p.pos,
                what,
                "each entry needs a name and a version",
            ));
        }
        let note = match name.as_str() {
            "container" | "k8smeta" => "the agent fills container.* and k8s.* itself",
            _ => {
                "the agent loads no Falco plugins; rules on that plugin's source or fields are disabled"
            }
        };
        diag.note(&p.pos, what, format!("plugin {name} {version}: {note}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{document, source::SourceFile};

    fn read_all(text: &str) -> Diagnostics {
        let f = SourceFile::new("f.yaml", text.to_owned());
        let mut d = Diagnostics::default();
        for node in document::parse(&f).unwrap() {
            let result = match (
                node.get("required_engine_version"),
                node.get("required_plugin_versions"),
            ) {
                (Some(v), _) => engine_version(v, &mut d),
                (_, Some(v)) => plugin_versions(v, &mut d),
                _ => Ok(()),
            };
            if let Err(e) = result {
                d.error(e);
            }
        }
        d
    }

    #[test]
    fn engine_versions() {
        let d = read_all("- required_engine_version: 0.57.0\n- required_engine_version: 13\n");
        assert!(d.errors.is_empty() && d.warnings.is_empty(), "{d:?}");
        let d = read_all("- required_engine_version: 9.0.0\n");
        assert_eq!(d.warnings.len(), 1);
        let d = read_all("- required_engine_version: banana\n");
        assert_eq!(d.errors.len(), 1);
        let d =
            read_all("- required_plugin_versions:\n    - name: container\n      version: 0.4.0\n");
        assert!(d.errors.is_empty() && d.warnings.is_empty());
        assert!(d.notes[0].message.contains("container"));
    }
}
