//! Exec sensor overhead and delivery latency (`cargo xtask bench exec`; needs root).
//!
//! Times a loop of N × `/bin/true` in four conditions, interleaved round by round so machine
//! noise hits all of them alike: sensor detached / attached × loop outside / inside the watched
//! cgroup. Prints medians and two attached/detached ratios: of the medians, and the median of
//! per-round ratios (each attached run against the detached run next to it in time, which
//! cancels slow drifts in machine load). Then the kernel-timestamp → user-space-receipt
//! latency of every event seen during the "inside" runs.
//!
//! Enforcement: the program's own cost per exec inside a cgroup that is also enforced (each
//! allowed `/bin/true` has its names checked), and how a forbidden exec ends: a program
//! whose first instruction writes a marker, run in the enforced cgroup (killed: time from the
//! tracepoint to its parent reaping it, and whether it wrote anything) and outside (it runs).
//!
//! Then steady rates (`steady.rs`): the agent's CPU per watched exec, delivery latency and
//! losses at 100, 1,000 and 10,000 execs/s.

#[path = "../../tests/support/mod.rs"]
mod support;

mod attached;
mod floor;
mod steady;
mod threads;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use attached::Attached;
use support::{bench_args, marker_elf};
use threads::ThreadsCpu;
use youwatch_agent::{
    cgroupfs,
    sensor::ebpf::{ProgramStats, boottime_ns},
};

/// Names the bench forbids: shells other than the loop's own `/bin/sh` (dash), so the loop
/// runs in an enforced cgroup and each `/bin/true` has all its names checked.
const BENCH_FORBIDDEN: [&str; 3] = ["zsh", "ksh", "tcsh"];

struct Opts {
    execs: u32,
    rounds: u32,
    steady: steady::Opts,
    /// Only the steady rates (no attached/detached overhead rounds).
    steady_only: bool,
}

#[derive(clap::Parser, Default)]
struct Cli {
    /// `/bin/true` execs per run (default 5000; 50 in the smoke run).
    #[arg(long)]
    execs: Option<u32>,
    /// Interleaved rounds (default 11; 1 in the smoke run).
    #[arg(long)]
    rounds: Option<u32>,
    /// Steady exec rates per second (default 100,1000,10000; 200 in the smoke run).
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Seconds per steady rate (default 5; 0.5 in the smoke run).
    #[arg(long)]
    seconds: Option<f64>,
    /// Exec servers for the steady rates (default 4; 2 in the smoke run).
    #[arg(long)]
    servers: Option<usize>,
    /// Only the steady rates.
    #[arg(long)]
    steady_only: bool,
    /// Set by `cargo bench`.
    #[arg(long)]
    bench: bool,
}

fn opts() -> Opts {
    let (cli, benching) = bench_args::parse::<Cli>();
    let or = |given, full, smoke| bench_args::or(given, benching, full, smoke);
    Opts {
        execs: or(cli.execs, 5000, 50),
        rounds: or(cli.rounds, 11, 1),
        steady: steady::Opts {
            rates: bench_args::or(cli.rates, benching, vec![100, 1000, 10_000], vec![200]),
            seconds: bench_args::or(cli.seconds, benching, 5.0, 0.5),
            servers: bench_args::or(cli.servers, benching, 4, 2),
        },
        steady_only: cli.steady_only,
    }
}

/// A cgroup created for the bench and removed at the end.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(parent: &Path, name: &str) -> Self {
        let path = parent.join(name);
        std::fs::create_dir_all(&path).expect("creating a bench cgroup (run as root)");
        Self(path)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Wall time and CPU time (user + system of the loop and its children) of one run.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// `program`, joining `cgroup` between fork and exec.
fn command_in(cgroup: &Path, program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut cmd = Command::new(program);
    // SAFETY: open/write/close only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

/// Runs the exec loop inside `cgroup`.
fn exec_loop(cgroup: &Path, execs: u32) -> Sample {
    let script = format!("i=0; while [ $i -lt {execs} ]; do /bin/true; i=$((i+1)); done");
    let mut cmd = command_in(cgroup, "/bin/sh");
    cmd.args(["-c", &script]);
    let start = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped below with wait4, for its rusage"
    )]
    let child = cmd.spawn().expect("running the exec loop");
    // wait4 rather than Child::wait: it also returns the CPU time of the loop and of every
    // /bin/true it waited for, which is where the sensor's cost is charged.
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "exec loop failed"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Sample {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    }
}

/// What one run with the sensor attached measured.
struct AttachedRun {
    sample: Sample,
    latencies_ns: Vec<u64>,
    lost: u64,
    program: ProgramStats,
    /// CPU time of the runtime's workers (the reader task and the consumer) during the run.
    cpu: ThreadsCpu,
}

/// Loads the sensor, watches (and, with `enforced`, enforces) `watched_id`, runs the exec loop
/// in `cgroup`, detaches.
fn attached_run(cgroup: &Path, watched_id: u64, enforced: bool, execs: u32) -> AttachedRun {
    let forbidden = enforced.then_some(&BENCH_FORBIDDEN[..]);
    let attached = Attached::start(attached::sensor(watched_id, forbidden), execs as usize);
    let before = attached.cpu();
    let sample = exec_loop(cgroup, execs);
    let cpu = attached.cpu() - before;
    let lost = attached.lost();
    let program = attached.program_stats();
    let received = attached.finish();
    AttachedRun {
        sample,
        latencies_ns: received.iter().map(|r| r.latency_ns).collect(),
        lost,
        program,
        cpu,
    }
}

fn median(samples: &[Sample], pick: fn(&Sample) -> Duration) -> Duration {
    let mut v: Vec<Duration> = samples.iter().map(pick).collect();
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Where {
    Outside,
    Inside,
}

fn main() {
    let opts = opts();
    // SAFETY: geteuid cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the exec bench loads eBPF programs: run it as root"
    );
    if !opts.steady_only {
        overhead(&opts);
    }
    steady::run(&opts.steady);
}

/// Attached vs detached, inside vs outside the watched cgroup; the program's own cost.
fn overhead(opts: &Opts) {
    let mount = cgroupfs::unified_mount().expect("cgroup v2 mounted");
    let top = Cgroup::new(&mount, &format!("youwatch-bench-{}", std::process::id()));
    let watched = Cgroup::new(&top.0, "watched");
    let outside = Cgroup::new(&top.0, "outside");
    let watched_id = cgroupfs::cgroup_id(&watched.0).unwrap();

    let mut times: [[Vec<Sample>; 2]; 2] = Default::default(); // [attached][where]
    let mut latencies_ns: Vec<u64> = Vec::new();
    let mut delivered = 0u64;
    let mut lost = 0u64;

    println!(
        "exec bench: {} × /bin/true per run, {} interleaved rounds",
        opts.execs, opts.rounds
    );
    for round in 0..opts.rounds {
        // Alternate the order each round so neither condition always runs first.
        let mut order = vec![
            (false, Where::Outside),
            (true, Where::Outside),
            (false, Where::Inside),
            (true, Where::Inside),
        ];
        if round % 2 == 1 {
            order.reverse();
        }
        for (attached, place) in order {
            let cgroup = if place == Where::Inside {
                &watched.0
            } else {
                &outside.0
            };
            let elapsed = if attached {
                let run = attached_run(cgroup, watched_id, false, opts.execs);
                if place == Where::Inside {
                    lost += run.lost;
                    delivered += run.latencies_ns.len() as u64;
                    latencies_ns.extend(run.latencies_ns);
                }
                run.sample
            } else {
                exec_loop(cgroup, opts.execs)
            };
            times[attached as usize][(place == Where::Inside) as usize].push(elapsed);
        }
        eprint!(".");
    }
    eprintln!();

    let per_exec = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(opts.execs);
    println!(
        "medians per exec; ratio = attached / detached (of medians | median of per-round ratios)"
    );
    for (label, idx) in [
        ("outside the watched cgroup", 0),
        ("inside the watched cgroup", 1),
    ] {
        for (what, pick) in [
            ("wall", (|s: &Sample| s.wall) as fn(&Sample) -> Duration),
            ("cpu ", |s: &Sample| s.cpu),
        ] {
            let off = median(&times[0][idx], pick);
            let on = median(&times[1][idx], pick);
            let mut paired: Vec<f64> = times[0][idx]
                .iter()
                .zip(&times[1][idx])
                .map(|(d, a)| pick(a).as_secs_f64() / pick(d).as_secs_f64())
                .collect();
            paired.sort_by(f64::total_cmp);
            println!(
                "{label:<27} {what}  detached {:>7.1} µs   attached {:>7.1} µs   ratio {:.3}× | {:.3}×",
                per_exec(off),
                per_exec(on),
                on.as_secs_f64() / off.as_secs_f64(),
                paired[paired.len() / 2]
            );
        }
    }
    program_cost(&watched.0, &outside.0, watched_id, opts.execs, &times);
    forbidden_exec(
        &watched.0,
        &outside.0,
        watched_id,
        (opts.execs / 10).max(20),
    );
    latencies_ns.sort_unstable();
    if latencies_ns.is_empty() {
        println!("latency: no events received");
    } else {
        println!(
            "kernel → user latency over {} events: p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs  (lost {lost}, delivered {delivered})",
            latencies_ns.len(),
            percentile(&latencies_ns, 0.50) as f64 / 1e3,
            percentile(&latencies_ns, 0.99) as f64 / 1e3,
            *latencies_ns.last().unwrap() as f64 / 1e3,
        );
    }
}

/// The program's own cost, from the kernel's BPF run-time statistics, and the CPU time of the
/// user-space threads that deliver the events (scheduler accounting): figures that hold where
/// the wall-clock ratios above drown in the machine's noise. Measured in separate runs because
/// enabling the statistics adds two clock reads to every program run.
fn program_cost(
    inside: &Path,
    outside: &Path,
    watched_id: u64,
    execs: u32,
    times: &[[Vec<Sample>; 2]; 2],
) {
    let _stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => fd,
        Err(e) => {
            println!("program cost: BPF run-time statistics unavailable ({e})");
            return;
        }
    };
    for (label, cgroup, enforced, idx) in [
        ("outside the watched cgroup", outside, false, 0),
        ("inside the watched cgroup", inside, false, 1),
        ("inside, enforced (allowed)", inside, true, 1),
    ] {
        let run = attached_run(cgroup, watched_id, enforced, execs);
        let per_run_ns = run.program.run_time.as_nanos() as f64 / run.program.runs.max(1) as f64;
        let exec_ns = median(&times[0][idx], |s| s.wall).as_nanos() as f64 / f64::from(execs);
        let per_exec = |d: Duration| d.as_nanos() as f64 / f64::from(execs);
        println!(
            "cost per exec {label:<28} program {per_run_ns:>6.0} ns ({:.3}% of a detached exec, {} runs); \
             user space (reader task + consumer) {:>6.0} ns",
            100.0 * per_run_ns / exec_ns,
            run.program.runs,
            per_exec(run.cpu.cpu),
        );
    }
}

/// How a forbidden exec ends: `runs` times a program whose first instruction writes a marker
/// (named like a forbidden shell) in the enforced cgroup, and as many times outside it,
/// interleaved. Prints the time from the tracepoint (where SIGKILL is sent) to the parent
/// reaping it, spawn to reaped in and outside, and how many times the marker was written.
fn forbidden_exec(inside: &Path, outside: &Path, watched_id: u64, runs: u32) {
    if !marker_elf::supported() {
        println!("forbidden exec: the marker program is x86-64 code; skipped on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join(BENCH_FORBIDDEN[0]);
    marker_elf::write(&program);
    let program = program.to_str().unwrap();
    let mut sensor = attached::sensor(watched_id, Some(&BENCH_FORBIDDEN));
    // The reader is a task: it needs a runtime; this thread waits on the channel outside it.
    let (runtime, _) = attached::runtime();
    let mut rx = {
        let _runtime = runtime.enter();
        sensor.events(4096).unwrap()
    };
    let (mut tracepoint_to_reaped, mut killed_total, mut ran_total) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut wrote = 0;
    for _ in 0..runs {
        for (cgroup, enforced) in [(inside, true), (outside, false)] {
            let start = boottime_ns();
            let out = command_in(cgroup, program)
                .stdout(std::process::Stdio::piped())
                .output()
                .expect("running the marker program");
            let reaped = boottime_ns();
            if !enforced {
                assert!(out.status.success() && out.stdout == marker_elf::MARKER.as_bytes());
                ran_total.push(reaped - start);
                continue;
            }
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGKILL), "not killed");
            wrote += usize::from(!out.stdout.is_empty());
            killed_total.push(reaped - start);
            let ev = rx.blocking_recv().expect("the killed exec's event");
            assert!(ev.enforcement.is_some());
            tracepoint_to_reaped.push(reaped.saturating_sub(ev.ktime_ns));
        }
    }
    sensor.detach();
    for v in [&mut tracepoint_to_reaped, &mut killed_total, &mut ran_total] {
        v.sort_unstable();
    }
    let us = |v: &[u64], p: f64| percentile(v, p) as f64 / 1e3;
    println!(
        "forbidden exec, {runs} runs: tracepoint (SIGKILL sent) -> reaped p50 {:.1} µs p99 {:.1} µs; \
         spawn -> reaped: killed p50 {:.1} µs, allowed outside p50 {:.1} µs; marker written {wrote} of {runs} times",
        us(&tracepoint_to_reaped, 0.5),
        us(&tracepoint_to_reaped, 0.99),
        us(&killed_total, 0.5),
        us(&ran_total, 0.5),
    );
}
