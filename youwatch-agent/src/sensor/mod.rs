//! The sensor: our own kernel exec sensor (`ebpf`), where exec events enter the agent.
//! (Alerts from an existing Falco enter through [`crate::inputs::falco`].)

pub mod ebpf;

use serde::Deserialize;

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
    /// Nice value of the ring-buffer reader thread (-20..19, lower is more urgent). Raised by
    /// default so exec events keep flowing within a millisecond on a saturated node; needs
    /// CAP_SYS_NICE, else the reader stays at the default priority (logged once).
    pub reader_nice: i32,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: youwatch_common::limits::DEFAULT_RING_BYTES,
            channel_capacity: 4096,
            reader_nice: -10,
        }
    }
}
