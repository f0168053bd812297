//! Falco fields the agent produces from an [`EnrichedExec`](crate::event::EnrichedExec), how
//! a field name in a rule resolves to one of them, and their extraction.
//!
//! A field is produced only when its value is known truthfully: `fd.*`, `proc.sid`,
//! `proc.exe_ino`... are not in an exec event, so a rule that needs them is disabled (and says
//! which field) rather than guessed at.

mod capabilities;
pub mod catalog;
mod extract;
mod pattern;

pub use extract::{EventView, Val};
pub use pattern::PathPattern;

/// The value types of fields (and of transformer results), as comparisons need them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Num,
    Bool,
    /// A list of strings (`getopt()`, a literal list in a transformer).
    List,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Str => "string",
            Ty::Num => "number",
            Ty::Bool => "boolean",
            Ty::List => "list",
        }
    }
}

/// A field of an exec event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    // Constant for every exec event: folded when rules are compiled.
    EvtType,
    EvtDir,
    EvtSource,
    EvtCategory,
    EvtRes,
    EvtRawres,
    EvtFailed,
    ThreadIsmain,
    // Per event.
    EvtNum,
    EvtTime,
    EvtTimeS,
    EvtTimeIso8601,
    EvtDatetime,
    EvtRawtime,
    EvtRawtimeS,
    EvtRawtimeNs,
    EvtHostname,
    ProcName,
    ProcExe,
    ProcExepath,
    ProcArgs,
    ProcCmdline,
    ProcExeline,
    ProcCmdnargs,
    ProcCmdlenargs,
    ProcPid,
    ProcPpid,
    ProcTty,
    ThreadTid,
    ProcPname,
    ProcPexe,
    ProcPexepath,
    ProcPcmdline,
    /// `proc.aname[n]`; without an index: every ancestor (parent and up).
    ProcAname,
    ProcApid,
    ProcAexe,
    ProcAexepath,
    ProcAcmdline,
    UserUid,
    UserName,
    GroupGid,
    ContainerId,
    ContainerFullId,
    ContainerName,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    K8sNsName,
    K8sPodName,
    K8sPodUid,
    K8sPodLabel,
    // Process state the sensor reads at exec.
    /// `proc.cwd`, with Falco's trailing `/`.
    ProcCwd,
    /// `proc.env`: every variable, space-separated; `proc.env[NAME]`: one value.
    ProcEnv,
    ProcVpid,
    ProcVpgid,
    ProcIsVpgidLeader,
    ThreadVtid,
    UserLoginuid,
    ThreadCapPermitted,
    ThreadCapInheritable,
    ThreadCapEffective,
    ProcIsExeUpperLayer,
    ProcIsExeLowerLayer,
    ProcIsExeFromMemfd,
    // The container's spec.
    ContainerPrivileged,
    ContainerMounts,
    /// `container.mount[i]` or `container.mount[<source pattern>]`, and the parts of it.
    ContainerMount,
    ContainerMountSource,
    ContainerMountDest,
    ContainerMountMode,
    ContainerMountRdwr,
    ContainerMountPropagation,
}

/// A field's argument: an ancestor or mount index, a label or variable name, or a path
/// pattern (mounts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arg {
    None,
    Index(usize),
    Key(Box<str>),
    Pattern(PathPattern),
}

/// A resolved field with its argument.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    pub field: Field,
    pub arg: Arg,
}

impl FieldSpec {
    pub fn ty(&self) -> Ty {
        self.field.ty()
    }

    /// Fields without an index over ancestors hold one value per ancestor.
    #[inline]
    pub fn is_multi(&self) -> bool {
        self.field.is_ancestor() && self.arg == Arg::None
    }
}

/// What a field name in a rule means for the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Field(FieldSpec),
    /// A Falco field the agent does not produce on exec events.
    NotProduced,
    /// Not a Falco field (as of engine 0.57): probably a typo.
    Unknown,
}

/// Why a field reference is wrong, whatever the event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

impl Field {
    pub fn ty(self) -> Ty {
        use Field::*;
        match self {
            EvtRawres | EvtNum | EvtRawtime | EvtRawtimeS | EvtRawtimeNs | ProcCmdnargs
            | ProcCmdlenargs | ProcPid | ProcPpid | ProcTty | ThreadTid | ProcApid | UserUid
            | GroupGid | ProcVpid | ProcVpgid | ThreadVtid | UserLoginuid => Ty::Num,
            EvtFailed | ThreadIsmain | ProcIsVpgidLeader | ProcIsExeUpperLayer
            | ProcIsExeLowerLayer | ProcIsExeFromMemfd | ContainerPrivileged => Ty::Bool,
            _ => Ty::Str,
        }
    }

    /// Falco's ancestor fields (`proc.aname`...) take no transformer and cannot be compared
    /// with another field, on either side (`EPF_NO_TRANSFORMER | EPF_NO_RHS`).
    pub fn plain_only(self) -> bool {
        self.is_ancestor()
    }

    fn is_ancestor(self) -> bool {
        matches!(
            self,
            Field::ProcAname
                | Field::ProcApid
                | Field::ProcAexe
                | Field::ProcAexepath
                | Field::ProcAcmdline
        )
    }

    /// `container.mount*[...]`: one mount, chosen by its number or a pattern.
    fn is_mount(self) -> bool {
        matches!(
            self,
            Field::ContainerMount
                | Field::ContainerMountSource
                | Field::ContainerMountDest
                | Field::ContainerMountMode
                | Field::ContainerMountRdwr
                | Field::ContainerMountPropagation
        )
    }

    /// The value every exec event has, for fields that never vary.
    pub fn constant(self) -> Option<Val<'static>> {
        Some(match self {
            Field::EvtType => Val::Str("execve".into()),
            Field::EvtDir => Val::Str("<".into()),
            Field::EvtSource => Val::Str("syscall".into()),
            Field::EvtCategory => Val::Str("process".into()),
            Field::EvtRes => Val::Str("SUCCESS".into()),
            Field::EvtRawres => Val::Num(0),
            Field::EvtFailed => Val::Bool(false),
            Field::ThreadIsmain => Val::Bool(true),
            _ => return None,
        })
    }
}

fn lookup(name: &str) -> Option<Field> {
    use Field::*;
    Some(match name {
        "evt.type" => EvtType,
        "evt.dir" => EvtDir,
        "evt.source" => EvtSource,
        "evt.category" => EvtCategory,
        "evt.res" => EvtRes,
        "evt.rawres" => EvtRawres,
        "evt.failed" => EvtFailed,
        "thread.ismain" => ThreadIsmain,
        "evt.num" => EvtNum,
        "evt.time" => EvtTime,
        "evt.time.s" => EvtTimeS,
        "evt.time.iso8601" => EvtTimeIso8601,
        "evt.datetime" => EvtDatetime,
        "evt.rawtime" => EvtRawtime,
        "evt.rawtime.s" => EvtRawtimeS,
        "evt.rawtime.ns" => EvtRawtimeNs,
        "evt.hostname" => EvtHostname,
        "proc.name" => ProcName,
        "proc.exe" => ProcExe,
        "proc.exepath" => ProcExepath,
        "proc.args" => ProcArgs,
        "proc.cmdline" => ProcCmdline,
        "proc.exeline" => ProcExeline,
        "proc.cmdnargs" => ProcCmdnargs,
        "proc.cmdlenargs" => ProcCmdlenargs,
        "proc.pid" => ProcPid,
        "proc.ppid" => ProcPpid,
        "proc.tty" => ProcTty,
        "thread.tid" => ThreadTid,
        "proc.pname" => ProcPname,
        "proc.pexe" => ProcPexe,
        "proc.pexepath" => ProcPexepath,
        "proc.pcmdline" => ProcPcmdline,
        "proc.aname" => ProcAname,
        "proc.apid" => ProcApid,
        "proc.aexe" => ProcAexe,
        "proc.aexepath" => ProcAexepath,
        "proc.acmdline" => ProcAcmdline,
        "user.uid" => UserUid,
        "user.name" => UserName,
        "group.gid" => GroupGid,
        "container.id" => ContainerId,
        "container.full_id" => ContainerFullId,
        "container.name" => ContainerName,
        "container.image" => ContainerImage,
        "container.image.repository" => ContainerImageRepository,
        "container.image.tag" => ContainerImageTag,
        "k8s.ns.name" => K8sNsName,
        "k8s.pod.name" => K8sPodName,
        "k8s.pod.uid" | "k8s.pod.id" => K8sPodUid,
        "k8s.pod.label" => K8sPodLabel,
        "proc.cwd" => ProcCwd,
        "proc.env" => ProcEnv,
        "proc.vpid" => ProcVpid,
        "proc.vpgid" => ProcVpgid,
        "proc.is_vpgid_leader" => ProcIsVpgidLeader,
        "thread.vtid" => ThreadVtid,
        "user.loginuid" => UserLoginuid,
        "thread.cap_permitted" => ThreadCapPermitted,
        "thread.cap_inheritable" => ThreadCapInheritable,
        "thread.cap_effective" => ThreadCapEffective,
        "proc.is_exe_upper_layer" => ProcIsExeUpperLayer,
        "proc.is_exe_lower_layer" => ProcIsExeLowerLayer,
        "proc.is_exe_from_memfd" => ProcIsExeFromMemfd,
        "container.privileged" => ContainerPrivileged,
        "container.mounts" => ContainerMounts,
        "container.mount" => ContainerMount,
        "container.mount.source" => ContainerMountSource,
        "container.mount.dest" => ContainerMountDest,
        "container.mount.mode" => ContainerMountMode,
        "container.mount.rdwr" => ContainerMountRdwr,
        "container.mount.propagation" => ContainerMountPropagation,
        _ => return None,
    })
}

/// Resolves `name[arg]` (or a dotted argument, `k8s.pod.label.app`).
pub fn resolve(name: &str, arg: Option<&str>) -> Result<Resolved, ArgError> {
    let (base, arg) = match (lookup(name), catalog::split_dotted_arg(name)) {
        (None, Some((base, dotted))) if arg.is_none() => (base, Some(dotted)),
        _ => (name, arg),
    };
    let Some(field) = lookup(base) else {
        return Ok(if catalog::is_falco_field(name) {
            Resolved::NotProduced
        } else {
            Resolved::Unknown
        });
    };
    let arg = match (field, arg) {
        (Field::K8sPodLabel, Some(key)) if !key.is_empty() => Arg::Key(key.into()),
        (Field::K8sPodLabel, _) => {
            return Err(ArgError(format!(
                "{name} needs a label key, e.g. {name}[app]"
            )));
        }
        // `proc.args[n]`: the n-th argument (empty past the last one).
        (Field::ProcArgs, Some(index)) => match index.parse::<usize>() {
            Ok(n) => Arg::Index(n),
            Err(_) => {
                return Err(ArgError(format!(
                    "{name}[{index}]: the argument must be an argument number (0 = the first after the command)"
                )));
            }
        },
        (Field::ProcEnv, Some(key)) if !key.is_empty() => Arg::Key(key.into()),
        (Field::ProcEnv, _) => Arg::None,
        (f, Some(arg)) if f.is_mount() && !arg.is_empty() => match arg.parse::<usize>() {
            Ok(n) => Arg::Index(n),
            Err(_) => Arg::Pattern(
                PathPattern::new(arg).map_err(|e| ArgError(format!("{name}[{arg}]: {e}")))?,
            ),
        },
        (f, _) if f.is_mount() => {
            return Err(ArgError(format!(
                "{name} needs a mount number or a path pattern, e.g. {name}[0] or {name}[/var/run/docker.sock]"
            )));
        }
        (f, Some(index)) if f.is_ancestor() => match index.trim().parse::<usize>() {
            Ok(n) => Arg::Index(n),
            Err(_) => {
                return Err(ArgError(format!(
                    "{name}[{index}]: the argument must be an ancestor number (0 = the process, 1 = its parent...)"
                )));
            }
        },
        (_, Some(a)) => {
            return Err(ArgError(format!("{name} takes no argument (got [{a}])")));
        }
        (_, None) => Arg::None,
    };
    Ok(Resolved::Field(FieldSpec { field, arg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_arguments() {
        assert_eq!(
            resolve("proc.aname", Some("2")).unwrap(),
            Resolved::Field(FieldSpec {
                field: Field::ProcAname,
                arg: Arg::Index(2)
            })
        );
        assert_eq!(
            resolve("k8s.pod.label.app", None).unwrap(),
            Resolved::Field(FieldSpec {
                field: Field::K8sPodLabel,
                arg: Arg::Key("app".into())
            })
        );
        assert_eq!(resolve("fd.name", None).unwrap(), Resolved::NotProduced);
        assert_eq!(
            resolve("evt.arg.flags", None).unwrap(),
            Resolved::NotProduced
        );
        assert_eq!(resolve("proc.nmae", None).unwrap(), Resolved::Unknown);
        assert_eq!(
            resolve("proc.env.HTTP_PROXY", None).unwrap(),
            Resolved::Field(FieldSpec {
                field: Field::ProcEnv,
                arg: Arg::Key("HTTP_PROXY".into())
            })
        );
        assert!(matches!(
            resolve("container.mount.dest", Some("/proc*")).unwrap(),
            Resolved::Field(FieldSpec {
                field: Field::ContainerMountDest,
                arg: Arg::Pattern(_)
            })
        ));
        assert_eq!(
            resolve("container.mount.dest", Some("0")).unwrap(),
            Resolved::Field(FieldSpec {
                field: Field::ContainerMountDest,
                arg: Arg::Index(0)
            })
        );
        // Falco requires the argument, and the plugin compiles it as a regex.
        assert!(resolve("container.mount.dest", None).is_err());
        let bad = resolve("container.mount.dest", Some("/proc[")).unwrap_err();
        assert!(bad.0.contains("container.mount.dest[/proc[]"), "{bad}");
        assert!(resolve("proc.vpid", Some("1")).is_err());
        assert!(resolve("proc.aname", Some("x")).is_err());
        assert!(resolve("proc.name", Some("1")).is_err());
        assert!(matches!(
            resolve("proc.args", Some("1")).unwrap(),
            Resolved::Field(FieldSpec {
                field: Field::ProcArgs,
                arg: Arg::Index(1)
            })
        ));
        assert!(resolve("k8s.pod.label", None).is_err());
        assert!(
            resolve("proc.aname", None)
                .map(|r| matches!(r, Resolved::Field(s) if s.is_multi()))
                .unwrap()
        );
    }
}
