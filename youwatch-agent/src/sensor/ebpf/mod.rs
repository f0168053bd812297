//! Our own eBPF exec sensor: loads `youwatch-ebpf` (embedded in the binary), attaches it to
//! `sched_process_exec`, keeps the kernel's watched-cgroup map, and streams decoded
//! [`ExecEvent`](crate::event::ExecEvent)s on a bounded channel.

mod counters;
mod decode;
mod drain_timer;
mod enforce;
mod kernel_log;
mod offsets;
mod pacing;
mod reader;
mod watch;

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, RingBuf},
    programs::RawTracePoint,
};
use counters::CounterMap;
use prometheus_client::metrics::histogram::Histogram;
use youwatch_common::{KernelOffsets, enforce::NameKey, names};

pub use counters::{SensorCounters, SensorMetrics};
pub use decode::{BootClock, boottime_ns, decode};
pub use enforce::{EnforceCounters, Enforcement, KernelMode, Mechanism, ModeSwitch};
pub use offsets::{OffsetsError, VMLINUX_BTF, from_btf_file as offsets_from_btf};
pub use pacing::Pacing;
pub use reader::{ExecTap, StopReader, WakeFlag, set_thread_nice, spawn_reader};
pub use watch::WatchSet;

use super::SensorConfig;

/// The kernel object, built by `build.rs` from `youwatch-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("YOUWATCH_EBPF_OBJECT"));

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(transparent)]
    Offsets(#[from] OffsetsError),
    #[error(
        "loading the eBPF exec sensor needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE); \
         you are uid {uid}: run it with sudo, or give the DaemonSet those capabilities"
    )]
    NotPrivileged {
        uid: u32,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "sensor.ring_buffer_bytes = {0} is not a power of two of at least 4096: pick e.g. 2097152"
    )]
    BadRingSize(u32),
    #[error(
        "sensor.drain_interval_us = {0} is below {MIN_DRAIN_INTERVAL_US}: the reader would wake more \
         than 100,000 times a second; pick e.g. 500"
    )]
    BadDrainInterval(u32),
    #[error("loading the eBPF exec sensor into the kernel failed: {0}")]
    Load(String),
    #[error("attaching the exec sensor to the sched_process_exec tracepoint failed: {0}")]
    Attach(String),
    #[error("eBPF map {name}: {message}")]
    Map { name: &'static str, message: String },
    #[error("the ring-buffer reader was already started")]
    ReaderTaken,
    #[error("enforcement was already armed, or the sensor is detached")]
    EnforcementArmed,
    #[error(
        "this youwatch-agent was built without its kernel programs (YOUWATCH_EBPF_STUB was set \
         for a check-only build): rebuild without it, after `cargo xtask build-ebpf`"
    )]
    NoPrograms,
}

/// Kernel-side cost of the exec program, as the kernel's BPF run-time statistics count it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Times the program ran: once per exec on the whole node, watched or not.
    pub runs: u64,
    /// Total time spent in the program.
    pub run_time: std::time::Duration,
}

impl From<&aya::programs::ProgramInfo> for ProgramStats {
    fn from(info: &aya::programs::ProgramInfo) -> Self {
        Self {
            runs: info.run_count(),
            run_time: info.run_time(),
        }
    }
}

/// The loaded and attached sensor. Dropping it detaches the program and frees the maps.
pub struct ExecSensor {
    /// `None` once detached. Dropping it detaches the program and its link.
    ebpf: Option<Ebpf>,
    watched: WatchSet,
    counters: CounterMap,
    /// The ring and its wake-up flag, until the reader takes them.
    ring: Option<(RingBuf<MapData>, WakeFlag)>,
    reader: Option<StopReader>,
    pacing: Pacing,
    latency: Histogram,
    /// Enforcement was armed (its maps taken from the object).
    armed: bool,
    /// The kernel's diagnostics (`sensor.kernel_log`), until the reader starts.
    kernel_log: Option<kernel_log::KernelLogReader>,
}

/// The shortest timer the reader drains on (`sensor.drain_interval_us`).
const MIN_DRAIN_INTERVAL_US: u32 = 10;

impl ExecSensor {
    /// Reads offsets from the running kernel's BTF, loads and attaches the exec program.
    pub fn load(config: &SensorConfig) -> Result<Self, SensorError> {
        let offsets = offsets_from_btf(Path::new(VMLINUX_BTF))?;
        Self::load_with_offsets(config, offsets)
    }

    /// As [`ExecSensor::load`], with offsets from elsewhere (tests, other BTF files).
    pub fn load_with_offsets(
        config: &SensorConfig,
        offsets: KernelOffsets,
    ) -> Result<Self, SensorError> {
        if OBJECT.is_empty() {
            return Err(SensorError::NoPrograms);
        }
        let ring = config.ring_buffer_bytes;
        if ring < 4096 || !ring.is_power_of_two() {
            return Err(SensorError::BadRingSize(ring));
        }
        if config.drain_interval_us < MIN_DRAIN_INTERVAL_US {
            return Err(SensorError::BadDrainInterval(config.drain_interval_us));
        }
        raise_memlock_limit();
        // No kernel BTF for aya: the object has no CO-RE relocations (offsets come from our
        // own BTF read above), and parsing vmlinux a second time cost ~25 MB of heap.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(names::OFFSETS_GLOBAL, &offsets, true)
            // Constant for the verifier: statements below the level are dead code.
            .override_global(aya_log::LEVEL, &config.kernel_log.level(), true)
            .map_max_entries(names::EVENTS_MAP, ring)
            .load(OBJECT)
            .map_err(|e| privileged_or(e, |e| SensorError::Load(error_chain(&e))))?;

        let program: &mut RawTracePoint = ebpf
            .program_mut(names::EXEC_PROGRAM)
            .ok_or_else(|| {
                SensorError::Load(format!(
                    "program {} missing from the object",
                    names::EXEC_PROGRAM
                ))
            })?
            .try_into()
            .map_err(|e| SensorError::Load(error_chain(&e)))?;
        program
            .load()
            .map_err(|e| privileged_or(e, |e| SensorError::Load(error_chain(&e))))?;
        if let Ok(info) = program.info() {
            tracing::debug!(
                verified_instructions = info.verified_instruction_count(),
                "exec program loaded"
            );
        }
        program
            .attach(names::EXEC_TRACEPOINT)
            .map_err(|e| privileged_or(e, |e| SensorError::Attach(error_chain(&e))))?;

        let watched = WatchSet::new(
            take_map(&mut ebpf, names::WATCHED_MAP)?,
            take_map(&mut ebpf, youwatch_common::enforce::names::ENFORCED_MAP)?,
        )?;
        let counters = CounterMap::new(
            take_map(&mut ebpf, names::COUNTERS_MAP)?,
            names::COUNTERS_MAP,
        )?;
        let ring = RingBuf::try_from(take_map(&mut ebpf, names::EVENTS_MAP)?)
            .map_err(|e| map_error(names::EVENTS_MAP, e))?;
        let wake_flag = Array::try_from(take_map(&mut ebpf, names::READER_MAP)?)
            .map_err(|e| map_error(names::READER_MAP, e))?;
        let kernel_log =
            kernel_log::KernelLogReader::take(&mut ebpf, config.kernel_log).map_err(|e| {
                SensorError::Map {
                    name: "AYA_LOGS",
                    message: error_chain(&e),
                }
            })?;
        Ok(Self {
            ebpf: Some(ebpf),
            watched,
            counters,
            ring: Some((ring, WakeFlag::new(wake_flag))),
            reader: None,
            pacing: config.pacing(),
            latency: counters::latency_histogram(),
            armed: false,
            kernel_log,
        })
    }

    /// Handle to add and remove watched cgroups; cheap to clone, usable from any task.
    pub fn watch_set(&self) -> WatchSet {
        self.watched.clone()
    }

    /// Arms in-kernel enforcement: the forbidden names, the mechanism (for `Enforce`, the BPF
    /// LSM program where the kernel lets it attach, else SIGKILL) and the mode. Which cgroups
    /// are enforced is set through [`WatchSet::set_enforced`]. Only once per sensor.
    pub fn arm_enforcement(
        &mut self,
        names: &[NameKey],
        mode: KernelMode,
    ) -> Result<Enforcement, SensorError> {
        let ebpf = self
            .ebpf
            .as_mut()
            .filter(|_| !self.armed)
            .ok_or(SensorError::EnforcementArmed)?;
        self.armed = true;
        enforce::arm(ebpf, names, mode)
    }

    /// Starts the ring-buffer reader, a task on the current tokio runtime (call it from within
    /// one); events arrive on the returned bounded channel. Only once per sensor.
    pub fn events(
        &mut self,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<crate::event::ExecEvent>, SensorError> {
        self.events_with_tap(capacity, None)
    }

    /// As [`ExecSensor::events`], with `tap` seeing each event in the reader first.
    pub fn events_with_tap(
        &mut self,
        capacity: usize,
        tap: Option<Box<dyn ExecTap>>,
    ) -> Result<tokio::sync::mpsc::Receiver<crate::event::ExecEvent>, SensorError> {
        let (ring, wake_flag) = self.ring.take().ok_or(SensorError::ReaderTaken)?;
        if let Some(kernel_log) = self.kernel_log.take() {
            kernel_log.spawn().map_err(|e| SensorError::Map {
                name: "AYA_LOGS",
                message: e.to_string(),
            })?;
        }
        let latency = self.latency.clone();
        let (rx, reader) = spawn_reader(ring, wake_flag, capacity, self.pacing, latency, tap)
            .map_err(|e| SensorError::Map {
                name: names::EVENTS_MAP,
                message: e.to_string(),
            })?;
        self.reader = Some(reader);
        Ok(rx)
    }

    /// Current kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<SensorCounters, SensorError> {
        self.counters.read()
    }

    /// Prometheus metrics of this sensor: kernel counters and watched cgroups (read at
    /// scrape), and the delivery latency histogram.
    pub fn metrics(&self) -> SensorMetrics {
        SensorMetrics {
            counters: self.counters.clone(),
            watched: self.watched.clone(),
            latency: self.latency.clone(),
            program_id: self.program_info().map(|info| info.id()),
        }
    }

    fn program_info(&self) -> Option<aya::programs::ProgramInfo> {
        self.ebpf
            .as_ref()?
            .program(names::EXEC_PROGRAM)?
            .info()
            .ok()
    }

    /// How often the kernel ran the exec program and for how long in total. The kernel counts
    /// only while run-time statistics are enabled (`kernel.bpf_stats_enabled=1`, or an fd from
    /// `aya::sys::enable_stats`); otherwise both stay zero. `None` once detached.
    pub fn program_stats(&self) -> Option<ProgramStats> {
        self.program_info().as_ref().map(ProgramStats::from)
    }

    /// Detaches the program, then lets the reader drain the ring and close the event channel:
    /// every event the kernel stored still reaches the receiver. Dropping the sensor does the same.
    pub fn detach(self) {
        drop(self);
    }
}

impl Drop for ExecSensor {
    fn drop(&mut self) {
        // Order matters: no new events after the program is gone, then the final drain.
        drop(self.ebpf.take());
        if let Some(reader) = self.reader.take() {
            reader.stop();
        }
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, SensorError> {
    ebpf.take_map(name).ok_or(SensorError::Map {
        name,
        message: "missing from the object".into(),
    })
}

fn map_error(name: &'static str, e: aya::maps::MapError) -> SensorError {
    SensorError::Map {
        name,
        message: error_chain(&e),
    }
}

/// EPERM/EACCES from a non-root user is a privilege problem, whatever aya wraps it in.
fn privileged_or<E>(err: E, other: impl FnOnce(E) -> SensorError) -> SensorError
where
    E: std::error::Error + Send + Sync + 'static,
{
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let text = error_chain(&err);
    let denied = text.contains("Operation not permitted") || text.contains("Permission denied");
    if uid != 0 && denied {
        return SensorError::NotPrivileged {
            uid,
            source: Box::new(err),
        };
    }
    other(err)
}

/// The error and its sources on one line; aya keeps the verifier log in a source.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; raise it so they load there too.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer; failure only matters on old kernels.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}
