//! `youwatch-agent rules check` / `rules list`: per-rule status, positions, exit codes; and a
//! rule error stops the agent at start-up with the position, before it touches the kernel.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_youwatch-agent"))
}

const STABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/falco/falco_rules.yaml"
);

fn run(args: &[&str]) -> (bool, String, String) {
    let out = agent().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.success(), stdout, stderr)
}

#[test]
fn check_the_stable_ruleset() {
    let (ok, stdout, _) = run(&["rules", "check", STABLE]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("ok  Notice        Terminal shell in container"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok  Warning       Execution from /dev/shm"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Contact K8S API Server From Container")
            && stdout.contains("needs evt.type connect"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("25 rules: 11 evaluable on exec events, 0 switched off, 14 not evaluable; 0 errors, 0 warnings\n"),
        "{stdout}"
    );
}

#[test]
fn check_reports_syntax_errors_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "- rule: Bad\n  desc: x\n  condition: >\n    proc.name = bash and\n    proc.args in (a, b\n  output: x\n  priority: WARNING\n- rule: Good\n  desc: y\n  condition: proc.name = sh\n  output: y\n  priority: NOTICE\n",
    )
    .unwrap();
    let (ok, stdout, _) = run(&["rules", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    let line = format!(
        "error: {}:5:23: rule \"Bad\": syntax error in condition: expected ',' or ')' in the list",
        bad.display()
    );
    assert!(stdout.contains(&line), "{stdout}");
    assert!(stdout.contains("ok  Notice        Good"), "{stdout}");
    // A file that overrides the defaults is checked with them.
    let tune = dir.path().join("tune.yaml");
    std::fs::write(
        &tune,
        "- rule: Package manager run in container\n  enabled: false\n",
    )
    .unwrap();
    assert!(!run(&["rules", "check", tune.to_str().unwrap()]).0);
    let (ok, stdout, _) = run(&["rules", "check", "--with-defaults", tune.to_str().unwrap()]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("off Error         Package manager run in container"),
        "{stdout}"
    );
}

#[test]
fn list_follows_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("rules:\n  files: [{STABLE}]\n  disable:\n    tags: [network]\n  min_priority: warning\n"),
    )
    .unwrap();
    let (ok, stdout, _) = run(&["rules", "list", "-c", config.to_str().unwrap()]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("off: rules.disable.tags (network)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("off: below rules.min_priority (Warning)"),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&["rules", "list", "--print-defaults"]);
    assert!(ok && stdout.contains("- rule: Shell spawned in Juice Shop pod"));
}

#[test]
fn the_agent_refuses_broken_rules_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yaml");
    std::fs::write(
        &rules,
        "- rule: X\n  desc: x\n  condition: no_such_macro\n  output: x\n  priority: INFO\n",
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "rules:\n  files: [{}]\ntelemetry:\n  listen: \"\"\n",
            rules.display()
        ),
    )
    .unwrap();
    let (ok, _, stderr) = run(&["--dry-run", "-c", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{}:3:14: rule \"X\": undefined macro 'no_such_macro'",
            rules.display()
        )),
        "{stderr}"
    );
}
