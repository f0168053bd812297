//! The sensor: our own kernel exec sensor (`ebpf`), where exec events enter the agent.
//! (Alerts from an existing Falco enter through [`crate::inputs::falco`].)

pub mod ebpf;

use serde::Deserialize;

use crate::yaml_word::YamlWord;

/// `sensor:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    /// Size of the kernel → user ring buffer in bytes (power of two, ≥ 4096). Larger absorbs
    /// longer exec bursts before events are counted as lost.
    pub ring_buffer_bytes: u32,
    /// Exec events buffered between the ring-buffer reader and the next stage. When full the
    /// reader waits, the ring buffer fills, and the kernel counts what it could not store.
    pub channel_capacity: usize,
    /// Nice value of the agent's async worker threads, which read the ring (-20..19, lower is
    /// more urgent). Raised by default so exec events keep flowing within a millisecond on a
    /// saturated node; needs CAP_SYS_NICE, else the workers stay at the default (logged once).
    pub reader_nice: i32,
    /// While execs come faster than `timer_above_rate`, the reader drains the ring this often
    /// (microseconds) instead of being woken per exec: the most an exec waits in the ring.
    pub drain_interval_us: u32,
    /// Execs per second above which the reader drains on its timer; below it (and below half
    /// of it once on the timer) every exec wakes the reader.
    pub timer_above_rate: u32,
    /// The kernel programs' own diagnostics (failed kernel reads, a full ring buffer, each
    /// exec at `debug`), logged with target `youwatch_agent::kernel`. `off` costs nothing.
    pub kernel_log: KernelLog,
}

/// How much the kernel programs say about themselves. Below the chosen level, log statements
/// are dead code to the verifier (the level is a load-time constant).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "YamlWord")]
pub enum KernelLog {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl TryFrom<YamlWord> for KernelLog {
    type Error = String;

    fn try_from(word: YamlWord) -> Result<Self, String> {
        Ok(match word.text() {
            "off" => KernelLog::Off,
            "error" => KernelLog::Error,
            "warn" => KernelLog::Warn,
            "info" => KernelLog::Info,
            "debug" => KernelLog::Debug,
            "trace" => KernelLog::Trace,
            other => {
                return Err(format!(
                    "unknown level {other:?}: expected off, error, warn, info, debug or trace"
                ));
            }
        })
    }
}

impl KernelLog {
    /// The value of aya-log's `AYA_LOG_LEVEL` global: 0 is off, then error (1) .. trace (5).
    pub fn level(self) -> u8 {
        self as u8
    }
}

impl SensorConfig {
    pub fn pacing(&self) -> ebpf::Pacing {
        ebpf::Pacing {
            drain_interval: std::time::Duration::from_micros(u64::from(self.drain_interval_us)),
            timer_above_rate: self.timer_above_rate,
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: youwatch_common::limits::DEFAULT_RING_BYTES,
            channel_capacity: 4096,
            reader_nice: -10,
            drain_interval_us: 500,
            timer_above_rate: 2000,
            kernel_log: KernelLog::Off,
        }
    }
}
