//! Kernel records ([`ExecRecord`], as the exec program writes them) → owned [`ExecEvent`]s.

use std::time::{Duration, SystemTime};

use youwatch_common::{ExecRecord, enforce::verdict, flags, limits};

use crate::event::{
    Capabilities, EnforceOutcome, Enforcement, Environ, ExeOrigin, ExecEvent, MatchedBy,
};

/// Converts `CLOCK_BOOTTIME` stamps to wall-clock time. Sample it once per batch: the offset
/// moves only when the wall clock is stepped.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    wall_minus_boot: i128,
}

impl BootClock {
    pub fn now() -> Self {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            wall_minus_boot: wall - boottime_ns() as i128,
        }
    }

    pub fn to_wall(self, boot_ns: u64) -> SystemTime {
        let nanos = (boot_ns as i128 + self.wall_minus_boot).max(0) as u128;
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock the kernel stamps events with.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_BOOTTIME exists on every supported kernel.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, thiserror::Error)]
#[error(
    "ring buffer record of {got} bytes, expected {expected}: kernel and user space disagree on ExecRecord"
)]
pub struct BadRecord {
    pub got: usize,
    pub expected: usize,
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8], clock: BootClock) -> Result<ExecEvent, BadRecord> {
    let expected = size_of::<ExecRecord>();
    if record.len() < expected {
        return Err(BadRecord {
            got: record.len(),
            expected,
        });
    }
    // Read in place (the ring buffer gives 8-byte aligned records), not a 3.2 KiB copy per
    // exec; copied only if misaligned.
    let ptr = record.as_ptr().cast::<ExecRecord>();
    let copy;
    let raw: &ExecRecord = if ptr.is_aligned() {
        // SAFETY: length and alignment checked; ExecRecord is plain data valid for any
        // bytes; the record outlives `raw`.
        unsafe { &*ptr }
    } else {
        // SAFETY: length checked; ExecRecord is plain data valid for any bytes.
        copy = unsafe { std::ptr::read_unaligned(ptr) };
        &copy
    };
    let args_len = (raw.args_len as usize).min(limits::ARGS_LEN);
    let (argv, cut) = split_nul(&raw.args[..args_len], limits::MAX_ARGS);
    let env_len = (raw.env_len as usize).min(limits::ENV_LEN);
    let (env, env_cut) = environ(&raw.env[..env_len]);
    let has = |flag: u32| raw.flags & flag != 0;
    Ok(ExecEvent {
        time: clock.to_wall(raw.ktime_ns),
        ktime_ns: raw.ktime_ns,
        pid: raw.pid,
        tgid: raw.tgid,
        ppid: raw.ppid,
        uid: raw.uid,
        gid: raw.gid,
        tty: raw.tty,
        cgroup_id: raw.cgroup_id,
        watched_cgroup_id: raw.watched_cgroup_id,
        comm: c_string(&raw.comm),
        parent_comm: c_string(&raw.parent_comm),
        filename: c_string(&raw.filename),
        argv,
        args_truncated: cut || has(flags::ARGS_TRUNCATED),
        filename_truncated: has(flags::FILENAME_TRUNCATED),
        vpid: (!has(flags::PIDNS_READ_FAILED)).then_some(raw.vpid),
        vpgid: (!has(flags::PIDNS_READ_FAILED)).then_some(raw.vpgid),
        loginuid: raw.loginuid,
        caps: (!has(flags::CAPS_READ_FAILED)).then_some(Capabilities {
            inheritable: raw.cap_inheritable,
            permitted: raw.cap_permitted,
            effective: raw.cap_effective,
        }),
        cwd: (!has(flags::CWD_READ_FAILED | flags::CWD_TRUNCATED))
            .then(|| cwd(&raw.cwd, raw.cwd_len)),
        cwd_truncated: has(flags::CWD_TRUNCATED),
        env,
        env_truncated: env_cut || has(flags::ENV_TRUNCATED),
        exe_origin: (!has(flags::EXE_READ_FAILED)).then_some(ExeOrigin {
            upper_layer: has(flags::EXE_UPPER_LAYER),
            lower_layer: has(flags::EXE_LOWER_LAYER),
            memfd: has(flags::EXE_FROM_MEMFD),
        }),
        enforcement: enforcement(raw.enforce, &raw.matched),
    })
}

/// The kernel's verdict bits and matched name; `None` when the exec was not forbidden.
fn enforcement(bits: u32, matched: &[u8]) -> Option<Enforcement> {
    let outcome = if bits & verdict::KILLED != 0 {
        EnforceOutcome::Killed
    } else if bits & verdict::DENIED != 0 {
        EnforceOutcome::Denied
    } else if bits & verdict::SIGNAL_FAILED != 0 {
        EnforceOutcome::SignalFailed
    } else if bits & verdict::WOULD_STOP != 0 {
        EnforceOutcome::WouldStop
    } else {
        return None;
    };
    let by = if bits & verdict::BY_INTERP != 0 {
        MatchedBy::Interpreter
    } else if bits & verdict::BY_PATH != 0 {
        MatchedBy::Path
    } else {
        MatchedBy::File
    };
    Some(Enforcement {
        outcome,
        matched: c_string(matched),
        by,
    })
}

/// The path that ends the `cwd` area (`/name/name`), with the trailing `/` Falco's
/// `proc.cwd` has: `/name/name/`, and `/` for the root.
fn cwd(area: &[u8; limits::CWD_LEN], len: u32) -> String {
    let len = (len as usize).min(limits::CWD_LEN);
    let mut path = String::from_utf8_lossy(&area[limits::CWD_LEN - len..]).into_owned();
    path.push('/');
    path
}

/// Text up to the first NUL (or the whole buffer), invalid UTF-8 replaced.
fn c_string(bytes: &[u8]) -> String {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The environment area, keeping at most `MAX_ENV` variables; true when some were cut.
fn environ(area: &[u8]) -> (Environ, bool) {
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    let (kept, cut) = match memchr::memchr_iter(0, area).nth(limits::MAX_ENV - 1) {
        Some(end) => (&area[..end], true),
        None => (area, false),
    };
    let text = String::from_utf8_lossy(kept).into_owned();
    (Environ::from_nul_separated(text), cut)
}

/// Splits a NUL-separated area, keeping at most `max` strings; true when some were cut.
fn split_nul(area: &[u8], max: usize) -> (Vec<String>, bool) {
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    if area.is_empty() {
        return (Vec::new(), false);
    }
    let mut out = Vec::new();
    for item in area.split(|&b| b == 0) {
        if out.len() == max {
            return (out, true);
        }
        out.push(String::from_utf8_lossy(item).into_owned());
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_split_on_nul_keeping_empty_arguments() {
        assert_eq!(
            split_nul(b"sh\0-c\0\0echo hi\0", limits::MAX_ARGS),
            (
                vec!["sh".into(), "-c".into(), "".into(), "echo hi".into()],
                false
            )
        );
        assert_eq!(split_nul(b"", limits::MAX_ARGS), (vec![], false));
        assert_eq!(
            split_nul(b"partial-arg", limits::MAX_ARGS),
            (vec!["partial-arg".into()], false)
        );
    }

    #[test]
    fn more_than_max_args_is_truncation() {
        let area: Vec<u8> = (0..20)
            .flat_map(|i| format!("a{i}\0").into_bytes())
            .collect();
        let (argv, cut) = split_nul(&area, limits::MAX_ARGS);
        assert_eq!(argv.len(), limits::MAX_ARGS);
        assert!(cut);
    }

    fn record(raw: &ExecRecord) -> Vec<u8> {
        // SAFETY: plain data, read as bytes.
        unsafe {
            std::slice::from_raw_parts(
                (raw as *const ExecRecord).cast::<u8>(),
                size_of::<ExecRecord>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn process_state_and_cwd() {
        // SAFETY: all-zero is a valid ExecRecord.
        let mut raw: ExecRecord = unsafe { std::mem::zeroed() };
        raw.vpid = 1;
        raw.vpgid = 1;
        raw.loginuid = 1000;
        raw.cap_permitted = 1 << 21;
        raw.flags = flags::EXE_UPPER_LAYER;
        let path = b"/dev/shm";
        raw.cwd[limits::CWD_LEN - path.len()..].copy_from_slice(path);
        raw.cwd_len = path.len() as u32;
        raw.env[..12].copy_from_slice(b"A=1\0B=two\0\0\0");
        raw.env_len = 10;
        let ev = decode(&record(&raw), BootClock::now()).unwrap();
        assert_eq!((ev.vpid, ev.vpgid, ev.loginuid), (Some(1), Some(1), 1000));
        assert_eq!(ev.caps.unwrap().permitted, 1 << 21);
        assert_eq!(ev.cwd.as_deref(), Some("/dev/shm/"));
        assert_eq!(ev.env.iter().collect::<Vec<_>>(), ["A=1", "B=two"]);
        let origin = ev.exe_origin.unwrap();
        assert!(origin.upper_layer && !origin.lower_layer && !origin.memfd);

        // The root is `/`; what the kernel could not read is unknown, not zero.
        raw.cwd_len = 0;
        raw.flags = flags::PIDNS_READ_FAILED | flags::CAPS_READ_FAILED | flags::EXE_READ_FAILED;
        let ev = decode(&record(&raw), BootClock::now()).unwrap();
        assert_eq!(ev.cwd.as_deref(), Some("/"));
        assert_eq!((ev.vpid, ev.caps, ev.exe_origin), (None, None, None));
        raw.flags = flags::CWD_TRUNCATED;
        let ev = decode(&record(&raw), BootClock::now()).unwrap();
        assert!(ev.cwd.is_none() && ev.cwd_truncated);
    }

    #[test]
    fn enforcement_verdicts() {
        // SAFETY: all-zero is a valid ExecRecord.
        let mut raw: ExecRecord = unsafe { std::mem::zeroed() };
        assert_eq!(
            decode(&record(&raw), BootClock::now()).unwrap().enforcement,
            None
        );
        raw.matched[..4].copy_from_slice(b"dash");
        for (bits, outcome, by) in [
            (
                verdict::KILLED | verdict::BY_FILE,
                EnforceOutcome::Killed,
                MatchedBy::File,
            ),
            (
                verdict::DENIED | verdict::BY_INTERP,
                EnforceOutcome::Denied,
                MatchedBy::Interpreter,
            ),
            (
                verdict::WOULD_STOP | verdict::BY_PATH,
                EnforceOutcome::WouldStop,
                MatchedBy::Path,
            ),
            (
                verdict::SIGNAL_FAILED | verdict::BY_FILE,
                EnforceOutcome::SignalFailed,
                MatchedBy::File,
            ),
        ] {
            raw.enforce = bits;
            let e = decode(&record(&raw), BootClock::now())
                .unwrap()
                .enforcement
                .unwrap();
            assert_eq!((e.outcome, e.by, e.matched.as_str()), (outcome, by, "dash"));
        }
    }

    #[test]
    fn environment_keeps_at_most_max_env_variables() {
        let area: Vec<u8> = (0..limits::MAX_ENV + 3)
            .flat_map(|i| format!("V{i}=x\0").into_bytes())
            .collect();
        let (env, cut) = environ(&area);
        assert!(cut);
        assert_eq!(env.iter().count(), limits::MAX_ENV);
        assert_eq!(
            env.iter().last(),
            Some(format!("V{}=x", limits::MAX_ENV - 1).as_str())
        );
        let (env, cut) = environ(b"A=1\0\0B=2\0");
        assert!(!cut);
        assert_eq!(env.iter().collect::<Vec<_>>(), ["A=1", "", "B=2"]);
        assert_eq!(environ(b"").0.iter().count(), 0);
    }

    #[test]
    fn short_record_is_an_error_not_a_panic() {
        assert!(decode(&[0u8; 7], BootClock::now()).is_err());
    }

    #[test]
    fn c_strings_stop_at_nul_and_tolerate_bad_utf8() {
        assert_eq!(c_string(b"bash\0garbage"), "bash");
        assert_eq!(c_string(b"\xffx"), "\u{fffd}x");
    }
}
