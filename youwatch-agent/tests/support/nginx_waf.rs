//! A real WAF for tests: nginx with libmodsecurity v3 and the OWASP CRS (Debian packages
//! `nginx libnginx-mod-http-modsecurity modsecurity-crs`), listening on 127.0.0.1, writing a
//! JSON serial audit log into a temporary directory, proxying to a tiny loopback backend.
//! Clients can send from any 127.0.0.0/8 source address.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

const MODULE: &str = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so";
const CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
const PACKAGES: [&str; 3] = ["nginx", "libnginx-mod-http-modsecurity", "modsecurity-crs"];

/// How [`RealWaf::start_with`] configures the WAF.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Appended to the ModSecurity configuration.
    pub extra_modsec: &'a str,
    /// Load [`RECOMMENDED_BASE`] before the CRS, as deployments do.
    pub recommended_base: bool,
    /// A second virtual host on the same port where the same rules run with
    /// `SecRuleEngine DetectionOnly`: logged, never blocked.
    pub detection_only_host: Option<&'a str>,
}

/// The request-body part of ModSecurity's recommended base configuration, as the Debian
/// package ships it (`/etc/nginx/modsecurity.conf`) and ingress-nginx does: JSON and XML
/// bodies are parsed into ARGS (so the CRS sees API payloads), limits, and the rules that
/// reject bodies the parser could not read.
pub const RECOMMENDED_BASE: &str = r#"SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRequestBodyJsonDepthLimit 512
SecArgumentsLimit 1000
SecRule &ARGS "@ge 1000" "id:'200007',phase:2,t:none,log,deny,status:400,msg:'Failed to fully parse request body due to large argument count',severity:2"
SecRule REQBODY_ERROR "!@eq 0" "id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',logdata:'%{reqbody_error_msg}',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:'200003',phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "@eq 1" "id:'200004',phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'"
SecPcreMatchLimit 1000
SecPcreMatchLimitRecursion 1000
SecRule TX:/^MSC_/ "!@streq 0" "id:'200005',phase:2,t:none,deny,msg:'ModSecurity internal error flagged: %{MATCHED_VAR_NAME}'"
"#;

pub struct RealWaf {
    dir: tempfile::TempDir,
    nginx: Child,
    pub port: u16,
    backend: Option<Backend>,
}

/// Whether the WAF packages are there, installing them when possible. Under `CI=true` a
/// missing WAF fails the test; elsewhere the test is skipped with the reason printed.
pub fn available(test: &str) -> bool {
    let present = || {
        Path::new(MODULE).exists()
            && Path::new(CRS_SETUP).exists()
            && Path::new(CRS_RULES).is_dir()
            && which("nginx")
    };
    if present() {
        return true;
    }
    eprintln!("installing {} for the real WAF test", PACKAGES.join(" "));
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if present() {
        return true;
    }
    let why = format!(
        "needs nginx with ModSecurity and the CRS: apt-get install {} (as root), or run `cargo xtask test`",
        PACKAGES.join(" ")
    );
    super::require::runnable(test, present(), &why)
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .any(|d| d.join(cmd).exists())
    })
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RealWaf {
    /// Starts nginx + ModSecurity (`SecRuleEngine On`) + CRS. `extra_modsec` is appended to the
    /// ModSecurity configuration.
    pub fn start(extra_modsec: &str) -> RealWaf {
        Self::start_with(Options {
            extra_modsec,
            ..Options::default()
        })
    }

    pub fn start_with(options: Options<'_>) -> RealWaf {
        let Options {
            extra_modsec,
            recommended_base,
            detection_only_host,
        } = options;
        let base = if recommended_base {
            RECOMMENDED_BASE
        } else {
            ""
        };
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::start();
        let port = free_port();
        let d = dir.path().display();
        // Workers must be able to write the audit log in our temporary directory.
        // SAFETY: geteuid cannot fail.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let modsec = |engine: &str| {
            format!(
                "SecRuleEngine {engine}\n\
                 SecRequestBodyAccess On\n\
                 SecResponseBodyAccess Off\n\
                 SecAuditEngine RelevantOnly\n\
                 SecAuditLogRelevantStatus \"^(?:5|4(?!04))\"\n\
                 SecAuditLogParts ABIJDEFHZ\n\
                 SecAuditLogType Serial\n\
                 SecAuditLogFormat JSON\n\
                 SecAuditLog {d}/audit.log\n\
                 SecTmpDir {d}\n\
                 SecDataDir {d}\n\
                 {base}\n\
                 Include {CRS_SETUP}\n\
                 Include {CRS_RULES}/*.conf\n\
                 {extra_modsec}\n"
            )
        };
        std::fs::write(dir.path().join("modsec.conf"), modsec("On")).unwrap();
        if detection_only_host.is_some() {
            std::fs::write(
                dir.path().join("modsec-detection-only.conf"),
                modsec("DetectionOnly"),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "load_module {MODULE};\n\
                 {user}\n\
                 daemon off;\n\
                 master_process on;\n\
                 worker_processes 1;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/error.log notice;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n\
                   access_log {d}/access.log;\n\
                   client_body_temp_path {d}/body;\n\
                   proxy_temp_path {d}/proxy;\n\
                   fastcgi_temp_path {d}/fastcgi;\n\
                   uwsgi_temp_path {d}/uwsgi;\n\
                   scgi_temp_path {d}/scgi;\n\
                   server {{\n\
                     listen 127.0.0.1:{port};\n\
                     server_name shop.example;\n\
                     modsecurity on;\n\
                     modsecurity_rules_file {d}/modsec.conf;\n\
                     location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n\
                   }}\n\
                   {detection_only}\n\
                 }}\n",
                backend = backend.port,
                detection_only = detection_only_host.map_or_else(String::new, |host| format!(
                    "server {{\n\
                       listen 127.0.0.1:{port};\n\
                       server_name {host};\n\
                       modsecurity on;\n\
                       modsecurity_rules_file {d}/modsec-detection-only.conf;\n\
                       location / {{ proxy_pass http://127.0.0.1:{}; }}\n\
                     }}",
                    backend.port
                )),
            ),
        )
        .unwrap();
        let nginx = Command::new(nginx_binary())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let mut waf = RealWaf {
            dir,
            nginx,
            port,
            backend: Some(backend),
        };
        waf.wait_ready();
        waf
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.nginx.try_wait().unwrap() {
                panic!(
                    "nginx exited ({status}):\n{}",
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not listen on port {} in 20 s", self.port);
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a raw HTTP request from `source` (any 127.x.y.z); returns the status code.
    pub fn send(&self, source: Ipv4Addr, request: &str) -> u16 {
        self.send_bytes(source, request.as_bytes())
    }

    /// [`send`](Self::send) for requests that are not text (binary upload bodies).
    pub fn send_bytes(&self, source: Ipv4Addr, request: &[u8]) -> u16 {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
        socket
            .connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], self.port)).into(),
                Duration::from_secs(5),
            )
            .unwrap();
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let head = String::from_utf8_lossy(&response);
        head.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// A GET with the usual headers of a browser-like client.
    pub fn get(&self, source: Ipv4Addr, target: &str, extra_headers: &str) -> u16 {
        self.send(
            source,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\nAccept: text/html\r\n{extra_headers}Connection: close\r\n\r\n"
            ),
        )
    }

    /// Waits until the audit log stops growing (ModSecurity writes at the end of each
    /// transaction); returns its lines.
    pub fn settled_log(&self) -> Vec<u8> {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = std::fs::read(self.audit_log()).unwrap_or_default();
            if last.as_ref() == Some(&now.len()) || Instant::now() > deadline {
                return now;
            }
            last = Some(now.len());
        }
    }
}

impl Drop for RealWaf {
    fn drop(&mut self) {
        // Stop nginx by its pid (graceful: SIGQUIT to the master), then make sure.
        let pid = self.nginx.id() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nginx.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        self.backend.take();
    }
}

/// The upstream application: answers 200 "ok" to everything.
struct Backend {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 16384];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
            }
        });
        Backend {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
