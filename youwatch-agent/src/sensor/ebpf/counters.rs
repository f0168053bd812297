//! The kernel's per-CPU loss and truncation counters, summed for callers and for Prometheus.

use std::sync::Arc;

use aya::maps::{Map, MapData, PerCpuArray};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, histogram::Histogram},
};
use youwatch_common::counter;

use super::{ProgramStats, SensorError, WatchSet, map_error};

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
    pub env_truncated: u64,
    pub cwd_truncated: u64,
}

/// Shared handle on a per-CPU counter map (`COUNTERS`, `ENFORCE_COUNTERS`).
#[derive(Clone)]
pub(super) struct CounterMap {
    array: Arc<PerCpuArray<MapData, u64>>,
    name: &'static str,
}

impl CounterMap {
    pub(super) fn new(map: Map, name: &'static str) -> Result<Self, SensorError> {
        let array = PerCpuArray::try_from(map).map_err(|e| map_error(name, e))?;
        Ok(Self {
            array: Arc::new(array),
            name,
        })
    }

    /// Counter `index`, summed over CPUs.
    pub(super) fn sum(&self, index: u32) -> Result<u64, SensorError> {
        let values = self
            .array
            .get(&index, 0)
            .map_err(|e| map_error(self.name, e))?;
        Ok(values.iter().sum())
    }

    pub(super) fn read(&self) -> Result<SensorCounters, SensorError> {
        let sum = |index: u32| self.sum(index);
        Ok(SensorCounters {
            matched: sum(counter::MATCHED)?,
            ringbuf_full: sum(counter::RINGBUF_FULL)?,
            args_truncated: sum(counter::ARGS_TRUNCATED)?,
            filename_truncated: sum(counter::FILENAME_TRUNCATED)?,
            read_failed: sum(counter::READ_FAILED)?,
            env_truncated: sum(counter::ENV_TRUNCATED)?,
            cwd_truncated: sum(counter::CWD_TRUNCATED)?,
        })
    }
}

/// Prometheus collector: reads the kernel counters at each scrape.
#[derive(Clone)]
pub struct SensorMetrics {
    pub(super) counters: CounterMap,
    pub(super) watched: WatchSet,
    pub(super) latency: Histogram,
    /// The exec program's kernel id, to read its run-time statistics at scrape.
    pub(super) program_id: Option<u32>,
}

/// Kernel timestamp → reader receipt, in seconds: 10 µs to ~10 ms in ×2 steps.
pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        10e-6, 2.0, 11,
    ))
}

impl std::fmt::Debug for SensorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SensorMetrics")
    }
}

impl SensorMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self.clone()));
        registry.register(
            "youwatch_exec_delivery_latency_seconds",
            "Kernel timestamp of an exec to its receipt by the agent's ring-buffer reader.",
            self.latency.clone(),
        );
    }
}

impl SensorMetrics {
    /// The exec program's statistics, found by id among the loaded programs (aya has no
    /// lookup by id; a node holds few programs and this runs once per scrape).
    fn program_stats(&self) -> Option<ProgramStats> {
        let id = self.program_id?;
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|info| info.id() == id)
            .as_ref()
            .map(ProgramStats::from)
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
            (
                "youwatch_exec_env_truncated",
                "Exec events whose environment was cut to 2048 bytes.",
                c.env_truncated,
            ),
            (
                "youwatch_exec_cwd_truncated",
                "Exec events whose working directory did not fit 256 bytes or 32 levels (left empty).",
                c.cwd_truncated,
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        if let Some(stats) = self.program_stats() {
            let runs = ConstCounter::new(stats.runs);
            runs.encode(encoder.encode_descriptor(
                "youwatch_exec_program_runs",
                "Runs of the exec program (every exec on the node); counted only while \
                 kernel.bpf_stats_enabled=1.",
                None,
                runs.metric_type(),
            )?)?;
            let time = ConstCounter::new(stats.run_time.as_secs_f64());
            time.encode(encoder.encode_descriptor(
                "youwatch_exec_program_run_seconds",
                "Time spent in the exec program; counted only while kernel.bpf_stats_enabled=1.",
                None,
                time.metric_type(),
            )?)?;
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
