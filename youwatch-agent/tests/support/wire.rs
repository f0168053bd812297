//! What benchmarks measure on the wire: a TCP tap in front of the test API server that notes
//! the wall-clock instant each request line crosses it, and percentiles.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// A request seen on the wire: when, its request line (method and path), its User-Agent.
pub struct Wire {
    pub at: SystemTime,
    pub line: String,
    pub agent: String,
}

/// Requests seen on the wire, oldest first.
pub type Seen = Arc<Mutex<Vec<Wire>>>;

/// A TCP tap in front of the API server: forwards both ways and notes each request line
/// the client sends.
pub fn tap(upstream: SocketAddr) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            // The API server is gone once the bench is done with it.
            let Ok(server) = TcpStream::connect(upstream) else {
                break;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let log = log.clone();
            std::thread::spawn(move || pump(client, server, Some(log)));
            std::thread::spawn(move || pump(s2, c2, None));
        }
    });
    (addr, seen)
}

fn pump(mut from: TcpStream, mut to: TcpStream, log: Option<Seen>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(log) = &log {
            let now = SystemTime::now();
            let text = String::from_utf8_lossy(&buf[..n]);
            for method in ["GET ", "DELETE ", "PATCH ", "POST ", "PUT "] {
                for (i, _) in text.match_indices(method) {
                    let head = &text[i..text[i..].find("\r\n\r\n").map_or(text.len(), |e| i + e)];
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let agent = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("user-agent")
                                .then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default();
                    log.lock().unwrap().push(Wire {
                        at: now,
                        line,
                        agent,
                    });
                }
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A kubeconfig in `dir` for the API server behind the tap at `addr`.
pub fn kubeconfig(dir: &std::path::Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"http://{addr}\"}}}}]\nusers: [{{name: t, user: {{}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: t}}}}]\ncurrent-context: t\n"
        ),
    )
    .unwrap();
    path
}

/// The first request on the wire (from index `from` on) for which `wanted` holds, waiting up
/// to `timeout`.
pub fn on_the_wire_after(
    seen: &Seen,
    from: usize,
    timeout: Duration,
    wanted: impl Fn(&Wire) -> bool,
) -> SystemTime {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(w) = seen
            .lock()
            .unwrap()
            .get(from..)
            .unwrap_or_default()
            .iter()
            .find(|w| wanted(w))
        {
            return w.at;
        }
        assert!(
            Instant::now() < deadline,
            "the awaited request never crossed the tap within {timeout:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The first request whose line starts with `prefix` seen at or after `since`, waiting up to
/// `timeout`.
pub fn first_after(seen: &Seen, prefix: &str, since: SystemTime, timeout: Duration) -> SystemTime {
    on_the_wire_after(seen, 0, timeout, |w| {
        w.at >= since && w.line.starts_with(prefix)
    })
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The alert's `time` (RFC 3339 with nanoseconds) as a `SystemTime`.
pub fn alert_time(alert: &Value) -> SystemTime {
    let ts: jiff::Timestamp = alert["time"].as_str().unwrap().parse().unwrap();
    UNIX_EPOCH + Duration::from_nanos(ts.as_nanosecond() as u64)
}
