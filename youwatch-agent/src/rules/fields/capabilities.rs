//! `thread.cap_*` values: capability sets as Falco prints them (`sinsp_utils::caps_to_string`).

/// Capability names by number (`include/uapi/linux/capability.h`), the list Falco knows;
/// higher bits are not printed, as in Falco.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The names of the capabilities in `set`, in number order, space-separated; `""` for none.
pub fn names(set: u64) -> String {
    let mut out = String::new();
    for (bit, name) in NAMES.iter().enumerate() {
        if set & (1 << bit) != 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_falco() {
        assert_eq!(names(0), "");
        assert_eq!(names(1 << 21), "CAP_SYS_ADMIN");
        assert_eq!(
            names((1 << 0) | (1 << 12) | (1 << 39)),
            "CAP_CHOWN CAP_NET_ADMIN CAP_BPF"
        );
        // Bits Falco has no name for are left out.
        assert_eq!(names(u64::MAX).split(' ').count(), NAMES.len());
    }
}
