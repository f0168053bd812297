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
}

/// A process as rules see it (Falco's `proc.*` fields).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `proc.name`: the task name (comm).
    pub name: String,
    /// `proc.exe`: the first command-line argument (argv[0]).
    pub exe: String,
    /// `proc.exepath`: the full path of the executable.
    pub exepath: String,
    /// `proc.args`: the arguments after argv[0].
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
