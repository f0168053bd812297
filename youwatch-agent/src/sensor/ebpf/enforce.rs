//! In-kernel enforcement, user side: the forbidden names, the mode in force, which mechanism
//! the kernel allows (a BPF LSM program denying the exec, else SIGKILL from the exec program),
//! and the kernel's counters. Which cgroups are enforced is the [`super::WatchSet`]'s business.

use std::sync::{Arc, Mutex};

use aya::{
    Btf, Ebpf,
    maps::{Array, HashMap, MapData},
    programs::Lsm,
};
use youwatch_common::enforce::{self as kernel, NameKey};

use super::{SensorError, counters::CounterMap, error_chain, map_error, take_map};

/// Where the kernel lists its active LSMs (securityfs).
const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// How a forbidden exec is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// The BPF LSM program on `bprm_check_security` denies it: the exec fails with EPERM.
    Lsm,
    /// The exec program sends SIGKILL at `sched_process_exec`: the new program never runs an
    /// instruction, its parent sees it killed.
    SigKill,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm",
            Mechanism::SigKill => "sigkill",
        }
    }
}

/// The mode the kernel is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelMode {
    Off,
    /// Forbidden execs run, flagged as would-have-been-stopped.
    Monitor,
    /// Forbidden execs are stopped by the [`Mechanism`].
    Enforce,
}

/// What arming enforcement found and set.
#[derive(Clone)]
pub struct Enforcement {
    /// The mechanism enforce mode uses.
    pub mechanism: Mechanism,
    /// Why the LSM program is not used, when it is not.
    pub lsm_unavailable: Option<String>,
    pub switch: ModeSwitch,
    pub(super) counters: CounterMap,
}

/// Switches the kernel's mode at once; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct ModeSwitch {
    map: Arc<Mutex<Array<MapData, u32>>>,
    mechanism: Mechanism,
}

impl ModeSwitch {
    pub fn set(&self, mode: KernelMode) -> Result<(), SensorError> {
        let value = match (mode, self.mechanism) {
            (KernelMode::Off, _) => kernel::mode::OFF,
            (KernelMode::Monitor, _) => kernel::mode::MONITOR,
            (KernelMode::Enforce, Mechanism::Lsm) => kernel::mode::DENY,
            (KernelMode::Enforce, Mechanism::SigKill) => kernel::mode::KILL,
        };
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(0, value, 0)
            .map_err(|e| map_error(kernel::names::MODE_MAP, e))
    }

    /// The mode the kernel is in now.
    pub fn get(&self) -> Result<KernelMode, SensorError> {
        let value = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&0, 0)
            .map_err(|e| map_error(kernel::names::MODE_MAP, e))?;
        Ok(match value {
            kernel::mode::OFF => KernelMode::Off,
            kernel::mode::MONITOR => KernelMode::Monitor,
            _ => KernelMode::Enforce,
        })
    }
}

/// The kernel's enforcement counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceCounters {
    pub killed: u64,
    pub denied: u64,
    pub would_stop: u64,
    pub signal_failed: u64,
}

impl Enforcement {
    pub fn counters(&self) -> Result<EnforceCounters, SensorError> {
        Ok(EnforceCounters {
            killed: self.counters.sum(kernel::counter::KILLED)?,
            denied: self.counters.sum(kernel::counter::DENIED)?,
            would_stop: self.counters.sum(kernel::counter::WOULD_STOP)?,
            signal_failed: self.counters.sum(kernel::counter::SIGNAL_FAILED)?,
        })
    }
}

/// Writes the forbidden names, picks the mechanism (the LSM program only for enforce mode,
/// and only where the kernel lets it attach) and sets the mode.
pub(super) fn arm(
    ebpf: &mut Ebpf,
    names: &[NameKey],
    mode: KernelMode,
) -> Result<Enforcement, SensorError> {
    let mut forbidden: HashMap<MapData, NameKey, u8> =
        HashMap::try_from(take_map(ebpf, kernel::names::FORBIDDEN_MAP)?)
            .map_err(|e| map_error(kernel::names::FORBIDDEN_MAP, e))?;
    if names.len() > kernel::MAX_NAMES as usize {
        return Err(SensorError::Map {
            name: kernel::names::FORBIDDEN_MAP,
            message: format!(
                "{} forbidden names, the map holds {}",
                names.len(),
                kernel::MAX_NAMES
            ),
        });
    }
    for name in names {
        forbidden
            .insert(name, 1, 0)
            .map_err(|e| map_error(kernel::names::FORBIDDEN_MAP, e))?;
    }
    let counters = CounterMap::new(
        take_map(ebpf, kernel::names::COUNTERS_MAP)?,
        kernel::names::COUNTERS_MAP,
    )?;
    let modes = Array::try_from(take_map(ebpf, kernel::names::MODE_MAP)?)
        .map_err(|e| map_error(kernel::names::MODE_MAP, e))?;
    let (mechanism, lsm_unavailable) = match mode {
        KernelMode::Enforce => match attach_lsm(ebpf) {
            Ok(()) => (Mechanism::Lsm, None),
            Err(why) => (Mechanism::SigKill, Some(why)),
        },
        KernelMode::Off | KernelMode::Monitor => (
            Mechanism::SigKill,
            Some("not tried: nothing is stopped in this mode".to_owned()),
        ),
    };
    let switch = ModeSwitch {
        map: Arc::new(Mutex::new(modes)),
        mechanism,
    };
    switch.set(mode)?;
    Ok(Enforcement {
        mechanism,
        lsm_unavailable,
        switch,
        counters,
    })
}

/// Loads and attaches the LSM program; why not, in words, when the kernel refuses.
fn attach_lsm(ebpf: &mut Ebpf) -> Result<(), String> {
    if let Ok(list) = std::fs::read_to_string(LSM_LIST)
        && !list.trim().split(',').any(|lsm| lsm == "bpf")
    {
        return Err(format!(
            "the BPF LSM is not active ({LSM_LIST}: {}; add `bpf` to the kernel's lsm= boot \
             parameter)",
            list.trim()
        ));
    }
    let program: &mut Lsm = ebpf
        .program_mut(kernel::names::LSM_PROGRAM)
        .ok_or_else(|| {
            format!(
                "program {} missing from the object",
                kernel::names::LSM_PROGRAM
            )
        })?
        .try_into()
        .map_err(|e| error_chain(&e))?;
    // aya's own BTF parse, only here: the program is attached by the hook's BTF id.
    let btf = Btf::from_sys_fs().map_err(|e| format!("reading the kernel's BTF: {e}"))?;
    program
        .load(kernel::names::LSM_HOOK, &btf)
        .map_err(|e| refused("loading", &e))?;
    program.attach().map_err(|e| refused("attaching", &e))?;
    Ok(())
}

/// The kernel's refusal, with what it usually means.
fn refused(step: &str, err: &aya::programs::ProgramError) -> String {
    let text = error_chain(err);
    let hint = if text.contains("os error 524") || text.contains("Unknown error 524") {
        " (the kernel cannot attach BPF trampolines, which LSM programs need)"
    } else if text.contains("Operation not permitted") {
        if holds_bpf_capabilities() {
            " (refused although the agent holds CAP_BPF and CAP_PERFMON: this kernel does not \
             allow BPF LSM programs, which run on BPF trampolines)"
        } else {
            " (the agent lacks CAP_BPF or CAP_PERFMON)"
        }
    } else {
        ""
    };
    format!(
        "{step} the BPF LSM program on {}: {text}{hint}",
        kernel::names::LSM_HOOK
    )
}

/// CAP_BPF (39) and CAP_PERFMON (38) in the effective set (`/proc/self/status` CapEff).
fn holds_bpf_capabilities() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 39) != 0 && caps & (1 << 38) != 0)
}
