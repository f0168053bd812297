//! A two-namespace network for the node ban's tests: a "server" namespace (the node: the
//! program attaches to its end of a veth pair) and a "client" namespace with three IPv4
//! addresses — two in one /24, one in another — and one IPv6 address. Everything lives in the
//! namespaces the lab creates (named after the test, removed on drop); the host's own
//! interfaces are never touched.

use std::{
    fs::File,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// The server's end of the veth pair, inside the server namespace.
pub const SERVER_IF: &str = "yw-node";
const CLIENT_IF: &str = "yw-client";

pub struct Lab {
    pub server_ns: String,
    pub client_ns: String,
    /// 10.<a>.<b>.1 and fd<a>:<b>::1: the server's addresses.
    pub server_v4: IpAddr,
    pub server_v4_other: IpAddr,
    pub server_v6: IpAddr,
    /// Two clients in one /24 ...
    pub client_a: IpAddr,
    pub client_b: IpAddr,
    /// ... one in another /24, and one over IPv6.
    pub client_c: IpAddr,
    pub client_v6: IpAddr,
    stop_servers: Arc<AtomicBool>,
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// Creates the namespaces and the veth pair; `index` (0..=250) keeps labs of one test
    /// run apart (addresses and names).
    pub fn new(tag: &str, index: u8) -> Lab {
        Lab::with_subnet(tag, index, index)
    }

    /// [`Lab::new`] with the addresses of `subnet`: labs in their own namespaces may share
    /// them (two nodes seeing the same client).
    pub fn with_subnet(tag: &str, index: u8, subnet: u8) -> Lab {
        let server_ns = format!("yw-{tag}-n{index}");
        let client_ns = format!("yw-{tag}-c{index}");
        let index = subnet;
        for ns in [&server_ns, &client_ns] {
            // Left over by a killed run.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &server_ns, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
            "netns", &client_ns,
        ]);
        let lab = Lab {
            server_v4: format!("10.231.{index}.1").parse().unwrap(),
            server_v4_other: format!("10.232.{index}.1").parse().unwrap(),
            server_v6: format!("fd31:{index}::1").parse().unwrap(),
            client_a: format!("10.231.{index}.2").parse().unwrap(),
            client_b: format!("10.231.{index}.3").parse().unwrap(),
            client_c: format!("10.232.{index}.2").parse().unwrap(),
            client_v6: format!("fd31:{index}::2").parse().unwrap(),
            server_ns,
            client_ns,
            stop_servers: Arc::default(),
        };
        let addrs = [
            (
                &lab.server_ns,
                SERVER_IF,
                vec![
                    format!("{}/24", lab.server_v4),
                    format!("{}/24", lab.server_v4_other),
                ],
                format!("{}/64", lab.server_v6),
            ),
            (
                &lab.client_ns,
                CLIENT_IF,
                vec![
                    format!("{}/24", lab.client_a),
                    format!("{}/24", lab.client_b),
                    format!("{}/24", lab.client_c),
                ],
                format!("{}/64", lab.client_v6),
            ),
        ];
        for (ns, dev, v4, v6) in addrs {
            for a in v4 {
                ip(&["-n", ns, "addr", "add", &a, "dev", dev]);
            }
            ip(&["-n", ns, "addr", "add", &v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    pub fn server_netns(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.server_ns)
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn within<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/run/netns").join(ns);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // SAFETY: setns with a namespace descriptor, for this thread only.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .expect("the thread in the namespace panicked")
    }

    /// A TCP server in the server namespace on `port` (IPv4 and IPv6), answering every
    /// connection with one byte, until the lab is dropped.
    pub fn serve(&self, port: u16) {
        let stop = self.stop_servers.clone();
        let ns = self.server_ns.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let path = PathBuf::from("/run/netns").join(&ns);
            let file = File::open(&path).unwrap();
            // SAFETY: as in `within`.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let socket =
                socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
            socket.set_only_v6(false).unwrap();
            socket.set_reuse_address(true).unwrap();
            socket
                .bind(&SocketAddr::from(([0u16; 8], port)).into())
                .unwrap();
            socket.listen(1024).unwrap();
            let listener: TcpListener = socket.into();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        use std::io::Write;
                        let _ = stream.write_all(b"!");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ready.recv().unwrap();
    }

    /// Whether `from` (a client address) gets a TCP connection to `to:port` within
    /// `timeout`, and its byte.
    pub fn connects(&self, from: IpAddr, to: IpAddr, port: u16, timeout: Duration) -> bool {
        Lab::within(&self.client_ns, move || {
            let domain = if from.is_ipv4() {
                socket2::Domain::IPV4
            } else {
                socket2::Domain::IPV6
            };
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
            socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
            if socket
                .connect_timeout(&SocketAddr::new(to, port).into(), timeout)
                .is_err()
            {
                return false;
            }
            let mut stream: TcpStream = socket.into();
            stream.set_read_timeout(Some(timeout)).unwrap();
            let mut byte = [0u8; 1];
            use std::io::Read;
            stream.read_exact(&mut byte).is_ok()
        })
    }

    /// `tc filter show` / `ip link show` of the server's interface, in its namespace.
    pub fn show(&self, what: &[&str]) -> String {
        let mut args = vec!["-n", &self.server_ns];
        args.extend_from_slice(what);
        let out = Command::new("ip").args(&args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tc ARGS` in the server namespace.
    pub fn tc(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.server_ns];
        all.extend_from_slice(args);
        let out = Command::new("tc").args(&all).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_servers.store(true, Ordering::Relaxed);
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A bpffs mounted on a fresh temporary directory (pinned maps of one test), unmounted on drop.
pub struct Bpffs {
    pub dir: tempfile::TempDir,
}

impl Bpffs {
    pub fn mount() -> Bpffs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t bpf: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Bpffs { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("youwatch")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).output();
    }
}

/// Root and iproute2: what the node ban's kernel tests need.
pub fn runnable(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !super::require::runnable(
        test,
        root,
        "needs root to create network namespaces and load TC/XDP programs (run `sudo -E cargo xtask test`)",
    ) {
        return false;
    }
    let iproute = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("tc")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
    super::require::runnable(
        test,
        iproute,
        "needs iproute2 (ip, tc): apt-get install iproute2",
    )
}
