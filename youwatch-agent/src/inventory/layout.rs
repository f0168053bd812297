//! Where the kubelet puts a pod's cgroup, for both cgroup drivers and the three QoS classes.
//!
//! systemd driver (root `kubepods.slice`):
//!   Guaranteed  `kubepods.slice/kubepods-pod<uid_>.slice`
//!   Burstable   `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`
//!   BestEffort  `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice`
//! (`uid_` is the UID with `-` replaced by `_`; with `--cgroup-root=/kubelet`, as kind does,
//! the root is `kubelet.slice/kubelet-kubepods.slice` and every name takes that prefix).
//!
//! cgroupfs driver (root `kubepods`):
//!   Guaranteed `kubepods/pod<uid>`, Burstable `kubepods/burstable/pod<uid>`,
//!   BestEffort `kubepods/besteffort/pod<uid>`.
//!
//! On hybrid hosts the eBPF sensor matches cgroup v2 ids, so the pod must be found under the
//! cgroup v2 mount (`/sys/fs/cgroup/unified`), where systemd and runc mirror it.

use std::path::{Path, PathBuf};

/// A pod's Quality of Service class (`status.qosClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub const ALL: [Qos; 3] = [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort];

    /// From `status.qosClass`; `None` for anything else (then every class is tried).
    pub fn from_status(value: &str) -> Option<Qos> {
        match value {
            "Guaranteed" => Some(Qos::Guaranteed),
            "Burstable" => Some(Qos::Burstable),
            "BestEffort" => Some(Qos::BestEffort),
            _ => None,
        }
    }

    /// The class's directory word; Guaranteed pods have no class directory.
    fn dir_word(self) -> Option<&'static str> {
        match self {
            Qos::Guaranteed => None,
            Qos::Burstable => Some("burstable"),
            Qos::BestEffort => Some("besteffort"),
        }
    }
}

/// The kubelet's cgroup driver, told apart by the root's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Systemd,
    Cgroupfs,
}

/// Roots tried by auto-detection, relative to the cgroup v2 mount, in order.
pub const AUTO_ROOTS: [&str; 4] = [
    "kubepods.slice",
    "kubepods",
    "kubelet.slice/kubelet-kubepods.slice",
    "kubelet/kubepods",
];

/// The directory all pod cgroups live under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubepodsRoot {
    pub path: PathBuf,
    pub driver: Driver,
    /// systemd unit-name prefix (`kubepods`, `kubelet-kubepods`); unused for cgroupfs.
    prefix: String,
}

impl KubepodsRoot {
    /// A root at `path`; the driver is systemd when the name ends in `.slice`.
    pub fn new(path: PathBuf) -> KubepodsRoot {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (driver, prefix) = match name.strip_suffix(".slice") {
            Some(prefix) => (Driver::Systemd, prefix.to_owned()),
            None => (Driver::Cgroupfs, String::new()),
        };
        KubepodsRoot {
            path,
            driver,
            prefix,
        }
    }

    /// The configured root (`configured` absolute, or relative to `mount`), or the first of
    /// [`AUTO_ROOTS`] that exists. `None` when auto-detection finds nothing yet (the kubelet
    /// may not have started).
    pub fn find(mount: &Path, configured: &str) -> Option<KubepodsRoot> {
        if !configured.is_empty() {
            return Some(KubepodsRoot::new(mount.join(configured)));
        }
        AUTO_ROOTS
            .iter()
            .map(|rel| mount.join(rel))
            .find(|path| path.is_dir())
            .map(KubepodsRoot::new)
    }

    /// Directories a pod's cgroup may be at, most likely first: the one its QoS class names,
    /// or all three when the class is unknown.
    pub fn pod_dirs(&self, uid: &str, qos: Option<Qos>) -> Vec<PathBuf> {
        match qos {
            Some(qos) => vec![self.pod_dir(uid, qos)],
            None => Qos::ALL.iter().map(|&q| self.pod_dir(uid, q)).collect(),
        }
    }

    /// The directory of a pod with this UID and QoS class.
    pub fn pod_dir(&self, uid: &str, qos: Qos) -> PathBuf {
        match (self.driver, qos.dir_word()) {
            (Driver::Systemd, None) => self.path.join(format!(
                "{}-pod{}.slice",
                self.prefix,
                uid.replace('-', "_")
            )),
            (Driver::Systemd, Some(word)) => self
                .path
                .join(format!("{}-{word}.slice", self.prefix))
                .join(format!(
                    "{}-{word}-pod{}.slice",
                    self.prefix,
                    uid.replace('-', "_")
                )),
            (Driver::Cgroupfs, None) => self.path.join(format!("pod{uid}")),
            (Driver::Cgroupfs, Some(word)) => self.path.join(word).join(format!("pod{uid}")),
        }
    }

    /// The root and its QoS class directories: where new pod cgroups appear.
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.path.clone()];
        for word in ["burstable", "besteffort"] {
            dirs.push(match self.driver {
                Driver::Systemd => self.path.join(format!("{}-{word}.slice", self.prefix)),
                Driver::Cgroupfs => self.path.join(word),
            });
        }
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1b2c3d-aaaa-4bbb-8ccc-0123456789ab";

    #[test]
    fn both_drivers_for_every_qos_class() {
        let u = UID.replace('-', "_");
        let systemd = KubepodsRoot::new("/c/kubepods.slice".into());
        let cgroupfs = KubepodsRoot::new("/c/kubepods".into());
        assert_eq!(
            (systemd.driver, cgroupfs.driver),
            (Driver::Systemd, Driver::Cgroupfs)
        );
        for (root, qos, expected) in [
            (
                &systemd,
                Qos::Guaranteed,
                format!("/c/kubepods.slice/kubepods-pod{u}.slice"),
            ),
            (
                &systemd,
                Qos::Burstable,
                format!(
                    "/c/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"
                ),
            ),
            (
                &systemd,
                Qos::BestEffort,
                format!(
                    "/c/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice"
                ),
            ),
            (&cgroupfs, Qos::Guaranteed, format!("/c/kubepods/pod{UID}")),
            (
                &cgroupfs,
                Qos::Burstable,
                format!("/c/kubepods/burstable/pod{UID}"),
            ),
            (
                &cgroupfs,
                Qos::BestEffort,
                format!("/c/kubepods/besteffort/pod{UID}"),
            ),
        ] {
            assert_eq!(root.pod_dir(UID, qos), PathBuf::from(expected), "{qos:?}");
        }
    }

    #[test]
    fn kind_style_prefixed_root() {
        let root = KubepodsRoot::new("/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice".into());
        let u = UID.replace('-', "_");
        assert_eq!(
            root.pod_dir(UID, Qos::Burstable),
            PathBuf::from(format!(
                "/sys/fs/cgroup/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{u}.slice"
            ))
        );
    }

    #[test]
    fn unknown_qos_tries_every_class() {
        let root = KubepodsRoot::new("/x/kubepods".into());
        assert_eq!(root.pod_dirs(UID, None).len(), 3);
        assert_eq!(root.pod_dirs(UID, Some(Qos::Burstable)).len(), 1);
        assert_eq!(Qos::from_status("BestEffort"), Some(Qos::BestEffort));
        assert_eq!(Qos::from_status("bogus"), None);
    }

    #[test]
    fn configured_root_is_relative_to_the_mount_or_absolute() {
        let mount = Path::new("/sys/fs/cgroup/unified");
        assert_eq!(
            KubepodsRoot::find(mount, "kubepods").unwrap().path,
            mount.join("kubepods")
        );
        assert_eq!(
            KubepodsRoot::find(mount, "/elsewhere/kubepods.slice")
                .unwrap()
                .path,
            PathBuf::from("/elsewhere/kubepods.slice")
        );
    }

    #[test]
    fn parent_dirs_include_the_qos_directories() {
        let root = KubepodsRoot::new("/r/kubepods.slice".into());
        assert_eq!(
            root.parent_dirs(),
            vec![
                PathBuf::from("/r/kubepods.slice"),
                PathBuf::from("/r/kubepods.slice/kubepods-burstable.slice"),
                PathBuf::from("/r/kubepods.slice/kubepods-besteffort.slice"),
            ]
        );
    }
}
