//! Process lineage for rules (`proc.pname`, `proc.pexe`, `proc.pcmdline`, `proc.aname[n]`):
//! a bounded table fed by exec events, with `/proc` for processes the sensor never saw exec
//! (started before the agent, or forked without exec'ing).

use std::collections::HashSet;

use super::{fifo::FifoMap, procfs::ProcFs};
use crate::event::{ExecEvent, ProcessInfo};

#[derive(Clone, Debug)]
struct Known {
    info: ProcessInfo,
    ppid: u32,
    /// `/proc/<pid>/stat` start time when it could be read: a pid reused by a later process
    /// shows a different one, and the entry is then stale.
    start_ticks: Option<u64>,
}

pub struct ProcessTable {
    procs: FifoMap<u32, Known>,
    procfs: ProcFs,
    max_ancestors: usize,
}

impl ProcessTable {
    pub fn new(capacity: usize, max_ancestors: usize, procfs: ProcFs) -> Self {
        Self {
            procs: FifoMap::new(capacity),
            procfs,
            max_ancestors,
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Records an exec (it replaces whatever the pid ran before) and returns the process as
    /// rules see it.
    pub fn record_exec(&mut self, event: &ExecEvent) -> ProcessInfo {
        let exe = event
            .argv
            .first()
            .cloned()
            .unwrap_or_else(|| event.filename.clone());
        // execve's path may be relative (`./run.sh`); the kernel's view of the binary is not.
        let exepath = if event.filename.starts_with('/') {
            event.filename.clone()
        } else {
            self.procfs
                .exe(event.tgid)
                .unwrap_or_else(|| event.filename.clone())
        };
        let info = ProcessInfo {
            pid: event.tgid,
            name: event.comm.clone(),
            exe,
            exepath,
            args: event.argv.iter().skip(1).cloned().collect(),
        };
        let start_ticks = self.procfs.stat(event.tgid).map(|s| s.start_ticks);
        self.procs.insert(
            event.tgid,
            Known {
                info: info.clone(),
                ppid: event.ppid,
                start_ticks,
            },
        );
        info
    }

    /// Parent first, then grandparent..., at most `max_ancestors`. The parent is always
    /// present (named from the event's `parent_comm` when nothing else is known about it).
    pub fn ancestors(&mut self, event: &ExecEvent) -> Vec<ProcessInfo> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut pid = event.ppid;
        // The kernel named the parent at exec time: an entry under another name is stale.
        let mut expected_name = Some(event.parent_comm.as_str());
        while pid != 0 && out.len() < self.max_ancestors && seen.insert(pid) {
            match self.lookup(pid, expected_name) {
                Some(known) => {
                    out.push(known.info);
                    pid = known.ppid;
                }
                None => {
                    if out.is_empty() {
                        out.push(ProcessInfo {
                            pid,
                            name: event.parent_comm.clone(),
                            ..Default::default()
                        });
                    }
                    break;
                }
            }
            expected_name = None;
        }
        out
    }

    fn lookup(&mut self, pid: u32, expected_name: Option<&str>) -> Option<Known> {
        if let Some(known) = self.procs.get(&pid) {
            let name_ok = expected_name.is_none_or(|n| n == known.info.name);
            let start_ok = match (known.start_ticks, self.procfs.stat(pid)) {
                (Some(then), Some(now)) => then == now.start_ticks,
                // Gone (or never read): the table is the best witness left.
                _ => true,
            };
            if name_ok && start_ok {
                return Some(known.clone());
            }
        }
        let entry = self.procfs.entry(pid)?;
        let known = Known {
            info: entry.info,
            ppid: entry.ppid,
            start_ticks: Some(entry.start_ticks),
        };
        self.procs.insert(pid, known.clone());
        Some(known)
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::SystemTime};

    use super::*;

    fn exec(tgid: u32, ppid: u32, comm: &str, parent_comm: &str, argv: &[&str]) -> ExecEvent {
        ExecEvent {
            time: SystemTime::UNIX_EPOCH,
            ktime_ns: 0,
            pid: tgid,
            tgid,
            ppid,
            uid: 0,
            gid: 0,
            tty: 0,
            cgroup_id: 1,
            watched_cgroup_id: 1,
            comm: comm.into(),
            parent_comm: parent_comm.into(),
            filename: format!("/bin/{comm}"),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            args_truncated: false,
            filename_truncated: false,
            ..ExecEvent::default()
        }
    }

    /// A fake `/proc` holding one process.
    fn fake_proc(dir: &Path, pid: u32, ppid: u32, comm: &str, cmdline: &str, start: u64) {
        let p = dir.join(pid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("stat"),
            format!("{pid} ({comm}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"),
        )
        .unwrap();
        std::fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(p.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
    }

    #[test]
    fn lineage_from_execs_then_proc() {
        let dir = tempfile::tempdir().unwrap();
        // 10 (containerd-shim, started before the agent) -> 20 sh -> 30 curl
        fake_proc(
            dir.path(),
            10,
            1,
            "containerd-shim",
            "containerd-shim -id x",
            5,
        );
        let mut table = ProcessTable::new(16, 8, ProcFs::new(dir.path()));
        let sh = table.record_exec(&exec(
            20,
            10,
            "sh",
            "containerd-shim",
            &["sh", "-c", "curl x"],
        ));
        assert_eq!(sh.cmdline(), "sh -c curl x");
        let curl = exec(30, 20, "curl", "sh", &["curl", "x"]);
        let info = table.record_exec(&curl);
        assert_eq!(
            (info.exe.as_str(), info.exepath.as_str()),
            ("curl", "/bin/curl")
        );
        let ancestors = table.ancestors(&curl);
        let names: Vec<_> = ancestors.iter().map(|a| a.name.as_str()).collect();
        // pid 1 is not in the fake /proc: the walk stops there.
        assert_eq!(names, ["sh", "containerd-shim"]);
        assert_eq!(ancestors[0].args, ["-c", "curl x"]);
        assert_eq!(ancestors[1].exe, "containerd-shim");
    }

    #[test]
    fn unknown_parent_is_named_from_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ProcessTable::new(16, 8, ProcFs::new(dir.path()));
        let ev = exec(30, 29, "ls", "bash", &["ls"]);
        let ancestors = table.ancestors(&ev);
        assert_eq!(ancestors.len(), 1);
        assert_eq!((ancestors[0].pid, ancestors[0].name.as_str()), (29, "bash"));
    }

    #[test]
    fn reused_pid_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ProcessTable::new(16, 8, ProcFs::new(dir.path()));
        fake_proc(dir.path(), 20, 0, "sh", "sh", 100);
        table.record_exec(&exec(20, 0, "sh", "x", &["sh"]));
        // pid 20 exits and is reused by a forked python that never exec'd.
        fake_proc(dir.path(), 20, 0, "python3", "python3 app.py", 200);
        let child = exec(21, 20, "id", "python3", &["id"]);
        let ancestors = table.ancestors(&child);
        assert_eq!(ancestors[0].name, "python3");
        assert_eq!(ancestors[0].args, ["app.py"]);
    }

    #[test]
    fn ancestors_are_bounded_and_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ProcessTable::new(16, 2, ProcFs::new(dir.path()));
        table.record_exec(&exec(2, 3, "b", "c", &["b"]));
        table.record_exec(&exec(3, 2, "c", "b", &["c"]));
        table.record_exec(&exec(4, 3, "d", "c", &["d"]));
        assert_eq!(table.ancestors(&exec(5, 4, "e", "d", &["e"])).len(), 2);
        let mut looping = ProcessTable::new(16, 8, ProcFs::new(dir.path()));
        looping.record_exec(&exec(2, 3, "b", "c", &["b"]));
        looping.record_exec(&exec(3, 2, "c", "b", &["c"]));
        assert_eq!(looping.ancestors(&exec(9, 2, "z", "b", &["z"])).len(), 2);
    }
}
