//! Steady exec rates: what each watched exec costs the agent in user space, how long it takes
//! to reach the first stage behind the sensor, and what the kernel could not store.
//!
//! Exec servers in a watched cgroup exec at a fixed rate (paced from a thread against absolute
//! deadlines). The sensor's events go, as in the agent, from the reader thread through the
//! bounded channel to a task on a two-worker tokio runtime, which stamps receipt.
//!
//! Counted as the agent's CPU: the reader thread and the runtime's worker threads (scheduler
//! accounting, `/proc/self/task/<tid>/schedstat`: user and kernel time, wake-ups included),
//! divided by the execs delivered. Not counted: the pacer and this bench's main thread. The
//! exec'ing side is reported apart: the servers' own CPU per exec (every exec's kernel work,
//! the exec program and any ring-buffer wake-up it pays for), with the sensor detached and
//! attached.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{
    support::{
        cgroup_tree::CgroupTree,
        exec_load::{self, ExecServers, Paced},
    },
    threads::{self, ThreadsCpu, wait_for},
};
use youwatch_agent::sensor::{
    SensorConfig,
    ebpf::{ExecSensor, boottime_ns},
};

pub struct Opts {
    pub rates: Vec<u32>,
    pub seconds: f64,
    pub servers: usize,
}

/// Nice value of the exec servers and the pacer: high enough that the asked rate is reached
/// on a shared machine; the reader keeps its configured priority.
const LOAD_NICE: i32 = -5;
/// The pacer wakes at most this often (and then asks for every exec due).
const PACER_TICK: Duration = Duration::from_micros(250);

pub fn run(opts: &Opts) {
    let tree = CgroupTree::new("steady");
    tree.mkdir("pod");
    println!(
        "\nsteady rates: {} exec servers ({}) in a watched cgroup, {} s per rate",
        opts.servers,
        exec_load::SERVER,
        opts.seconds
    );
    println!(
        "agent CPU = reader thread + runtime workers (the channel's consumer), per delivered exec; \
         latency = kernel stamp → received by the consumer task"
    );
    println!(
        "{:>7} {:>9} {:>8} {:>5} | {:>14} {:>8} {:>8} | {:>13} {:>13} | {:>9} {:>9} {:>9} | exec'ing CPU/exec detached → attached",
        "rate/s",
        "achieved",
        "events",
        "lost",
        "agent CPU/exec",
        "reader",
        "runtime",
        "reader runs",
        "runtime runs",
        "p50",
        "p99",
        "max",
    );
    for &rate in &opts.rates {
        let detached = detached_run(&tree, rate, opts);
        let run = attached_run(&tree, rate, opts);
        let n = run.latencies_ns.len().max(1) as f64;
        let per_exec = |d: Duration| d.as_secs_f64() * 1e6 / n;
        let mut lat = run.latencies_ns.clone();
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(f64::NAN, |&ns| ns as f64 / 1e3)
        };
        println!(
            "{rate:>7} {:>9.0} {:>8} {:>5} | {:>11.1} µs {:>5.1} µs {:>5.1} µs | {:>8.2}/exec {:>8.2}/exec | {:>6.0} µs {:>6.0} µs {:>6.0} µs | {:.1} µs → {:.1} µs",
            run.achieved,
            run.latencies_ns.len(),
            run.lost,
            per_exec(run.reader.cpu + run.runtime.cpu),
            per_exec(run.reader.cpu),
            per_exec(run.runtime.cpu),
            run.reader.runs as f64 / n,
            run.runtime.runs as f64 / n,
            pct(0.50),
            pct(0.99),
            lat.last().map_or(f64::NAN, |&ns| ns as f64 / 1e3),
            detached.as_secs_f64() * 1e6,
            run.execing_per_exec.as_secs_f64() * 1e6,
        );
    }
}

/// The exec'ing side's CPU per exec with the sensor detached.
fn detached_run(tree: &CgroupTree, rate: u32, opts: &Opts) -> Duration {
    let servers = ExecServers::start(tree, "pod", opts.servers, LOAD_NICE);
    let (servers, paced) = paced(servers, rate, opts);
    servers.finish() / (paced.execs as u32 + opts.servers as u32)
}

fn paced(servers: ExecServers, rate: u32, opts: &Opts) -> (ExecServers, Paced) {
    exec_load::pace(
        servers,
        rate,
        Duration::from_secs_f64(opts.seconds),
        PACER_TICK,
        LOAD_NICE,
    )
    .join()
    .expect("pacer thread")
}

struct AttachedRun {
    /// Execs per second, from the kernel stamps of the first and last paced exec.
    achieved: f64,
    latencies_ns: Vec<u64>,
    lost: u64,
    reader: ThreadsCpu,
    runtime: ThreadsCpu,
    execing_per_exec: Duration,
}

/// What the consumer task saw.
#[derive(Default)]
struct Received {
    /// (kernel stamp, latency) of every event, in arrival order.
    events: Vec<(u64, u64)>,
}

fn attached_run(tree: &CgroupTree, rate: u32, opts: &Opts) -> AttachedRun {
    const RUNTIME_THREAD: &str = "yw-bench-rt";
    let config = SensorConfig::default();
    let mut sensor = ExecSensor::load(&config).expect("loading the sensor");
    sensor.watch_set().watch(tree.id("pod")).unwrap();
    let mut rx = sensor.events(config.channel_capacity).unwrap();
    // As the agent's: two workers; the consumer is a task, as the inventory stage is.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(RUNTIME_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let expected = (f64::from(rate) * opts.seconds).round() as usize + opts.servers;
    let consumer = runtime.spawn(async move {
        let mut received = Received {
            events: Vec::with_capacity(expected + 1024),
        };
        while let Some(ev) = rx.recv().await {
            let latency = boottime_ns().saturating_sub(ev.ktime_ns);
            received.events.push((ev.ktime_ns, latency));
            seen.fetch_add(1, Ordering::Relaxed);
        }
        received
    });
    let reader = threads::reader();
    let workers = threads::named(RUNTIME_THREAD);

    let servers = ExecServers::start(tree, "pod", opts.servers, LOAD_NICE);
    wait_for(|| (count.load(Ordering::Relaxed) >= opts.servers as u64).then_some(()))
        .expect("the exec servers' own execs arrive");
    let warm = count.load(Ordering::Relaxed) as usize;
    let lost_before = sensor.counters().unwrap().ringbuf_full;
    let (reader_before, runtime_before) = (threads::cpu(&reader), threads::cpu(&workers));

    let (servers, paced) = paced(servers, rate, opts);
    // Every paced exec is either received or counted lost.
    let settled = wait_for(|| {
        let lost = sensor.counters().ok()?.ringbuf_full - lost_before;
        (count.load(Ordering::Relaxed) + lost >= (warm as u64) + paced.execs).then_some(())
    });
    let (reader_cpu, runtime_cpu) = (
        threads::cpu(&reader) - reader_before,
        threads::cpu(&workers) - runtime_before,
    );
    let lost = sensor.counters().unwrap().ringbuf_full - lost_before;
    if settled.is_none() {
        eprintln!(
            "rate {rate}: only {} of {} execs arrived within 10 s of the end",
            count.load(Ordering::Relaxed) as usize - warm,
            paced.execs
        );
    }
    let execing = servers.finish() / (paced.execs as u32 + opts.servers as u32);
    sensor.detach();
    let received = runtime.block_on(consumer).expect("consumer task");
    let paced_events = &received.events[warm.min(received.events.len())..];
    let span_ns = match (paced_events.first(), paced_events.last()) {
        (Some(first), Some(last)) => last.0.saturating_sub(first.0),
        _ => 0,
    };
    AttachedRun {
        achieved: (paced_events.len().saturating_sub(1)) as f64 / (span_ns.max(1) as f64 / 1e9),
        latencies_ns: paced_events.iter().map(|&(_, lat)| lat).collect(),
        lost,
        reader: reader_cpu,
        runtime: runtime_cpu,
        execing_per_exec: execing,
    }
}
