//! The kernel's per-CPU loss and truncation counters, summed for callers and for Prometheus.

use std::sync::Arc;

use aya::maps::{Map, MapData, PerCpuArray};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use youwatch_common::{counter, names};

use super::{SensorError, WatchSet, map_error};

/// Counters the kernel keeps per CPU, summed. For the events that reached user space,
/// `matched == delivered + ringbuf_full`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SensorCounters {
    /// Execs in watched cgroups (delivered or not).
    pub matched: u64,
    /// Matched execs lost because the ring buffer was full.
    pub ringbuf_full: u64,
    pub args_truncated: u64,
    pub filename_truncated: u64,
    pub read_failed: u64,
}

/// Shared handle on the `COUNTERS` map.
#[derive(Clone)]
pub(super) struct CounterMap(Arc<PerCpuArray<MapData, u64>>);

impl CounterMap {
    pub(super) fn new(map: Map) -> Result<Self, SensorError> {
        let array = PerCpuArray::try_from(map).map_err(|e| map_error(names::COUNTERS_MAP, e))?;
        Ok(Self(Arc::new(array)))
    }

    pub(super) fn read(&self) -> Result<SensorCounters, SensorError> {
        let sum = |index: u32| -> Result<u64, SensorError> {
            let values = self
                .0
                .get(&index, 0)
                .map_err(|e| map_error(names::COUNTERS_MAP, e))?;
            Ok(values.iter().sum())
        };
        Ok(SensorCounters {
            matched: sum(counter::MATCHED)?,
            ringbuf_full: sum(counter::RINGBUF_FULL)?,
            args_truncated: sum(counter::ARGS_TRUNCATED)?,
            filename_truncated: sum(counter::FILENAME_TRUNCATED)?,
            read_failed: sum(counter::READ_FAILED)?,
        })
    }
}

/// Prometheus collector: reads the kernel counters at each scrape.
#[derive(Clone)]
pub struct SensorMetrics {
    pub(super) counters: CounterMap,
    pub(super) watched: WatchSet,
}

impl std::fmt::Debug for SensorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SensorMetrics")
    }
}

impl SensorMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

impl Collector for SensorMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // A failed map read is reported as missing metrics, not as a scrape error.
        let Ok(c) = self.counters.read() else {
            return Ok(());
        };
        let counters = [
            (
                "youwatch_exec_events_matched",
                "Execs seen in watched cgroups (delivered or lost).",
                c.matched,
            ),
            (
                "youwatch_exec_events_lost",
                "Exec events lost because the kernel ring buffer was full.",
                c.ringbuf_full,
            ),
            (
                "youwatch_exec_args_truncated",
                "Exec events whose arguments were cut to 512 bytes.",
                c.args_truncated,
            ),
            (
                "youwatch_exec_filename_truncated",
                "Exec events whose path was cut to 255 bytes.",
                c.filename_truncated,
            ),
            (
                "youwatch_exec_read_failures",
                "Exec events with a field the kernel could not read.",
                c.read_failed,
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let watched = ConstGauge::new(self.watched.ids().len() as i64);
        watched.encode(encoder.encode_descriptor(
            "youwatch_watched_cgroups",
            "cgroups (and their subtrees) the exec sensor watches.",
            None,
            watched.metric_type(),
        )?)
    }
}
