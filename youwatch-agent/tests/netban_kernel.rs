//! The node ban's kernel side for real, in network namespaces the tests create (a veth pair:
//! a client namespace connecting to a server namespace where the program is attached): a
//! banned source is dropped and others pass, IPv4 and IPv6, CIDR matching (a /24), the
//! per-entry counters, the kernel's own expiry, TCX, clsact and XDP, detach leaving no
//! program behind, bans surviving a restart through the pinned lists, the source sample.

mod support;

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU8, Ordering},
    time::{Duration, SystemTime},
};

use aya::programs::{SchedClassifier, TcAttachType};
use ipnet::IpNet;
use support::netlab::{Bpffs, Lab, SERVER_IF, runnable};
use youwatch_agent::netban::{
    kernel::{self, AttachMode, Attached, DenyTable, KernelTable, LoadOptions, Programs, Sampler},
    netns::NetnsWorker,
};

const PORT: u16 = 8080;
const HOUR: Duration = Duration::from_secs(3600);
/// A connection to a served port on a veth answers in well under a millisecond; a dropped
/// SYN never answers.
const WAIT: Duration = Duration::from_millis(400);

/// Labs of this binary's tests, numbered apart (tests run in parallel).
static NEXT: AtomicU8 = AtomicU8::new(0);

fn lab(tag: &str) -> Lab {
    let lab = Lab::new(tag, NEXT.fetch_add(1, Ordering::Relaxed));
    lab.serve(PORT);
    lab
}

/// The program loaded and attached to the lab's node interface.
struct Node {
    worker: NetnsWorker<Programs>,
    table: KernelTable,
    sampler: Sampler,
    how: Attached,
}

fn attach(lab: &Lab, mode: AttachMode, pin_dir: Option<std::path::PathBuf>) -> Node {
    let options = LoadOptions {
        max_entries: 1024,
        pin_dir,
        xdp: mode == AttachMode::Xdp,
    };
    let (programs, maps) = kernel::load(&options).expect("loading the node ban");
    let worker = NetnsWorker::spawn(Some(&lab.server_netns()), programs).unwrap();
    let how = worker
        .run(move |p| p.attach(SERVER_IF, mode))
        .unwrap()
        .expect("attaching");
    Node {
        worker,
        table: maps.table,
        sampler: maps.sampler,
        how,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn single(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

impl Node {
    fn ban(&mut self, net: IpNet, for_: Duration) {
        self.table.upsert(net, SystemTime::now() + for_).unwrap();
    }
}

/// Whether each client reaches the server (IPv4 clients to the server address of their
/// subnet, the IPv6 client over IPv6).
fn reachable(lab: &Lab) -> [bool; 4] {
    [
        lab.connects(lab.client_a, lab.server_v4, PORT, WAIT),
        lab.connects(lab.client_b, lab.server_v4, PORT, WAIT),
        lab.connects(lab.client_c, lab.server_v4_other, PORT, WAIT),
        lab.connects(lab.client_v6, lab.server_v6, PORT, WAIT),
    ]
}

#[test]
fn banned_sources_are_dropped_others_pass_v4_v6_and_ranges() {
    if !runnable("banned_sources_are_dropped_others_pass_v4_v6_and_ranges") {
        return;
    }
    let lab = lab("drop");
    assert_eq!(
        reachable(&lab),
        [true; 4],
        "everyone is served before any ban"
    );
    let mut node = attach(&lab, AttachMode::Auto, None);
    assert_eq!(node.how, Attached::Tcx, "this kernel has TCX");
    assert_eq!(
        reachable(&lab),
        [true; 4],
        "attached with an empty list: everyone is served"
    );

    node.ban(single(lab.client_a), HOUR);
    assert_eq!(
        reachable(&lab),
        [false, true, true, true],
        "only a is refused"
    );
    let dropped = node.table.drops(&single(lab.client_a));
    assert!(dropped >= 1, "a's counter counts its SYNs: {dropped}");

    node.ban(single(lab.client_v6), HOUR);
    assert_eq!(reachable(&lab), [false, true, true, false], "IPv6 too");

    let slash24 = IpNet::new(lab.client_a, 24).unwrap().trunc();
    node.ban(slash24, HOUR);
    assert_eq!(
        reachable(&lab),
        [false, false, true, false],
        "the /24 holds a and b, not c"
    );
    assert!(node.table.drops(&slash24) >= 1, "b's SYNs count on the /24");

    node.table.remove(&single(lab.client_a)).unwrap();
    assert_eq!(
        reachable(&lab),
        [false, false, true, false],
        "a is still in the /24"
    );
    node.table.remove(&slash24).unwrap();
    node.table.remove(&single(lab.client_v6)).unwrap();
    assert_eq!(
        reachable(&lab),
        [true; 4],
        "lifted: everyone is served again"
    );
    assert!(node.table.entries().is_empty());
}

#[test]
fn the_kernel_lets_a_source_through_at_its_expiry_without_user_space() {
    if !runnable("the_kernel_lets_a_source_through_at_its_expiry_without_user_space") {
        return;
    }
    let lab = lab("expiry");
    let mut node = attach(&lab, AttachMode::Auto, None);
    node.ban(single(lab.client_c), Duration::from_millis(1500));
    assert!(!lab.connects(lab.client_c, lab.server_v4_other, PORT, WAIT));
    std::thread::sleep(Duration::from_millis(1600));
    assert!(
        lab.connects(lab.client_c, lab.server_v4_other, PORT, WAIT),
        "served again after the expiry, the entry still in the list"
    );
    assert_eq!(node.table.entries().len(), 1);
}

/// Each attach mode drops, and detaching leaves nothing on the interface.
#[test]
fn tcx_clsact_and_xdp_drop_and_detach_cleanly() {
    if !runnable("tcx_clsact_and_xdp_drop_and_detach_cleanly") {
        return;
    }
    let lab = lab("modes");
    for (mode, how) in [
        (AttachMode::Tcx, Attached::Tcx),
        (AttachMode::Clsact, Attached::Clsact),
        (AttachMode::Xdp, Attached::Xdp),
    ] {
        let mut node = attach(&lab, mode, None);
        assert_eq!(node.how, how);
        node.ban(single(lab.client_a), HOUR);
        assert_eq!(
            reachable(&lab),
            [false, true, true, true],
            "{mode:?}: only a is refused"
        );
        assert!(
            node.table.drops(&single(lab.client_a)) >= 1,
            "{mode:?}: counted"
        );
        match how {
            Attached::Tcx => assert_eq!(tcx_programs(&lab), 1),
            Attached::Clsact => assert!(
                lab.tc(&["filter", "show", "dev", SERVER_IF, "ingress"])
                    .contains("netban_tc")
            ),
            Attached::Xdp => assert!(lab.show(&["link", "show", SERVER_IF]).contains("xdp")),
        }
        node.worker.run(|p| p.detach(SERVER_IF)).unwrap().unwrap();
        assert_eq!(
            reachable(&lab),
            [true; 4],
            "{mode:?}: detached, a is served"
        );
        assert_eq!(tcx_programs(&lab), 0, "{mode:?}: no TCX program left");
        let filters = lab.tc(&["filter", "show", "dev", SERVER_IF, "ingress"]);
        assert!(
            !filters.contains("netban"),
            "{mode:?}: no clsact filter left: {filters}"
        );
        let link = lab.show(&["link", "show", SERVER_IF]);
        assert!(
            !link.contains("xdp"),
            "{mode:?}: no XDP program left: {link}"
        );
    }
}

/// Dropping the whole node ban (the agent stopping) detaches too.
#[test]
fn dropping_the_node_ban_detaches() {
    if !runnable("dropping_the_node_ban_detaches") {
        return;
    }
    let lab = lab("drop-all");
    let mut node = attach(&lab, AttachMode::Auto, None);
    node.ban(single(lab.client_a), HOUR);
    assert!(!lab.connects(lab.client_a, lab.server_v4, PORT, WAIT));
    drop(node);
    assert_eq!(tcx_programs(&lab), 0);
    assert!(lab.connects(lab.client_a, lab.server_v4, PORT, WAIT));
}

/// TCX programs on the lab's node interface (ingress).
fn tcx_programs(lab: &Lab) -> usize {
    Lab::within(&lab.server_ns, || {
        SchedClassifier::query_tcx(SERVER_IF, TcAttachType::Ingress)
            .map(|(_, programs)| programs.len())
            .unwrap_or(0)
    })
}

#[test]
fn a_restart_keeps_the_bans_through_the_pinned_lists() {
    if !runnable("a_restart_keeps_the_bans_through_the_pinned_lists") {
        return;
    }
    let lab = lab("restart");
    let bpffs = Bpffs::mount();
    let mut node = attach(&lab, AttachMode::Auto, Some(bpffs.path()));
    let until = SystemTime::now() + HOUR;
    node.table.upsert(single(lab.client_a), until).unwrap();
    node.table.upsert(net("fd31:ff::/64"), until).unwrap();
    assert!(!lab.connects(lab.client_a, lab.server_v4, PORT, WAIT));
    let dropped = node.table.drops(&single(lab.client_a));
    drop(node);
    assert!(
        lab.connects(lab.client_a, lab.server_v4, PORT, WAIT),
        "stopped: nothing attached"
    );

    // The next start finds the lists as they were, before it hears from the ledger.
    let node = attach(&lab, AttachMode::Auto, Some(bpffs.path()));
    let entries = node.table.entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let kept = entries[&single(lab.client_a)];
    let off = kept.duration_since(until).unwrap_or_else(|e| e.duration());
    assert!(
        off <= Duration::from_secs(1),
        "expiry kept: {kept:?} vs {until:?}"
    );
    assert!(
        !lab.connects(lab.client_a, lab.server_v4, PORT, WAIT),
        "banned again at once"
    );
    assert!(
        node.table.drops(&single(lab.client_a)) > dropped,
        "the counter carried on"
    );
    drop(node);

    // Another capacity: the pinned lists are replaced, empty (the ledger refills them).
    let options = LoadOptions {
        max_entries: 2048,
        pin_dir: Some(bpffs.path()),
        xdp: false,
    };
    let (_programs, maps) = kernel::load(&options).unwrap();
    assert!(maps.table.entries().is_empty());
    assert_eq!(maps.table.capacity(), 2048);
}

#[test]
fn connection_opens_are_sampled_by_interface_and_source() {
    if !runnable("connection_opens_are_sampled_by_interface_and_source") {
        return;
    }
    let lab = lab("sample");
    let mut node = attach(&lab, AttachMode::Auto, None);
    node.sampler.set_ports(&[PORT]).unwrap();
    for _ in 0..3 {
        assert!(lab.connects(lab.client_a, lab.server_v4, PORT, WAIT));
    }
    assert!(lab.connects(lab.client_v6, lab.server_v6, PORT, WAIT));
    // Another port is not sampled.
    lab.connects(lab.client_b, lab.server_v4, PORT + 1, WAIT);
    let sample = node.sampler.take();
    assert_eq!(sample.len(), 1, "{sample:?}");
    let sources = sample.values().next().unwrap();
    assert_eq!(sources.get(&lab.client_a), Some(&3), "{sources:?}");
    assert_eq!(sources.get(&lab.client_v6), Some(&1), "{sources:?}");
    assert_eq!(sources.get(&lab.client_b), None, "{sources:?}");
    assert!(node.sampler.take().is_empty(), "the sample starts over");
}
