//! `youwatch-agent rules check` / `rules list` / `rules replay`: per-rule status, positions,
//! exit codes, alerts from recorded execs; and a rule error stops the agent at start-up with
//! the position, before it touches the kernel.

use std::process::Command;

use youwatch_agent::rules::sample::Exec;

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

#[test]
fn replay_prints_falco_alerts_for_recorded_execs() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine.yaml");
    std::fs::write(
        &mine,
        "- rule: Curl to a metadata address\n  desc: d\n  condition: evt.type = execve and proc.name = curl and proc.args contains 169.254.169.254\n  output: metadata fetch %proc.cmdline in %k8s.pod.name\n  priority: ERROR\n  tags: [cloud]\n",
    )
    .unwrap();
    // Execs as `--dry-run` prints them, one JSON object per line.
    let terminal = Exec::new(["bash"])
        .ancestor(["runc"])
        .tty(34816)
        .pod("shop", "juice-shop-1")
        .build();
    let curl = Exec::new(["curl", "-s", "http://169.254.169.254/latest/meta-data/"])
        .ancestor(["sh", "-c", "x"])
        .pod("shop", "juice-shop-1")
        .build();
    let ls = Exec::new(["ls", "/"]).pod("shop", "juice-shop-1").build();
    let events = dir.path().join("execs.jsonl");
    let lines: Vec<String> = [&terminal, &ls, &curl]
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let (ok, stdout, stderr) = run(&[
        "rules",
        "replay",
        "--rules",
        STABLE,
        mine.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rules: Vec<&str> = alerts.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        ["Terminal shell in container", "Curl to a metadata address"]
    );
    assert_eq!(alerts[1]["priority"], "Error");
    assert_eq!(alerts[1]["source"], "syscall");
    assert_eq!(alerts[1]["output_fields"]["k8s.pod.name"], "juice-shop-1");
    assert!(
        alerts[1]["output"].as_str().unwrap().ends_with(
            "Error metadata fetch curl -s http://169.254.169.254/latest/meta-data/ in juice-shop-1"
        ),
        "{}",
        alerts[1]
    );
    assert!(
        stderr.contains("3 events, 2 alerts, 0 lines skipped"),
        "{stderr}"
    );

    // A line that is not an exec is named by its number, and the exit code says so.
    std::fs::write(
        &events,
        format!("{}\n{{\"event\": {{\"pid\": 1}}}}\n", lines[0]),
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&[
        "rules",
        "replay",
        "--rules",
        STABLE,
        events.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        stderr.contains(&format!("{}:2: not an exec event", events.display())),
        "{stderr}"
    );

    // Broken rules: nothing is replayed.
    std::fs::write(
        &mine,
        "- rule: X\n  desc: d\n  condition: proc.name in (a\n  output: o\n  priority: INFO\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&[
        "rules",
        "replay",
        "--rules",
        mine.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert!(!ok && stdout.is_empty());
    assert!(stderr.contains("syntax error in condition"), "{stderr}");
}
