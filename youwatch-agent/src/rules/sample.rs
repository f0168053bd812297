//! Synthetic exec events, for tests and benchmarks of rules: a builder that fills an
//! [`EnrichedExec`] the way the sensor and the inventory would.

use std::time::{Duration, SystemTime};

use crate::event::{ContainerInfo, EnrichedExec, ExecEvent, PodInfo, ProcessInfo};

/// Builds an exec of `command` (argv), e.g. `Exec::new(["bash", "-i"])`.
#[derive(Clone, Debug)]
pub struct Exec {
    exec: EnrichedExec,
}

impl Exec {
    /// `argv[0]` gives the process name (its basename, cut to 15 bytes like the kernel's
    /// comm) and, when absolute, the executable path; otherwise `/usr/bin/<name>`.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        let mut process = process(&argv, 4242);
        if process.exepath.is_empty() {
            process.exepath = format!("/usr/bin/{}", process.name);
        }
        let event = ExecEvent {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ktime_ns: 1,
            pid: 4242,
            tgid: 4242,
            ppid: 4200,
            uid: 0,
            gid: 0,
            tty: 0,
            cgroup_id: 7,
            watched_cgroup_id: 7,
            comm: process.name.clone(),
            parent_comm: String::new(),
            filename: process.exepath.clone(),
            argv,
            args_truncated: false,
            filename_truncated: false,
            ..ExecEvent::default()
        };
        Self {
            exec: EnrichedExec {
                event,
                process,
                ancestors: Vec::new(),
                user_name: Some("root".into()),
                container: None,
                pod: None,
            },
        }
    }

    /// Adds the next ancestor (first call: the parent) running `argv`.
    pub fn ancestor<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        let exe = argv.first().cloned().unwrap_or_default();
        let name = comm(&exe);
        let pid = 4200 - u32::try_from(self.exec.ancestors.len()).unwrap_or(0) * 10;
        if self.exec.ancestors.is_empty() {
            self.exec.event.parent_comm = name.clone();
            self.exec.event.ppid = pid;
        }
        self.exec.ancestors.push(ProcessInfo {
            pid,
            name,
            exepath: if exe.starts_with('/') {
                exe.clone()
            } else {
                String::new()
            },
            exe,
            args: argv.into_iter().skip(1).collect(),
        });
        self
    }

    /// A parent known by name only (what the sensor alone reports).
    pub fn parent_comm(mut self, name: &str) -> Self {
        self.exec.event.parent_comm = name.into();
        self.exec.ancestors.push(ProcessInfo {
            pid: self.exec.event.ppid,
            name: name.into(),
            ..ProcessInfo::default()
        });
        self
    }

    /// A controlling terminal (`/dev/pts/0` is 34816).
    pub fn tty(mut self, tty: u32) -> Self {
        self.exec.event.tty = tty;
        self
    }

    pub fn user(mut self, uid: u32, name: &str) -> Self {
        self.exec.event.uid = uid;
        self.exec.user_name = (!name.is_empty()).then(|| name.to_owned());
        self
    }

    /// In a container running `image` (`repo:tag`).
    pub fn container(mut self, name: &str, image: &str) -> Self {
        let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        self.exec.container = Some(ContainerInfo {
            id: "3ad7b26ded6d8e7b23da7d48fe889434573036c27ae5a74837233de441c3601e".into(),
            name: name.into(),
            image: image.into(),
            image_repository: repo.into(),
            image_tag: tag.into(),
            ..ContainerInfo::default()
        });
        self
    }

    /// In pod `namespace/name` (a container too, if none was given).
    pub fn pod(mut self, namespace: &str, name: &str) -> Self {
        if self.exec.container.is_none() {
            self = self.container("app", "docker.io/library/app:1.0");
        }
        self.exec.pod = Some(PodInfo {
            namespace: namespace.into(),
            name: name.into(),
            uid: "0d8e1a3c-5b1f-4a8e-9a55-3f1a2b3c4d5e".into(),
            labels: [(
                "app".to_owned(),
                name.split('-').next().unwrap_or(name).to_owned(),
            )]
            .into_iter()
            .collect(),
            owner: None,
        });
        self
    }

    pub fn build(self) -> EnrichedExec {
        self.exec
    }
}

/// A process running `argv`; its path is known only when argv[0] is absolute.
fn process(argv: &[String], pid: u32) -> ProcessInfo {
    let exe = argv.first().cloned().unwrap_or_default();
    ProcessInfo {
        pid,
        name: comm(&exe),
        exepath: if exe.starts_with('/') {
            exe.clone()
        } else {
            String::new()
        },
        exe,
        args: argv.iter().skip(1).cloned().collect(),
    }
}

/// The kernel's comm for an exec of `path`: its basename, at most 15 bytes.
fn comm(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_owned()
}
