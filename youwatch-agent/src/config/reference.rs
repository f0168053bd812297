//! `docs/config.md`, generated from the commented default configuration (`config/default.yaml`,
//! what `youwatch-agent config default` prints): one section per top-level key, a table of
//! every setting (key path, default, meaning), and the section's YAML as the example to copy.
//! `youwatch-agent config default --markdown` prints it; `cargo xtask docs` writes it, and a
//! test keeps the file equal to it.

use std::fmt::Write;

/// One setting: its dotted path, default (as written) and the comment above it.
#[derive(Debug, PartialEq, Eq)]
struct Setting {
    path: String,
    default: String,
    meaning: String,
}

/// A top-level section: its comment, settings, and YAML text.
#[derive(Debug, Default)]
struct Section {
    name: String,
    intro: String,
    settings: Vec<Setting>,
    yaml: String,
}

/// The Markdown reference of `yaml` (the commented default configuration).
pub fn markdown(yaml: &str) -> String {
    let (preamble, sections) = parse(yaml);
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         <!-- Generated from youwatch-agent/config/default.yaml by `cargo xtask docs`; do not edit. -->\n\n",
    );
    out.push_str(&preamble);
    out.push_str(
        "\n\n`youwatch-agent config default` prints the commented YAML below as one file; \
         `youwatch-agent config check FILE` prints the effective configuration of FILE and every \
         error with its key path.\n\n",
    );
    for s in &sections {
        let _ = writeln!(out, "- [`{0}`](#{0})", s.name);
    }
    for s in sections {
        let _ = write!(out, "\n## `{}`\n\n", s.name);
        if !s.intro.is_empty() {
            let _ = write!(out, "{}\n\n", s.intro);
        }
        out.push_str("| key | default | meaning |\n| --- | --- | --- |\n");
        for set in &s.settings {
            let (default, meaning) = match (set.default.is_empty(), set.meaning.is_empty()) {
                (true, true) => ("(group)".to_owned(), "The settings below.".to_owned()),
                (false, true) => (
                    cell_code(&set.default),
                    "With the setting above.".to_owned(),
                ),
                (true, false) => ("(group)".to_owned(), cell(&set.meaning)),
                (false, false) => (cell_code(&set.default), cell(&set.meaning)),
            };
            let _ = writeln!(out, "| `{}` | {default} | {meaning} |", set.path);
        }
        let _ = write!(out, "\nExample (the defaults):\n\n```yaml\n{}```\n", s.yaml);
    }
    out
}

/// Splits the file into its preamble (the leading comment) and sections.
fn parse(yaml: &str) -> (String, Vec<Section>) {
    let mut preamble = String::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    // Keys of the enclosing mappings, by indentation.
    let mut stack: Vec<(usize, String)> = Vec::new();
    // Inside a block sequence (response.playbooks): the indentation of the key that owns it;
    // its items are shown in the example, not listed key by key.
    let mut sequence_of: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        // The section's text, as written (one blank line at most between blocks).
        if let Some(section) = sections.last_mut().filter(|s| {
            (indent > 0 || text.is_empty()) && !(text.is_empty() && s.yaml.ends_with("\n\n"))
        }) {
            section.yaml.push_str(line);
            section.yaml.push('\n');
        }
        if text.is_empty() {
            if sections.is_empty() && preamble.is_empty() {
                preamble = comment.join(" ");
            }
            comment.clear();
            continue;
        }
        if sequence_of.is_some_and(|owner| indent > owner) {
            continue;
        }
        sequence_of = None;
        if let Some(c) = text.strip_prefix('#') {
            // A bare `#` ends a section's opening paragraph: it introduces the section, not
            // the first setting.
            if let Some(s) = sections
                .last_mut()
                .filter(|s| c.trim().is_empty() && s.settings.is_empty() && s.intro.is_empty())
            {
                s.intro = comment.join(" ");
                comment.clear();
                continue;
            }
            comment.push(c.strip_prefix(' ').unwrap_or(c).to_owned());
            continue;
        }
        let meaning = comment.join(" ");
        comment.clear();
        if text.starts_with("- ") {
            // The first item of a sequence: the key above it owns it.
            if let (Some(section), Some((owner, _))) = (sections.last_mut(), stack.last()) {
                if let Some(set) = section.settings.last_mut() {
                    set.default = "(list, see the example)".to_owned();
                }
                sequence_of = Some(*owner);
            }
            continue;
        }
        let Some((key, value)) = text.split_once(':') else {
            continue;
        };
        let value = value.trim();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        if indent == 0 {
            sections.push(Section {
                name: key.to_owned(),
                intro: meaning,
                yaml: format!("{line}\n"),
                ..Section::default()
            });
            stack = vec![(0, key.to_owned())];
            continue;
        }
        let path = stack
            .iter()
            .map(|(_, k)| k.as_str())
            .chain([key])
            .collect::<Vec<_>>()
            .join(".");
        let Some(section) = sections.last_mut() else {
            continue;
        };
        section.settings.push(Setting {
            path,
            default: value.to_owned(),
            meaning,
        });
        if value.is_empty() {
            // A nested mapping (or a block sequence, found at its first item).
            stack.push((indent, key.to_owned()));
        }
    }
    for section in &mut sections {
        let trimmed = section.yaml.trim_end().len();
        section.yaml.truncate(trimmed);
        section.yaml.push('\n');
    }
    (preamble, sections)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn cell_code(value: &str) -> String {
    if value.starts_with('(') {
        value.to_owned()
    } else {
        format!("`{}`", value.replace('|', "\\|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "# Top comment.\n\nagent:\n  # About agents.\n  #\n  # The node.\n  node_name: \"\"\n  # State.\n  state_dir: /var/lib/youwatch\n\nresponse:\n  # Books.\n  playbooks:\n    - name: a\n      when:\n        origins: [rules]\n  # Grace.\n  shutdown_grace: 20s\n  retry:\n    # Backoff.\n    initial_backoff: 100ms\n";

    #[test]
    fn every_key_with_its_default_and_meaning() {
        let (preamble, sections) = parse(YAML);
        assert_eq!(preamble, "Top comment.");
        assert_eq!(sections[0].name, "agent");
        assert_eq!(sections[0].intro, "About agents.");
        assert_eq!(sections[0].settings[0].meaning, "The node.");
        assert_eq!(
            sections[0].settings[1],
            Setting {
                path: "agent.state_dir".into(),
                default: "/var/lib/youwatch".into(),
                meaning: "State.".into()
            }
        );
        let paths: Vec<&str> = sections[1]
            .settings
            .iter()
            .map(|s| s.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "response.playbooks",
                "response.shutdown_grace",
                "response.retry",
                "response.retry.initial_backoff"
            ]
        );
        assert!(
            sections[1].yaml.contains("    - name: a\n"),
            "{}",
            sections[1].yaml
        );
        let md = markdown(YAML);
        assert!(
            md.contains("| `response.retry.initial_backoff` | `100ms` | Backoff. |"),
            "{md}"
        );
    }
}
