//! Field values of one exec event. Strings that must be assembled (`proc.args`,
//! `proc.cmdline`) are built at most once per event, on first use.

use std::{borrow::Cow, cell::OnceCell, time::UNIX_EPOCH};

use super::{Arg, Field, FieldSpec, capabilities};
use crate::event::{ContainerInfo, EnrichedExec, Environ, PodInfo, ProcessInfo};

/// A field value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    Num(i64),
    Bool(bool),
    /// A list of strings (transformer results).
    List(Vec<Cow<'a, str>>),
}

impl Val<'_> {
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Val::Str(s) => serde_json::Value::String(s.into_owned()),
            Val::Num(n) => n.into(),
            Val::Bool(b) => b.into(),
            Val::List(items) => items.into_iter().map(Cow::into_owned).collect(),
        }
    }

    /// As Falco writes it in an output (a list as `(a,b)`).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Val::Str(s) => out.push_str(s),
            Val::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::List(items) => {
                out.push('(');
                out.push_str(&items.join(","));
                out.push(')');
            }
        }
    }

    /// The value as text (numbers in decimal).
    pub fn to_text(&self) -> String {
        match self {
            Val::Str(s) => s.to_string(),
            other => {
                let mut s = String::new();
                other.render(&mut s);
                s
            }
        }
    }
}

/// One event as rules see it.
pub struct EventView<'a> {
    exec: &'a EnrichedExec,
    num: u64,
    hostname: &'a str,
    args: OnceCell<String>,
    cmdline: OnceCell<String>,
    env: OnceCell<String>,
}

impl<'a> EventView<'a> {
    /// `num` is the event's sequence number (`evt.num`, from 1); `hostname` is
    /// `evt.hostname` (the node name).
    pub fn new(exec: &'a EnrichedExec, num: u64, hostname: &'a str) -> Self {
        Self {
            exec,
            num,
            hostname,
            args: OnceCell::new(),
            cmdline: OnceCell::new(),
            env: OnceCell::new(),
        }
    }

    pub fn exec(&self) -> &'a EnrichedExec {
        self.exec
    }

    /// The value of a single-valued field; `None` when the event does not carry it.
    pub fn get(&self, spec: &FieldSpec) -> Option<Val<'_>> {
        use Field::*;
        let ex = self.exec;
        let p = &ex.process;
        let num = |n: u64| Some(Val::Num(i64::try_from(n).unwrap_or(i64::MAX)));
        let s = |v: &'a str| Some(Val::Str(Cow::Borrowed(v)));
        let container = |f: fn(&'a ContainerInfo) -> &'a String| {
            ex.container
                .as_ref()
                .map(f)
                .and_then(|v| non_empty(v))
                .and_then(s)
        };
        let pod = |f: fn(&'a PodInfo) -> &'a String| {
            ex.pod
                .as_ref()
                .map(f)
                .and_then(|v| non_empty(v))
                .and_then(s)
        };
        match spec.field {
            EvtType | EvtDir | EvtSource | EvtCategory | EvtRes | EvtRawres | EvtFailed
            | ThreadIsmain => spec.field.constant(),
            EvtNum => num(self.num),
            EvtTime | EvtTimeS | EvtTimeIso8601 | EvtDatetime => {
                Some(Val::Str(format_time(self.nanos(), spec.field).into()))
            }
            EvtRawtime | EvtRawtimeNs => num(self.nanos()),
            EvtRawtimeS => num(self.nanos() / 1_000_000_000),
            EvtHostname => non_empty(self.hostname).and_then(s),
            ProcName => non_empty(&p.name).and_then(s),
            ProcExe => non_empty(&p.exe).and_then(s),
            ProcExepath => non_empty(&p.exepath).and_then(s),
            ProcArgs => Some(Val::Str(match spec.arg {
                Arg::Index(n) => Cow::Borrowed(p.args.get(n).map_or("", String::as_str)),
                _ => Cow::Borrowed(self.args()),
            })),
            ProcCmdline => Some(Val::Str(Cow::Borrowed(self.cmdline()))),
            ProcExeline => {
                let mut line = p.exe.clone();
                if !p.args.is_empty() {
                    line.push(' ');
                    line.push_str(self.args());
                }
                Some(Val::Str(line.into()))
            }
            ProcCmdnargs => num(p.args.len() as u64),
            ProcCmdlenargs => num(p.args.iter().map(|a| a.len() as u64).sum()),
            ProcPid => num(p.pid.into()),
            ProcPpid => num(ex.event.ppid.into()),
            ProcTty => num(ex.event.tty.into()),
            ThreadTid => num(ex.event.pid.into()),
            ProcPname => self.ancestor_value(Field::ProcAname, 1),
            ProcPexe => self.ancestor_value(Field::ProcAexe, 1),
            ProcPexepath => self.ancestor_value(Field::ProcAexepath, 1),
            ProcPcmdline => self.ancestor_value(Field::ProcAcmdline, 1),
            ProcAname | ProcApid | ProcAexe | ProcAexepath | ProcAcmdline => match spec.arg {
                Arg::Index(n) => self.ancestor_value(spec.field, n),
                // The joined form, as Falco prints it in outputs.
                _ => {
                    let mut all = Vec::new();
                    self.each_ancestor(spec.field, |v| {
                        let mut s = String::new();
                        v.render(&mut s);
                        all.push(s);
                        false
                    });
                    (!all.is_empty()).then(|| Val::Str(all.join(" ").into()))
                }
            },
            UserUid => num(ex.event.uid.into()),
            UserName => ex.user_name.as_deref().and_then(non_empty).and_then(s),
            GroupGid => num(ex.event.gid.into()),
            // On the host, Falco says "host" for the container's id and name.
            ContainerId => Some(host_or(ex.container.as_ref().map(|c| c.short_id()))),
            ContainerFullId => Some(host_or(ex.container.as_ref().map(|c| c.id.as_str()))),
            ContainerName => Some(host_or(ex.container.as_ref().map(|c| c.name.as_str()))),
            ContainerImage => container(|c| &c.image),
            ContainerImageRepository => container(|c| &c.image_repository),
            ContainerImageTag => container(|c| &c.image_tag),
            K8sNsName => pod(|p| &p.namespace),
            K8sPodName => pod(|p| &p.name),
            K8sPodUid => pod(|p| &p.uid),
            K8sPodLabel => match &spec.arg {
                Arg::Key(key) => ex
                    .pod
                    .as_ref()
                    .and_then(|p| p.labels.get(&**key))
                    .map(|v| Val::Str(Cow::Borrowed(v.as_str()))),
                _ => None,
            },
            ProcCwd => ex.event.cwd.as_deref().and_then(s),
            ProcEnv => Some(match &spec.arg {
                Arg::Key(name) => Val::Str(Cow::Borrowed(env_value(&ex.event.env, name))),
                _ => Val::Str(Cow::Borrowed(self.env())),
            }),
            ProcVpid | ThreadVtid => ex.event.vpid.and_then(|v| num(v.into())),
            ProcVpgid => ex.event.vpgid.and_then(|v| num(v.into())),
            ProcIsVpgidLeader => match (ex.event.vpid, ex.event.vpgid) {
                (Some(pid), Some(pgid)) => Some(Val::Bool(pid == pgid)),
                _ => None,
            },
            // Falco keeps the kernel's u32 and says -1 for "unset" (u32::MAX).
            UserLoginuid => Some(Val::Num(match ex.event.loginuid {
                u32::MAX => -1,
                uid => uid.into(),
            })),
            ThreadCapPermitted | ThreadCapInheritable | ThreadCapEffective => {
                let caps = ex.event.caps?;
                let set = match spec.field {
                    ThreadCapPermitted => caps.permitted,
                    ThreadCapInheritable => caps.inheritable,
                    _ => caps.effective,
                };
                Some(Val::Str(capabilities::names(set).into()))
            }
            ProcIsExeUpperLayer | ProcIsExeLowerLayer | ProcIsExeFromMemfd => {
                let origin = ex.event.exe_origin?;
                Some(Val::Bool(match spec.field {
                    ProcIsExeUpperLayer => origin.upper_layer,
                    ProcIsExeLowerLayer => origin.lower_layer,
                    _ => origin.memfd,
                }))
            }
            ContainerPrivileged => ex
                .container
                .as_ref()
                .and_then(|c| c.privileged)
                .map(Val::Bool),
            ContainerMounts => {
                let mounts = ex.container.as_ref()?.mounts.as_deref()?;
                let mut all = String::new();
                for (i, m) in mounts.iter().enumerate() {
                    if i > 0 {
                        all.push(',');
                    }
                    m.render(&mut all);
                }
                Some(Val::Str(all.into()))
            }
            ContainerMount
            | ContainerMountSource
            | ContainerMountDest
            | ContainerMountMode
            | ContainerMountRdwr
            | ContainerMountPropagation => {
                let mounts = ex.container.as_ref()?.mounts.as_deref()?;
                let m = match &spec.arg {
                    Arg::Index(i) => mounts.get(*i)?,
                    // `.source[...]` finds the mount by its destination, the rest by source.
                    Arg::Pattern(p) if spec.field == ContainerMountSource => {
                        mounts.iter().find(|m| p.is_found_in(&m.dest))?
                    }
                    Arg::Pattern(p) => mounts.iter().find(|m| p.is_found_in(&m.source))?,
                    _ => return None,
                };
                Some(Val::Str(match spec.field {
                    ContainerMountSource => Cow::Borrowed(m.source.as_str()),
                    ContainerMountDest => Cow::Borrowed(m.dest.as_str()),
                    ContainerMountMode => Cow::Borrowed(m.mode.as_str()),
                    ContainerMountRdwr => Cow::Borrowed(if m.rdwr { "true" } else { "false" }),
                    ContainerMountPropagation => Cow::Borrowed(m.propagation.as_str()),
                    _ => {
                        let mut one = String::new();
                        m.render(&mut one);
                        Cow::Owned(one)
                    }
                }))
            }
        }
    }

    /// Calls `f` with each value of a multi-valued field (every ancestor, parent first) until
    /// it returns true; returns whether it did.
    pub fn each_ancestor(&self, field: Field, mut f: impl FnMut(Val<'_>) -> bool) -> bool {
        for (i, _) in self.exec.ancestors.iter().enumerate() {
            if let Some(v) = self.ancestor_value(field, i + 1)
                && f(v)
            {
                return true;
            }
        }
        false
    }

    /// `proc.a*[n]`: 0 is the process itself, 1 its parent...
    fn ancestor_value(&self, field: Field, n: usize) -> Option<Val<'_>> {
        let p: &ProcessInfo = if n == 0 {
            &self.exec.process
        } else {
            self.exec.ancestors.get(n - 1)?
        };
        let s = |v: &'a str| Some(Val::Str(Cow::Borrowed(v)));
        match field {
            Field::ProcAname => non_empty(&p.name).and_then(s),
            Field::ProcApid => (p.pid != 0).then_some(Val::Num(p.pid.into())),
            Field::ProcAexe => non_empty(&p.exe).and_then(s),
            Field::ProcAexepath => non_empty(&p.exepath).and_then(s),
            Field::ProcAcmdline if n == 0 => Some(Val::Str(Cow::Borrowed(self.cmdline()))),
            // An ancestor whose argv was not read (no exe, no args) has no known cmdline.
            Field::ProcAcmdline if p.exe.is_empty() && p.args.is_empty() => None,
            Field::ProcAcmdline => Some(Val::Str(p.cmdline().into())),
            _ => None,
        }
    }

    /// `proc.env`: `NAME=value` strings joined by spaces, as Falco's `concatenate_all_env`.
    fn env(&self) -> &str {
        self.env.get_or_init(|| self.exec.event.env.joined())
    }

    fn args(&self) -> &str {
        self.args.get_or_init(|| self.exec.process.args.join(" "))
    }

    fn cmdline(&self) -> &str {
        self.cmdline.get_or_init(|| {
            let p = &self.exec.process;
            let args = self.args();
            let mut line = String::with_capacity(p.name.len() + 1 + args.len());
            line.push_str(&p.name);
            if !args.is_empty() {
                line.push(' ');
                line.push_str(args);
            }
            line
        })
    }

    fn nanos(&self) -> u64 {
        self.exec
            .event
            .time
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// `proc.env[NAME]` as Falco's `sinsp_threadinfo::get_env`: the first `NAME=value` with a
/// non-empty value, without leading or trailing spaces; `""` when there is none.
fn env_value<'e>(env: &'e Environ, name: &str) -> &'e str {
    env.iter()
        .find_map(|var| {
            let value = var.strip_prefix(name)?.strip_prefix('=')?;
            (!value.is_empty()).then(|| value.trim_matches(' '))
        })
        .unwrap_or("")
}

fn host_or(v: Option<&str>) -> Val<'_> {
    Val::Str(Cow::Borrowed(v.unwrap_or("host")))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Falco's time renderings, in UTC.
fn format_time(nanos: u64, field: Field) -> String {
    let Ok(ts) = jiff::Timestamp::from_nanosecond(i128::from(nanos)) else {
        return String::new();
    };
    match field {
        Field::EvtTimeS => ts.strftime("%H:%M:%S").to_string(),
        Field::EvtTimeIso8601 => format!("{ts:.9}"),
        Field::EvtDatetime => ts.strftime("%Y-%m-%d %H:%M:%S.%9f").to_string(),
        _ => ts.strftime("%H:%M:%S.%9f").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Capabilities, ExeOrigin, MountInfo},
        rules::{fields::Resolved, fields::resolve, sample::Exec},
    };

    fn get(exec: &EnrichedExec, name: &str, arg: Option<&str>) -> Option<String> {
        let Ok(Resolved::Field(spec)) = resolve(name, arg) else {
            panic!("{name} does not resolve");
        };
        let ev = EventView::new(exec, 7, "node-1");
        ev.get(&spec).map(|v| {
            let mut s = String::new();
            v.render(&mut s);
            s
        })
    }

    #[test]
    fn process_and_ancestors() {
        let e = Exec::new(["/bin/sh", "-c", "id -u"])
            .ancestor(["/usr/bin/python3", "app.py"])
            .ancestor(["containerd-shim"])
            .tty(34816)
            .build();
        assert_eq!(get(&e, "proc.name", None).as_deref(), Some("sh"));
        assert_eq!(get(&e, "proc.exe", None).as_deref(), Some("/bin/sh"));
        assert_eq!(get(&e, "proc.args", None).as_deref(), Some("-c id -u"));
        assert_eq!(
            get(&e, "proc.cmdline", None).as_deref(),
            Some("sh -c id -u")
        );
        assert_eq!(
            get(&e, "proc.exeline", None).as_deref(),
            Some("/bin/sh -c id -u")
        );
        assert_eq!(get(&e, "proc.cmdnargs", None).as_deref(), Some("2"));
        assert_eq!(
            get(&e, "proc.pcmdline", None).as_deref(),
            Some("python3 app.py")
        );
        assert_eq!(
            get(&e, "proc.pexepath", None).as_deref(),
            Some("/usr/bin/python3")
        );
        assert_eq!(get(&e, "proc.aname", Some("0")).as_deref(), Some("sh"));
        assert_eq!(
            get(&e, "proc.aname", Some("2")).as_deref(),
            Some("containerd-shim")
        );
        assert_eq!(get(&e, "proc.aname", Some("3")), None);
        assert_eq!(
            get(&e, "proc.aname", None).as_deref(),
            Some("python3 containerd-shim")
        );
        assert_eq!(
            get(&e, "proc.acmdline", Some("2")).as_deref(),
            Some("containerd-shim")
        );
        // A parent known by name only (the sensor alone): no cmdline, no exe.
        let bare = Exec::new(["sh"]).parent_comm("runc").build();
        assert_eq!(get(&bare, "proc.pname", None).as_deref(), Some("runc"));
        assert_eq!(get(&bare, "proc.pcmdline", None), None);
        assert_eq!(get(&bare, "proc.pexe", None), None);
        assert_eq!(get(&e, "proc.tty", None).as_deref(), Some("34816"));
        assert_eq!(get(&e, "evt.num", None).as_deref(), Some("7"));
        assert_eq!(get(&e, "evt.type", None).as_deref(), Some("execve"));
        assert_eq!(get(&e, "evt.hostname", None).as_deref(), Some("node-1"));
        assert_eq!(
            get(&e, "evt.time", None).as_deref(),
            Some("22:13:20.000000000")
        );
        assert_eq!(
            get(&e, "evt.time.iso8601", None).as_deref(),
            Some("2023-11-14T22:13:20.000000000Z")
        );
    }

    #[test]
    fn process_state_read_at_exec() {
        let mut e = Exec::new(["./x"]).build();
        // Unread: no value, as Falco has none.
        for field in [
            "proc.cwd",
            "proc.vpid",
            "proc.is_vpgid_leader",
            "thread.cap_permitted",
            "proc.is_exe_upper_layer",
        ] {
            assert_eq!(get(&e, field, None), None, "{field}");
        }
        assert_eq!(get(&e, "user.loginuid", None).as_deref(), Some("-1"));
        assert_eq!(get(&e, "proc.env", None).as_deref(), Some(""));

        let ev = &mut e.event;
        ev.cwd = Some("/dev/shm/".into());
        ev.vpid = Some(1);
        ev.vpgid = Some(1);
        ev.loginuid = 1000;
        ev.caps = Some(Capabilities {
            inheritable: 0,
            permitted: (1 << 21) | (1 << 16),
            effective: 1 << 21,
        });
        ev.exe_origin = Some(ExeOrigin {
            upper_layer: true,
            ..ExeOrigin::default()
        });
        ev.env = [
            "PATH=/usr/bin",
            "HTTP_PROXY= http://p:3128 ",
            "EMPTY=",
            "EMPTY=later",
        ]
        .into_iter()
        .collect();
        assert_eq!(get(&e, "proc.cwd", None).as_deref(), Some("/dev/shm/"));
        assert_eq!(get(&e, "proc.vpid", None).as_deref(), Some("1"));
        assert_eq!(get(&e, "thread.vtid", None).as_deref(), Some("1"));
        assert_eq!(
            get(&e, "proc.is_vpgid_leader", None).as_deref(),
            Some("true")
        );
        assert_eq!(get(&e, "user.loginuid", None).as_deref(), Some("1000"));
        assert_eq!(
            get(&e, "thread.cap_permitted", None).as_deref(),
            Some("CAP_SYS_MODULE CAP_SYS_ADMIN")
        );
        assert_eq!(get(&e, "thread.cap_inheritable", None).as_deref(), Some(""));
        assert_eq!(
            get(&e, "proc.is_exe_upper_layer", None).as_deref(),
            Some("true")
        );
        assert_eq!(
            get(&e, "proc.is_exe_lower_layer", None).as_deref(),
            Some("false")
        );
        assert_eq!(
            get(&e, "proc.is_exe_from_memfd", None).as_deref(),
            Some("false")
        );
        // Falco's get_env: trimmed value, an empty value is skipped, "" when absent.
        assert_eq!(
            get(&e, "proc.env", None).as_deref(),
            Some("PATH=/usr/bin HTTP_PROXY= http://p:3128  EMPTY= EMPTY=later")
        );
        assert_eq!(
            get(&e, "proc.env", Some("HTTP_PROXY")).as_deref(),
            Some("http://p:3128")
        );
        assert_eq!(get(&e, "proc.env", Some("EMPTY")).as_deref(), Some("later"));
        assert_eq!(get(&e, "proc.env", Some("PAT")).as_deref(), Some(""));
        e.event.vpgid = Some(0); // a group led from outside the namespace
        assert_eq!(
            get(&e, "proc.is_vpgid_leader", None).as_deref(),
            Some("false")
        );
    }

    #[test]
    fn container_spec_privileged_and_mounts() {
        let host = Exec::new(["ls"]).build();
        assert_eq!(get(&host, "container.privileged", None), None);
        assert_eq!(get(&host, "container.mounts", None), None);
        assert_eq!(get(&host, "container.mount.dest", Some("/")), None);
        let mut e = Exec::new(["ls"]).pod("shop", "juice-shop-1").build();
        // A container whose spec is not known (node-local): no value either.
        assert_eq!(get(&e, "container.privileged", None), None);
        let mount = |source: &str, dest: &str, rdwr| MountInfo {
            source: source.into(),
            dest: dest.into(),
            mode: String::new(),
            rdwr,
            propagation: "private".into(),
        };
        let c = e.container.as_mut().unwrap();
        c.privileged = Some(true);
        c.mounts = Some(vec![
            mount(
                "/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/token",
                "/var/run/secrets",
                false,
            ),
            mount("/var/run/docker.sock", "/run/docker.sock", true),
        ]);
        assert_eq!(
            get(&e, "container.privileged", None).as_deref(),
            Some("true")
        );
        assert_eq!(
            get(&e, "container.mounts", None).as_deref(),
            Some(
                "/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/token:/var/run/secrets::false:private,/var/run/docker.sock:/run/docker.sock::true:private"
            )
        );
        // By number, or the first mount whose source holds the pattern (a regex search).
        assert_eq!(
            get(&e, "container.mount.dest", Some("1")).as_deref(),
            Some("/run/docker.sock")
        );
        assert_eq!(get(&e, "container.mount.dest", Some("2")), None);
        assert_eq!(
            get(&e, "container.mount.dest", Some("/var/run/docker.sock")).as_deref(),
            Some("/run/docker.sock")
        );
        assert_eq!(
            get(&e, "container.mount.dest", Some("/var/lib/kubelet")).as_deref(),
            Some("/var/run/secrets")
        );
        // A regex, not a glob: `/proc*` is `/pro` then any number of `c`; `$` anchors.
        assert_eq!(get(&e, "container.mount.dest", Some("/proc*")), None);
        assert_eq!(
            get(&e, "container.mount.dest", Some(".sock$")).as_deref(),
            Some("/run/docker.sock")
        );
        assert_eq!(get(&e, "container.mount.dest", Some("^/etc")), None);
        assert_eq!(
            get(&e, "container.mount.source", Some("docker")).as_deref(),
            Some("/var/run/docker.sock")
        );
        assert_eq!(
            get(&e, "container.mount.rdwr", Some("0")).as_deref(),
            Some("false")
        );
        assert_eq!(
            get(&e, "container.mount.propagation", Some("0")).as_deref(),
            Some("private")
        );
        assert_eq!(
            get(&e, "container.mount.mode", Some("0")).as_deref(),
            Some("")
        );
        assert_eq!(
            get(&e, "container.mount", Some("docker.sock$")).as_deref(),
            Some("/var/run/docker.sock:/run/docker.sock::true:private")
        );
    }

    #[test]
    fn host_container_and_pod() {
        let host = Exec::new(["ls"]).build();
        assert_eq!(get(&host, "container.id", None).as_deref(), Some("host"));
        assert_eq!(get(&host, "container.image.repository", None), None);
        assert_eq!(get(&host, "k8s.pod.name", None), None);
        let pod = Exec::new(["ls"])
            .container("app", "docker.io/bkimminich/juice-shop:v17.1.1")
            .pod("shop", "juice-shop-1")
            .build();
        assert_eq!(
            get(&pod, "container.id", None).as_deref(),
            Some("3ad7b26ded6d")
        );
        assert_eq!(
            get(&pod, "container.image.repository", None).as_deref(),
            Some("docker.io/bkimminich/juice-shop")
        );
        assert_eq!(
            get(&pod, "container.image.tag", None).as_deref(),
            Some("v17.1.1")
        );
        assert_eq!(get(&pod, "k8s.ns.name", None).as_deref(), Some("shop"));
        assert_eq!(
            get(&pod, "k8s.pod.label", Some("app")).as_deref(),
            Some("juice")
        );
        assert_eq!(get(&pod, "k8s.pod.label", Some("nope")), None);
        assert_eq!(get(&pod, "user.name", None).as_deref(), Some("root"));
    }
}
