//! Falco's stable, incubating and sandbox rulesets together: no exec rule lacks a field any
//! more, and the rules that needed the sensor's process state (pid namespace, login uid,
//! capabilities, environment, cwd) or the pod spec (privileged, mounts) fire on the execs
//! they describe and stay quiet on near-misses.

mod rules_support;

use rules_support::{engine, fired, incubating_rules, load_ok, sandbox_rules, stable_rules};
use youwatch_agent::{
    event::{Capabilities, EnrichedExec, MountInfo},
    rules::{Engine, RuleMatching, Status, Unsupported, sample::Exec},
};

/// /dev/pts/0
const PTS0: u32 = 34816;
const CAP_SYS_ADMIN: u64 = 1 << 21;
/// The default capability set of containerd and docker containers.
const DEFAULT_CAPS: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 13)
    | (1 << 18)
    | (1 << 27)
    | (1 << 29)
    | (1 << 31);

#[test]
fn every_exec_rule_of_the_three_rulesets_is_evaluable() {
    let set = load_ok(&[stable_rules(), incubating_rules(), sandbox_rules()]);
    let lacking: Vec<&str> = set
        .infos
        .iter()
        .filter(|i| matches!(i.status, Status::Unsupported(Unsupported::Needs(_))))
        .map(|i| i.name.as_str())
        .collect();
    assert!(lacking.is_empty(), "rules lacking a field: {lacking:?}");
    let count = |f: fn(&Status) -> bool| set.infos.iter().filter(|i| f(&i.status)).count();
    assert_eq!(set.infos.len(), 93);
    assert_eq!(count(|s| *s == Status::Evaluable), 38);
    // "Container Run as Root User" (sandbox) is `enabled: false` upstream.
    assert_eq!(count(|s| matches!(s, Status::Off(_))), 1);
    assert_eq!(
        count(|s| matches!(s, Status::Unsupported(Unsupported::EventTypes(_)))),
        54
    );
}

fn all() -> Engine {
    engine(
        &[stable_rules(), incubating_rules(), sandbox_rules()],
        RuleMatching::All,
    )
}

fn fires(engine: &Engine, exec: &EnrichedExec, rule: &str) -> bool {
    fired(engine, exec).iter().any(|(name, _)| name == rule)
}

/// The first process of a container (`proc.vpid=1`): Falco's `container_started`.
fn container_start(privileged: bool, caps: u64, mounts: Vec<MountInfo>) -> EnrichedExec {
    let mut exec = Exec::new(["/nodejs/bin/node", "build/app.js"])
        .ancestor(["containerd-shim-runc-v2"])
        .pod("shop", "juice-shop-6f7d9")
        .build();
    exec.event.vpid = Some(1);
    exec.event.vpgid = Some(1);
    exec.event.caps = Some(Capabilities {
        inheritable: 0,
        permitted: caps,
        effective: caps,
    });
    let c = exec.container.as_mut().unwrap();
    c.privileged = Some(privileged);
    c.mounts = Some(mounts);
    exec
}

fn with_env(mut exec: EnrichedExec, env: &[&str]) -> EnrichedExec {
    exec.event.env = env.iter().collect();
    exec
}

fn with_loginuid(mut exec: EnrichedExec, loginuid: u32) -> EnrichedExec {
    exec.event.loginuid = loginuid;
    exec
}

#[test]
fn container_start_rules() {
    let engine = all();
    let plain = container_start(false, DEFAULT_CAPS, Vec::new());
    let privileged = container_start(true, u64::MAX >> 23, Vec::new());
    let capable = container_start(false, DEFAULT_CAPS | CAP_SYS_ADMIN, Vec::new());
    assert!(fires(&engine, &privileged, "Launch Privileged Container"));
    assert!(!fires(&engine, &plain, "Launch Privileged Container"));
    assert!(fires(
        &engine,
        &capable,
        "Launch Excessively Capable Container"
    ));
    assert!(fires(
        &engine,
        &privileged,
        "Launch Excessively Capable Container"
    ));
    assert!(!fires(
        &engine,
        &plain,
        "Launch Excessively Capable Container"
    ));
    // Not the container's first process: nothing of that kind.
    let mut later = privileged.clone();
    later.event.vpid = Some(42);
    for rule in [
        "Launch Privileged Container",
        "Launch Excessively Capable Container",
        "Launch Sensitive Mount Container",
    ] {
        assert!(!fires(&engine, &later, rule), "{rule}");
    }

    // The container plugin searches mount sources with a regex and the rule asks for "not in
    // (<NA>, N/A)", so in Falco any container start matches `sensitive_mount`, mounts or not.
    let docker_sock = MountInfo {
        source: "/var/run/docker.sock".into(),
        dest: "/var/run/docker.sock".into(),
        mode: String::new(),
        rdwr: true,
        propagation: "private".into(),
    };
    let sensitive = container_start(false, DEFAULT_CAPS, vec![docker_sock]);
    assert!(fires(
        &engine,
        &sensitive,
        "Launch Sensitive Mount Container"
    ));
    assert!(fires(&engine, &plain, "Launch Sensitive Mount Container"));
}

#[test]
fn privileged_container_tools() {
    let engine = all();
    let mount = |privileged: bool, args: &[&str]| {
        let mut argv = vec!["mount"];
        argv.extend_from_slice(args);
        let mut exec = Exec::new(argv)
            .ancestor(["sh"])
            .container("tools", "docker.io/library/debian:12")
            .build();
        exec.container.as_mut().unwrap().privileged = Some(privileged);
        exec
    };
    let rule = "Mount Launched in Privileged Container";
    assert!(fires(&engine, &mount(true, &["/dev/sda1", "/mnt"]), rule));
    assert!(!fires(&engine, &mount(false, &["/dev/sda1", "/mnt"]), rule));
    assert!(
        !fires(&engine, &mount(true, &["-l"]), rule),
        "listing mounts"
    );
}

#[test]
fn environment_rules() {
    let engine = all();
    let curl = || {
        Exec::new(["curl", "http://internal/"])
            .ancestor(["sh"])
            .build()
    };
    let rule = "Program run with disallowed http proxy env";
    assert!(fires(
        &engine,
        &with_env(curl(), &["PATH=/usr/bin", "http_proxy=http://evil:3128"]),
        rule
    ));
    assert!(!fires(&engine, &with_env(curl(), &["PATH=/usr/bin"]), rule));

    let rule = "Potential Local Privilege Escalation via Environment Variables Misuse";
    let su = || {
        Exec::new(["/usr/bin/su", "--help"])
            .ancestor(["bash"])
            .build()
    };
    assert!(fires(
        &engine,
        &with_env(su(), &["GLIBC_TUNABLES=glibc.tune.x=AAAA"]),
        rule
    ));
    assert!(!fires(&engine, &with_env(su(), &["LANG=C"]), rule));
}

#[test]
fn login_uid_rules() {
    let engine = all();
    let sudoedit = || {
        Exec::new(["sudoedit", "-s", "AAAA\\"])
            .ancestor(["bash"])
            .build()
    };
    let rule = "Sudo Potential Privilege Escalation";
    assert!(fires(&engine, &with_loginuid(sudoedit(), 1000), rule));
    assert!(!fires(&engine, &with_loginuid(sudoedit(), 0), rule));

    let pkexec = || Exec::new(["pkexec"]).ancestor(["bash"]).build();
    let rule = "Polkit Local Privilege Escalation Vulnerability (CVE-2021-4034)";
    assert!(fires(&engine, &with_loginuid(pkexec(), 1000), rule));
    // No login session at all (a container's processes): -1, not 0.
    assert!(fires(&engine, &with_loginuid(pkexec(), u32::MAX), rule));
    assert!(!fires(&engine, &with_loginuid(pkexec(), 0), rule));
}

#[test]
fn interactive_reconnaissance_is_the_group_leader() {
    let engine = all();
    let whoami = |vpid: u32, vpgid: u32| {
        let mut exec = Exec::new(["whoami"])
            .ancestor(["bash"])
            .tty(PTS0)
            .pod("shop", "juice-shop-6f7d9")
            .build();
        exec.event.vpid = Some(vpid);
        exec.event.vpgid = Some(vpgid);
        exec
    };
    let rule = "Basic Interactive Reconnaissance";
    // Typed at the shell: the shell makes it its own process group.
    assert!(fires(&engine, &whoami(31, 31), rule));
    // Run by a script: in the script's group.
    assert!(!fires(&engine, &whoami(31, 12), rule));
}
