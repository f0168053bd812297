//! Bounded reads of `/proc/<pid>`: the fallback for processes the exec sensor never saw
//! (they started before the agent, or forked without exec'ing).

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use crate::event::ProcessInfo;

/// Bytes read from a `cmdline` (Falco truncates similarly; arguments past it are dropped).
const CMDLINE_MAX: u64 = 4096;
/// Bytes read from a `stat` line (a 15-byte comm keeps it far shorter).
const STAT_MAX: u64 = 1024;

/// A process as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    pub info: ProcessInfo,
    pub ppid: u32,
    /// Start time in clock ticks since boot (`stat` field 22): tells a pid's reuse apart.
    pub start_ticks: u64,
}

/// The `stat` fields the inventory uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    pub start_ticks: u64,
}

/// A procfs mount: `/proc` for the host's processes (the agent runs with `hostPID`).
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    pub fn stat(&self, pid: u32) -> Option<Stat> {
        let text = read_bounded(&self.pid_dir(pid).join("stat"), STAT_MAX)?;
        parse_stat(&String::from_utf8_lossy(&text))
    }

    /// The executable's path (`/proc/<pid>/exe`), when readable.
    pub fn exe(&self, pid: u32) -> Option<String> {
        let target = std::fs::read_link(self.pid_dir(pid).join("exe")).ok()?;
        Some(target.to_string_lossy().into_owned())
    }

    /// Everything about a live process, or `None` when it is gone.
    pub fn entry(&self, pid: u32) -> Option<ProcEntry> {
        let stat = self.stat(pid)?;
        let dir = self.pid_dir(pid);
        let name = read_bounded(&dir.join("comm"), 64)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\n')
                    .to_owned()
            })
            .unwrap_or_default();
        let argv = read_bounded(&dir.join("cmdline"), CMDLINE_MAX)
            .map(|b| split_argv(&b))
            .unwrap_or_default();
        let mut args = argv.into_iter();
        let exepath = self.exe(pid).unwrap_or_default();
        let exe = args.next().unwrap_or_else(|| exepath.clone());
        Some(ProcEntry {
            info: ProcessInfo {
                pid,
                name,
                exe,
                exepath,
                args: args.collect(),
            },
            ppid: stat.ppid,
            start_ticks: stat.start_ticks,
        })
    }
}

/// `pid (comm) state ppid ... starttime ...`; comm may hold spaces and `)`, so fields are
/// counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let after = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the comm: state is field 3, ppid field 4, starttime field 22.
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// NUL-separated argv, at most `youwatch_common::limits::MAX_ARGS` entries.
fn split_argv(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .strip_suffix(b"\0")
        .unwrap_or(bytes)
        .split(|&b| b == 0)
        .take(youwatch_common::limits::MAX_ARGS)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Reads at most `max` bytes of a file; `None` when it cannot be opened or read.
pub fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_comms() {
        let line = "4242 (my) (evil) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 17,
                start_ticks: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn argv_is_split_and_bounded() {
        assert_eq!(split_argv(b"sh\0-c\0echo hi\0"), ["sh", "-c", "echo hi"]);
        assert_eq!(split_argv(b""), Vec::<String>::new());
        let many = "a\0".repeat(100);
        assert_eq!(
            split_argv(many.as_bytes()).len(),
            youwatch_common::limits::MAX_ARGS
        );
    }

    #[test]
    fn reads_this_process() {
        let procfs = ProcFs::default();
        let me = procfs.entry(std::process::id()).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(!me.info.name.is_empty());
        assert!(me.info.exepath.ends_with(&*me.info.name) || !me.info.exepath.is_empty());
        assert!(procfs.entry(u32::MAX).is_none());
    }
}
