//! The sensor attached as the agent runs it: the reader is a task on a two-worker tokio runtime
//! at the agent's priority, and a second task (the inventory stage's place) takes the events
//! from the bounded channel and stamps receipt. Its CPU is read from the scheduler for the
//! runtime's threads, known by the ids they report as they start (not looked up by name).

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::threads::{self, ThreadsCpu};
use youwatch_agent::{
    enforce::ForbiddenName,
    sensor::{
        SensorConfig,
        ebpf::{ExecSensor, KernelMode, ProgramStats, boottime_ns},
    },
};

/// As the agent's runtime (`run::main`).
const WORKERS: usize = 2;

/// The sensor, `watched_id` watched; with `forbidden`, also enforced against those names.
pub fn sensor(watched_id: u64, forbidden: Option<&[&str]>) -> ExecSensor {
    let mut sensor = ExecSensor::load(&SensorConfig::default()).expect("loading the sensor");
    if let Some(names) = forbidden {
        let keys: Vec<_> = names
            .iter()
            .map(|n| ForbiddenName::new(n).unwrap().key())
            .collect();
        sensor
            .arm_enforcement(&keys, KernelMode::Enforce)
            .expect("arming enforcement");
        sensor.watch_set().set_enforced(watched_id, true).unwrap();
    }
    sensor.watch_set().watch(watched_id).unwrap();
    sensor
}

/// A runtime as the agent's, and the ids of its threads once every worker has started.
pub fn runtime() -> (tokio::runtime::Runtime, Vec<String>) {
    let nice = SensorConfig::default().reader_nice;
    let started = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let record = started.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .on_thread_start(move || {
            youwatch_agent::sensor::ebpf::set_thread_nice(nice);
            // SAFETY: gettid cannot fail.
            let tid = unsafe { libc::gettid() };
            let (tids, cv) = &*record;
            tids.lock().unwrap().push(tid.to_string());
            cv.notify_all();
        })
        .enable_all()
        .build()
        .unwrap();
    let (tids, cv) = &*started;
    let (tids, timeout) = cv
        .wait_timeout_while(tids.lock().unwrap(), Duration::from_secs(10), |t| {
            t.len() < WORKERS
        })
        .unwrap();
    assert!(!timeout.timed_out(), "the runtime's workers start");
    let tids = tids.clone();
    (runtime, tids)
}

pub struct Attached {
    sensor: ExecSensor,
    runtime: tokio::runtime::Runtime,
    consumer: tokio::task::JoinHandle<Vec<Received>>,
    count: Arc<AtomicU64>,
    workers: Vec<String>,
}

/// One event as the consumer saw it.
#[derive(Clone, Copy)]
pub struct Received {
    pub ktime_ns: u64,
    pub latency_ns: u64,
}

impl Attached {
    /// Starts `sensor`'s reader and a consumer for `expected` events on an agent-like runtime.
    pub fn start(mut sensor: ExecSensor, expected: usize) -> Self {
        let (runtime, workers) = runtime();
        let mut rx = {
            let _runtime = runtime.enter();
            sensor
                .events(SensorConfig::default().channel_capacity)
                .unwrap()
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
        Self {
            sensor,
            runtime,
            consumer,
            count,
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

    /// CPU of the runtime's workers so far: the reader task and the consumer.
    pub fn cpu(&self) -> ThreadsCpu {
        threads::cpu(&self.workers)
    }

    /// Detaches (the reader drains the ring, then closes the channel); every event received.
    pub fn finish(self) -> Vec<Received> {
        self.sensor.detach();
        self.runtime.block_on(self.consumer).expect("consumer task")
    }
}
