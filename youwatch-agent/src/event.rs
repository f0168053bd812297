//! Exec events as they travel between stages: `ExecEvent` (sensor → inventory) and
//! `EnrichedExec` (inventory → rules).

use std::{collections::BTreeMap, time::SystemTime};

use serde::{Deserialize, Serialize};

/// One successful exec seen by the kernel sensor, decoded into owned values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEvent {
    /// Wall-clock time of the exec (converted from the kernel's boot-time clock).
    #[serde(with = "unix_nanos")]
    pub time: SystemTime,
    /// `CLOCK_BOOTTIME` nanoseconds at the tracepoint, as the kernel stamped it.
    pub ktime_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    /// Parent's tgid.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Controlling tty (`/proc/<pid>/stat` tty_nr encoding), 0 when none.
    pub tty: u32,
    /// cgroup v2 id of the process's own cgroup.
    pub cgroup_id: u64,
    /// The watched cgroup (pod-level, normally) that made this exec visible.
    pub watched_cgroup_id: u64,
    /// `comm` after the exec (the kernel's 15-byte task name).
    pub comm: String,
    #[serde(default)]
    pub parent_comm: String,
    /// Path given to execve (`linux_binprm.filename`), possibly relative.
    pub filename: String,
    /// argv, as far as captured (at most `youwatch_common::limits::MAX_ARGS` entries).
    pub argv: Vec<String>,
    /// argv was cut: more bytes or more arguments than the sensor captures.
    #[serde(default)]
    pub args_truncated: bool,
    #[serde(default)]
    pub filename_truncated: bool,
    /// pid in the process's own pid namespace (`proc.vpid`); `None` if it could not be read.
    pub vpid: Option<u32>,
    /// Process group id in that namespace, 0 when the group leader is outside it.
    pub vpgid: Option<u32>,
    /// Audit login uid; `u32::MAX` when unset (Falco's `user.loginuid` says -1).
    pub loginuid: u32,
    /// Capability sets of the new image, bit n = capability n; `None` if unread.
    pub caps: Option<Capabilities>,
    /// Working directory from the process's root, ending in `/` as Falco's `proc.cwd` does
    /// (`/dev/shm/`, `/`); `None` when unread or cut (`cwd_truncated`).
    pub cwd: Option<String>,
    pub cwd_truncated: bool,
    /// Environment (`NAME=value` strings), as far as captured.
    pub env: Environ,
    /// The environment was cut: more bytes or variables than the sensor captures.
    pub env_truncated: bool,
    /// Where the executable lives; `None` when the kernel could not tell.
    pub exe_origin: Option<ExeOrigin>,
    /// What in-kernel enforcement did with this exec; `None` when it was not forbidden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
}

/// A forbidden exec in an enforced cgroup, as the kernel answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub outcome: EnforceOutcome,
    /// The forbidden name that matched (`sh`, `bash`...).
    pub matched: String,
    /// Which of the exec's names it was.
    pub by: MatchedBy,
}

/// What happened to a forbidden exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforceOutcome {
    /// SIGKILL at `sched_process_exec`: the new program never ran an instruction.
    Killed,
    /// The BPF LSM denied it (`bprm_check_security`): the exec failed with EPERM.
    Denied,
    /// Monitor mode: it runs, and would have been stopped.
    WouldStop,
    /// It should have been killed, but sending the signal failed: it runs.
    SignalFailed,
}

impl EnforceOutcome {
    /// True when the exec did not run.
    pub fn stopped(self) -> bool {
        matches!(self, EnforceOutcome::Killed | EnforceOutcome::Denied)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EnforceOutcome::Killed => "killed",
            EnforceOutcome::Denied => "denied",
            EnforceOutcome::WouldStop => "would_stop",
            EnforceOutcome::SignalFailed => "signal_failed",
        }
    }
}

/// Which name of the exec matched a forbidden one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The executed file's own name (a symlink's target, a script's interpreter file).
    File,
    /// The last component of the exec'd path.
    Path,
    /// The last component of the `#!` interpreter's path.
    Interpreter,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::File => "file",
            MatchedBy::Path => "path",
            MatchedBy::Interpreter => "interpreter",
        }
    }
}

impl Default for ExecEvent {
    fn default() -> Self {
        Self {
            time: SystemTime::UNIX_EPOCH,
            ktime_ns: 0,
            pid: 0,
            tgid: 0,
            ppid: 0,
            uid: 0,
            gid: 0,
            tty: 0,
            cgroup_id: 0,
            watched_cgroup_id: 0,
            comm: String::new(),
            parent_comm: String::new(),
            filename: String::new(),
            argv: Vec::new(),
            args_truncated: false,
            filename_truncated: false,
            vpid: None,
            vpgid: None,
            loginuid: u32::MAX,
            caps: None,
            cwd: None,
            cwd_truncated: false,
            env: Environ::default(),
            env_truncated: false,
            exe_origin: None,
            enforcement: None,
        }
    }
}

/// A process environment: `NAME=value` strings, kept in one NUL-separated buffer (one
/// allocation per exec, however many variables). Serialised as a list of strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environ(String);

impl Environ {
    /// From the kernel's NUL-separated area (without a trailing NUL).
    pub fn from_nul_separated(area: String) -> Self {
        Self(area)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (!self.0.is_empty())
            .then(|| self.0.split('\0'))
            .into_iter()
            .flatten()
    }

    /// Every variable, joined by spaces: Falco's `proc.env`.
    pub fn joined(&self) -> String {
        self.0.replace('\0', " ")
    }
}

impl<S: AsRef<str>> FromIterator<S> for Environ {
    fn from_iter<I: IntoIterator<Item = S>>(vars: I) -> Self {
        let mut area = String::new();
        for (i, var) in vars.into_iter().enumerate() {
            if i > 0 {
                area.push('\0');
            }
            area.push_str(var.as_ref());
        }
        Self(area)
    }
}

impl Serialize for Environ {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Environ {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<String>::deserialize(d)?.into_iter().collect())
    }
}

/// Capability sets, bit n = capability n (kernel numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
}

/// Where an exec'd file lives; all false for an ordinary file outside overlayfs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExeOrigin {
    /// On an overlayfs mount, in the upper (container-writable) layer.
    pub upper_layer: bool,
    /// On an overlayfs mount, in a lower (image) layer only.
    pub lower_layer: bool,
    /// A `memfd_create` file, executed through its descriptor.
    pub memfd: bool,
}

/// A process as rules see it (Falco's `proc.*` fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `proc.name`: the task name (comm).
    pub name: String,
    /// `proc.exe`: the first command-line argument (`argv[0]`).
    pub exe: String,
    /// `proc.exepath`: the full path of the executable.
    pub exepath: String,
    /// `proc.args`: the arguments after `argv[0]`.
    pub args: Vec<String>,
}

impl ProcessInfo {
    /// `proc.cmdline`: name followed by the arguments, space-separated, as Falco renders it.
    pub fn cmdline(&self) -> String {
        let mut out = self.name.clone();
        for arg in &self.args {
            out.push(' ');
            out.push_str(arg);
        }
        out
    }
}

/// The container an exec happened in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerInfo {
    /// Full container id (64 hex for containerd, CRI-O and docker).
    pub id: String,
    pub name: String,
    /// Image reference as the runtime reports it, e.g. `bkimminich/juice-shop:v17.1.1`.
    pub image: String,
    pub image_repository: String,
    pub image_tag: String,
    /// `securityContext.privileged` from the pod spec; `None` when no spec is known.
    pub privileged: Option<bool>,
    /// The mounts the pod spec gives the container, in the kubelet's order; `None` when no
    /// spec is known.
    pub mounts: Option<Vec<MountInfo>>,
}

/// A container mount as Falco's container plugin reports it from the CRI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    /// Host path (hostPath volumes) or the kubelet's directory for the volume; empty when
    /// the host side is not known from the pod spec (persistent volumes).
    pub source: String,
    /// Path in the container (`mountPath`).
    pub dest: String,
    /// Always empty for CRI runtimes (Falco fills it only from docker's mount mode).
    pub mode: String,
    pub rdwr: bool,
    /// `private`, `rslave` or `rshared`, as the container plugin names CRI propagation.
    pub propagation: String,
}

impl MountInfo {
    /// `source:dest:mode:rdwr:propagation`, the form of `container.mount` and `container.mounts`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{}:{}:{}:{}:{}",
            self.source, self.dest, self.mode, self.rdwr, self.propagation
        );
    }
}

impl ContainerInfo {
    /// `container.id` in Falco's short form: the first 12 characters.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// The pod an exec happened in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// Top controller, e.g. `("Deployment", "juice-shop")`, when known.
    pub owner: Option<(String, String)>,
}

/// An exec with everything rules may ask about it. Its JSON (one line per exec with
/// `--dry-run`) reads back into the same value: `rules replay` evaluates recorded execs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedExec {
    pub event: ExecEvent,
    pub process: ProcessInfo,
    /// Parent first, then grandparent... (`proc.aname[1]` is `ancestors[0].name`).
    pub ancestors: Vec<ProcessInfo>,
    /// `user.name`, when the uid resolves.
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub container: Option<ContainerInfo>,
    #[serde(default)]
    pub pod: Option<PodInfo>,
}

/// A `SystemTime` as integer nanoseconds since the Unix epoch.
pub mod unix_nanos {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let nanos = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let nanos = u64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_nanos(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enriched_exec_round_trips_through_json() {
        let exec = crate::rules::sample::Exec::new(["/bin/sh", "-c", "id -u"])
            .ancestor(["/usr/bin/node", "app.js"])
            .tty(34816)
            .pod("shop", "juice-shop-1")
            .build();
        let mut exec = exec;
        exec.event.time += std::time::Duration::from_nanos(123_456_789);
        let json = serde_json::to_string(&exec).unwrap();
        let back: EnrichedExec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, exec);
        let host = crate::rules::sample::Exec::new(["ls"]).build();
        let back: EnrichedExec =
            serde_json::from_str(&serde_json::to_string(&host).unwrap()).unwrap();
        assert_eq!(back, host);
    }
}
