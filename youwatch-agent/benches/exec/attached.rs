//! The sensor attached as the agent runs it: the events go from the reader through the bounded
//! channel to a task on a two-worker tokio runtime (the inventory stage's place), which stamps
//! receipt. Its CPU is read from the scheduler for the threads that do the work.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::threads::{self, ThreadsCpu, wait_for};
use youwatch_agent::sensor::{
    SensorConfig,
    ebpf::{ExecSensor, ProgramStats, boottime_ns},
};

/// The runtime's threads, as the agent's (`run::WORKER_THREAD`) are named apart.
const RUNTIME_THREAD: &str = "yw-bench-rt";
/// A reader thread of its own, in sensors that have one.
const READER_THREAD: &str = "yw-exec-reader";

pub struct Attached {
    sensor: ExecSensor,
    runtime: tokio::runtime::Runtime,
    consumer: tokio::task::JoinHandle<Vec<Received>>,
    count: Arc<AtomicU64>,
    reader: Vec<String>,
    workers: Vec<String>,
}

/// One event as the consumer saw it.
#[derive(Clone, Copy)]
pub struct Received {
    pub ktime_ns: u64,
    pub latency_ns: u64,
}

/// CPU of the agent's side during a run.
#[derive(Clone, Copy, Default)]
pub struct AgentCpu {
    /// A reader thread of its own (zero when the reader is a task on the runtime).
    pub reader: ThreadsCpu,
    /// The runtime's workers: the consumer task, and the reader when it is a task.
    pub runtime: ThreadsCpu,
}

impl AgentCpu {
    pub fn total(&self) -> Duration {
        self.reader.cpu + self.runtime.cpu
    }

    pub fn since(self, earlier: Self) -> Self {
        Self {
            reader: self.reader - earlier.reader,
            runtime: self.runtime - earlier.runtime,
        }
    }
}

impl Attached {
    /// Loads the sensor with the default configuration and watches `cgroup_id`.
    pub fn start(cgroup_id: u64, expected: usize) -> Self {
        let config = SensorConfig::default();
        // As the agent's: two workers at the reader's priority.
        let nice = config.reader_nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(RUNTIME_THREAD)
            .on_thread_start(move || {
                // SAFETY: plain syscall on the calling thread.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
            })
            .enable_all()
            .build()
            .unwrap();
        let mut sensor = ExecSensor::load(&config).expect("loading the sensor");
        sensor.watch_set().watch(cgroup_id).unwrap();
        let mut rx = {
            let _runtime = runtime.enter();
            sensor.events(config.channel_capacity).unwrap()
        };
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        let consumer = runtime.spawn(async move {
            let mut received = Vec::with_capacity(expected + 1024);
            while let Some(ev) = rx.recv().await {
                received.push(Received {
                    ktime_ns: ev.ktime_ns,
                    latency_ns: boottime_ns().saturating_sub(ev.ktime_ns),
                });
                seen.fetch_add(1, Ordering::Relaxed);
            }
            received
        });
        // Threads name themselves once they run: wait for both workers (and a reader thread,
        // in sensors that start one with `events`).
        let workers = wait_for(|| Some(threads::named(RUNTIME_THREAD)).filter(|t| t.len() >= 2))
            .expect("the runtime's workers start");
        std::thread::sleep(Duration::from_millis(20));
        Self {
            sensor,
            runtime,
            consumer,
            count,
            reader: threads::named(READER_THREAD),
            workers,
        }
    }

    /// Events the consumer received so far.
    pub fn received(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Events the kernel could not store so far.
    pub fn lost(&self) -> u64 {
        self.sensor.counters().map_or(0, |c| c.ringbuf_full)
    }

    pub fn program_stats(&self) -> ProgramStats {
        self.sensor.program_stats().unwrap_or_default()
    }

    /// The agent side's CPU so far.
    pub fn cpu(&self) -> AgentCpu {
        AgentCpu {
            reader: threads::cpu(&self.reader),
            runtime: threads::cpu(&self.workers),
        }
    }

    /// Detaches (the reader drains the ring, then closes the channel); every event received.
    pub fn finish(self) -> Vec<Received> {
        self.sensor.detach();
        self.runtime.block_on(self.consumer).expect("consumer task")
    }
}
