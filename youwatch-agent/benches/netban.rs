//! Node ban benchmarks (`cargo xtask bench netban`; needs root). Three parts:
//!
//! 1. **The program's cost per packet**, by `BPF_PROG_TEST_RUN` (the kernel runs the loaded
//!    program `repeat` times on one CPU and reports the mean): the TC classifier and the XDP
//!    program, an IPv4 and an IPv6 TCP packet whose source is banned (dropped) or not
//!    (passed), with 10, 10,000 and 100,000 entries in the deny lists (half IPv4, half IPv6;
//!    one in ten a range). Packets per second per core are 1/mean.
//! 2. **The whole receive path with and without the program**: a client namespace sends UDP
//!    datagrams over a veth pair to a server namespace; a veth delivers on the sender's CPU,
//!    so the sender's time per datagram is the path through the server's stack (to a UDP
//!    socket, or to the drop). No program, TC passing, TC dropping, XDP passing, XDP dropping,
//!    100,000 entries, interleaved round by round; medians and ratios to "no program".
//! 3. **Decision → drop on another node**: two node bans (node-a, node-b, each in its own
//!    namespace, the same client in front of both) follow the test API server's IPBans;
//!    node-a's response decides a WAF ban; while the client sends to node-b every 100 µs, the
//!    bench notes when the IPBan's POST crosses the wire, when node-b's kernel list holds the
//!    address, and when node-b's counter shows the first dropped packet.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use aya::{
    TestRun, TestRunOptions,
    programs::{SchedClassifier, Xdp},
};
use ipnet::IpNet;
use support::{
    bench_args,
    netlab::{Lab, SERVER_IF},
    node_ban::{self, response_on_node_a},
    response::waf_ban,
};
use youwatch_agent::{
    cluster::ClusterContext,
    netban::{
        NodeBanConfig, NodeBanStage, crd,
        kernel::{self, AttachMode, DenyTable, KernelTable, LoadOptions, Programs},
        netns::NetnsWorker,
    },
    response::{DryRun, ResponseConfig, config::DenyBackend},
};

struct Opts {
    /// BPF_PROG_TEST_RUN repetitions per figure.
    repeat: u32,
    /// Datagrams per timed veth run.
    datagrams: u32,
    /// Interleaved veth rounds.
    rounds: u32,
    /// Bans timed end to end.
    bans: u32,
    benching: bool,
}

#[derive(clap::Parser, Default)]
struct Cli {
    /// BPF_PROG_TEST_RUN runs per case (default 1000000; 1000 in the smoke run).
    #[arg(long)]
    repeat: Option<u32>,
    /// Datagrams per timed veth run (default 200000; 1000 in the smoke run).
    #[arg(long)]
    datagrams: Option<u32>,
    /// Interleaved veth rounds (default 7; 1 in the smoke run).
    #[arg(long)]
    rounds: Option<u32>,
    /// Bans timed end to end (default 30; 2 in the smoke run).
    #[arg(long)]
    bans: Option<u32>,
    /// Set by `cargo bench`.
    #[arg(long)]
    bench: bool,
}

fn opts() -> Opts {
    let (cli, benching) = bench_args::parse::<Cli>();
    Opts {
        repeat: bench_args::or(cli.repeat, benching, 1_000_000, 1_000),
        datagrams: bench_args::or(cli.datagrams, benching, 200_000, 1_000),
        rounds: bench_args::or(cli.rounds, benching, 7, 1),
        bans: bench_args::or(cli.bans, benching, 30, 2),
        benching,
    }
}

const SIZES: [usize; 3] = [10, 10_000, 100_000];
const CAPACITY: u32 = 131_072;

fn main() {
    let opts = opts();
    // SAFETY: geteuid cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the node ban bench loads TC/XDP programs and creates network namespaces: run it as root"
    );
    program_cost(&opts);
    receive_path(&opts);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(decision_to_drop(&opts));
}

// ---- 1. the program alone -------------------------------------------------------------------

/// An Ethernet frame carrying a TCP ACK from `source` (60 bytes of payload).
fn frame(source: IpAddr) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    let tcp = {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&443u16.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x10; // ACK
        t.extend_from_slice(&[0u8; 60]);
        t
    };
    match source {
        IpAddr::V4(s) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&[10, 0, 0, 1]);
            f.extend_from_slice(&ip);
        }
        IpAddr::V6(s) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[6, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
            f.extend_from_slice(&ip);
        }
    }
    f.extend_from_slice(&tcp);
    f
}

/// `n` entries: one in ten a range (/24, /64), the rest single addresses, spread out.
fn fill(table: &mut KernelTable, n: usize) {
    let until = SystemTime::now() + Duration::from_secs(3600);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let net: IpNet = match (i % 2 == 0, i % 10 == 0) {
            (true, false) => IpNet::new(IpAddr::from((x as u32 | 0x0100_0000).to_be_bytes()), 32),
            (true, true) => IpNet::new(IpAddr::from((x as u32 | 0x0100_0000).to_be_bytes()), 24),
            (false, ranged) => {
                let mut a = [0u8; 16];
                a[..8].copy_from_slice(&x.to_be_bytes());
                a[0] = 0x2a;
                IpNet::new(IpAddr::from(a), if ranged { 64 } else { 128 })
            }
        }
        .unwrap()
        .trunc();
        table.upsert(net, until).expect("room in the bench's lists");
    }
}

fn program_cost(opts: &Opts) {
    println!(
        "\n1. program cost per packet (BPF_PROG_TEST_RUN, {} runs each, one CPU)",
        opts.repeat
    );
    println!(
        "{:<5} {:<5} {:>8} {:<7} {:>9} {:>12}",
        "hook", "ip", "entries", "verdict", "ns/pkt", "Mpps/core"
    );
    let banned_v4: IpAddr = "198.18.0.1".parse().unwrap();
    let banned_v6: IpAddr = "2001:db8:bad::1".parse().unwrap();
    let clean_v4: IpAddr = "198.19.0.1".parse().unwrap();
    let clean_v6: IpAddr = "2001:db8:900d::1".parse().unwrap();
    for xdp in [false, true] {
        let (mut programs, maps) = kernel::load(&LoadOptions {
            max_entries: CAPACITY,
            pin_dir: None,
            xdp,
        })
        .expect("loading the node ban");
        let mut table = maps.table;
        let until = SystemTime::now() + Duration::from_secs(3600);
        table.upsert(IpNet::from(banned_v4), until).unwrap();
        table.upsert(IpNet::from(banned_v6), until).unwrap();
        let mut filled = 2;
        for size in SIZES {
            fill(&mut table, size - filled);
            filled = size;
            for (ip, source, verdict) in [
                ("IPv4", clean_v4, "pass"),
                ("IPv4", banned_v4, "drop"),
                ("IPv6", clean_v6, "pass"),
                ("IPv6", banned_v6, "drop"),
            ] {
                let ns = run_program(&mut programs, xdp, &frame(source), opts.repeat);
                println!(
                    "{:<5} {:<5} {:>8} {:<7} {:>9.1} {:>12.1}",
                    if xdp { "xdp" } else { "tc" },
                    ip,
                    size,
                    verdict,
                    ns,
                    1000.0 / ns
                );
            }
        }
    }
}

/// Mean ns per run of the loaded program on `frame`.
fn run_program(programs: &mut Programs, xdp: bool, frame: &[u8], repeat: u32) -> f64 {
    let program = programs.test_runner().expect("the loaded program");
    let options = TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::default()
    };
    let result = if xdp {
        let p: &mut Xdp = program.try_into().unwrap();
        p.test_run(options)
    } else {
        let p: &mut SchedClassifier = program.try_into().unwrap();
        p.test_run(options)
    }
    .expect("BPF_PROG_TEST_RUN");
    result.duration.as_nanos() as f64
}

// ---- 2. the receive path --------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    None,
    Tc { drop: bool },
    Xdp { drop: bool },
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::None => "no program",
            Path::Tc { drop: false } => "tc, passed",
            Path::Tc { drop: true } => "tc, dropped",
            Path::Xdp { drop: false } => "xdp, passed",
            Path::Xdp { drop: true } => "xdp, dropped",
        }
    }
}

/// The program attached to the lab's node interface, 100,000 entries.
struct Attached {
    _worker: NetnsWorker<Programs>,
    table: KernelTable,
}

fn attach(lab: &Lab, xdp: bool) -> Attached {
    let (programs, maps) = kernel::load(&LoadOptions {
        max_entries: CAPACITY,
        pin_dir: None,
        xdp,
    })
    .unwrap();
    let mut table = maps.table;
    fill(&mut table, SIZES[2] - 1);
    let worker = NetnsWorker::spawn(Some(&lab.server_netns()), programs).unwrap();
    let mode = if xdp {
        AttachMode::Xdp
    } else {
        AttachMode::Tcx
    };
    worker
        .run(move |p| p.attach(SERVER_IF, mode))
        .unwrap()
        .unwrap();
    Attached {
        _worker: worker,
        table,
    }
}

/// Sender's ns per datagram from `from` to the lab's server.
fn send(lab: &Lab, from: IpAddr, count: u32) -> f64 {
    let to = SocketAddr::new(lab.server_v4, 9);
    Lab::within(&lab.client_ns, move || {
        let socket = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
        let payload = [0u8; 18];
        let start = Instant::now();
        for _ in 0..count {
            let _ = socket.send_to(&payload, to);
        }
        start.elapsed().as_nanos() as f64 / f64::from(count)
    })
}

fn receive_path(opts: &Opts) {
    let lab = Lab::new("bench", 90);
    // A UDP socket that never reads: datagrams that pass end at its full queue.
    let server_ns = lab.server_ns.clone();
    let server = lab.server_v4;
    let sink = Lab::within(&server_ns, move || {
        UdpSocket::bind(SocketAddr::new(server, 9)).unwrap()
    });
    let paths = [
        Path::None,
        Path::Tc { drop: false },
        Path::Tc { drop: true },
        Path::Xdp { drop: false },
        Path::Xdp { drop: true },
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let (banned, clean) = (lab.client_a, lab.client_b);
    for round in 0..opts.rounds {
        let mut order: Vec<usize> = (0..paths.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let path = paths[i];
            let attached = match path {
                Path::None => None,
                Path::Tc { .. } => Some(attach(&lab, false)),
                Path::Xdp { .. } => Some(attach(&lab, true)),
            };
            let drop = matches!(path, Path::Tc { drop: true } | Path::Xdp { drop: true });
            let mut attached = attached;
            if let Some(a) = &mut attached {
                a.table
                    .upsert(
                        IpNet::from(banned),
                        SystemTime::now() + Duration::from_secs(600),
                    )
                    .unwrap();
            }
            let from = if drop { banned } else { clean };
            // Warm-up, then the timed run.
            send(&lab, from, opts.datagrams / 10 + 1);
            times[i].push(send(&lab, from, opts.datagrams));
            if drop && let Some(a) = &attached {
                assert!(
                    a.table.drops(&IpNet::from(banned)) > 0,
                    "{path:?} dropped nothing"
                );
            }
        }
    }
    drop(sink);
    println!(
        "\n2. receive path per datagram, sender's time over a veth ({} datagrams × {} rounds, 100,000 entries: half IPv4, half IPv6, one in ten a range)",
        opts.datagrams, opts.rounds
    );
    let base = median(&times[0]);
    for (path, t) in paths.iter().zip(&times) {
        let m = median(t);
        println!(
            "{:<14} {:>8.0} ns   ×{:.2} of no program",
            path.name(),
            m,
            m / base
        );
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

// ---- 3. decision → drop on another node -----------------------------------------------------

async fn decision_to_drop(opts: &Opts) {
    let server = node_ban::server().await;
    let lab_a = Lab::with_subnet("bench-l", 91, 92);
    let lab_b = Lab::with_subnet("bench-l", 92, 92);
    let attacker = lab_b.client_a;
    let node = |lab: &Lab, name: &str| {
        let config = NodeBanConfig {
            enabled: true,
            interfaces: vec![SERVER_IF.into()],
            netns: lab.server_netns(),
            pin_dir: "".into(),
            ..NodeBanConfig::default()
        };
        let cluster = Arc::new(ClusterContext::new(server.client(), name.into()));
        NodeBanStage::new(
            &config,
            &[],
            &ResponseConfig::default().retry,
            Some(cluster),
            DryRun::Off,
        )
        .unwrap()
        .unwrap()
    };
    let a = node(&lab_a, "node-a").spawn();
    let b = node(&lab_b, "node-b");
    let table_b = b.table();
    let b = b.spawn();
    server.wait_for_watches(2, Duration::from_secs(10)).await;
    let state = tempfile::tempdir().unwrap();
    let response = response_on_node_a(&server, &[DenyBackend::NodeTc], DryRun::Off, state.path());
    // The client keeps sending to node-b, one datagram every 100 µs (timer slack 1 ns; the
    // interval achieved is printed: it bounds the last figure's resolution).
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let sending = sending.clone();
        let (ns, to) = (lab_b.client_ns.clone(), SocketAddr::new(lab_b.server_v4, 9));
        std::thread::spawn(move || {
            Lab::within(&ns, move || {
                // SAFETY: a thread attribute of this thread only.
                unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
                let socket = UdpSocket::bind(SocketAddr::new(attacker, 0)).unwrap();
                let (start, mut sent) = (Instant::now(), 0u32);
                while sending.load(Ordering::Relaxed) {
                    let _ = socket.send_to(b"x", to);
                    sent += 1;
                    std::thread::sleep(Duration::from_micros(100));
                }
                start.elapsed() / sent.max(1)
            })
        })
    };
    let net = IpNet::from(attacker);
    let ledger = node_ban::ledger(&server);
    let (mut to_post, mut to_map, mut to_drop, mut watch) = (vec![], vec![], vec![], vec![]);
    for i in 0..opts.bans {
        let before = table_b.lock().unwrap().drops(&net);
        let requests = server.requests().len();
        let decided = Instant::now();
        // A new host each time: one ban per (address, host) is in force in the response.
        response
            .publish(waf_ban(
                &attacker.to_string(),
                Some(&format!("h{i}.example")),
                Duration::from_secs(600),
                1,
            ))
            .await;
        let (mut held, mut dropped) = (None, None);
        while dropped.is_none() {
            assert!(
                decided.elapsed() < Duration::from_secs(10),
                "no drop on node-b within 10 s"
            );
            {
                let table = table_b.lock().unwrap();
                if held.is_none() && table.entries().contains_key(&net) {
                    held = Some(decided.elapsed());
                }
                if table.drops(&net) > before {
                    dropped = Some(decided.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        let post = server
            .timed_requests()
            .into_iter()
            .skip(requests)
            .find(|(_, r)| r.starts_with("POST /apis/youwatch.dev"))
            .map(|(t, _)| t.duration_since(decided))
            .expect("the IPBan's POST");
        let held = held.unwrap_or(dropped.unwrap());
        to_post.push(post);
        to_map.push(held);
        to_drop.push(dropped.unwrap());
        watch.push(held.saturating_sub(post));
        // Unban, and wait until node-b lets the client in again.
        let api: kube::Api<crd::IpBan> = kube::Api::all(server.client());
        let ban = api.get(&crd::name_for(&net)).await.unwrap();
        ledger
            .delete(&ban, SystemTime::now() + Duration::from_secs(10))
            .await
            .unwrap();
        while table_b.lock().unwrap().entries().contains_key(&net) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    sending.store(false, Ordering::Relaxed);
    let interval = sender.join().unwrap();
    println!(
        "\n3. decision → drop on another node ({} bans; node-b's list polled every 100 µs, the client sent every {interval:.0?} on average)",
        opts.bans
    );
    for (what, v) in [
        ("decision → IPBan POST on the wire", &mut to_post),
        (
            "IPBan POST → node-b's kernel list (watch round-trip)",
            &mut watch,
        ),
        ("decision → node-b's kernel list", &mut to_map),
        ("decision → first packet dropped on node-b", &mut to_drop),
    ] {
        v.sort();
        let pct = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
        println!(
            "{what:<54} p50 {:>8.2?}  p90 {:>8.2?}  max {:>8.2?}",
            pct(50),
            pct(90),
            v[v.len() - 1]
        );
    }
    response.stop().await;
    a.stop();
    b.stop();
    a.join().await.unwrap();
    b.join().await.unwrap();
    if !opts.benching {
        println!("(smoke run: pass --bench, or run `cargo xtask bench netban`, for figures)");
    }
}
