//! Field values of one exec event. Strings that must be assembled (`proc.args`,
//! `proc.cmdline`) are built at most once per event, on first use.

use std::{borrow::Cow, cell::OnceCell, time::UNIX_EPOCH};

use super::{Arg, Field, FieldSpec};
use crate::event::{ContainerInfo, EnrichedExec, PodInfo, ProcessInfo};

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
    use crate::rules::{fields::Resolved, fields::resolve, sample::Exec};

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
