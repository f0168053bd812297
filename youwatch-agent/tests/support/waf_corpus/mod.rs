//! The WAF policy corpora: realistic benign traffic of a REST shop and attack traffic, each
//! client on its own loopback address, sent through the real WAF ([`super::nginx_waf`]) and
//! recorded with labels. `tests/waf_corpus.rs` records them and checks the ban policy on
//! them; the recordings committed under `tests/data/waf-corpus/` are what the policy's
//! defaults were chosen from.

pub mod attacks;
pub mod benign;
pub mod http;

use std::{fmt::Write as _, net::Ipv4Addr};

use http::{Request, Rng};

use super::nginx_waf::{Options, RealWaf};

/// The host the WAF blocks on, and the one it only logs on (`SecRuleEngine DetectionOnly`).
pub const BLOCKING_HOST: &str = "shop.example";
pub const DETECTION_ONLY_HOST: &str = "monitor.example";

/// The WAF the corpora are recorded with: nginx + libmodsecurity + CRS at PL1 with the
/// recommended base configuration (JSON bodies parsed, as in deployments), blocking on
/// [`BLOCKING_HOST`], detection-only on [`DETECTION_ONLY_HOST`].
pub fn start_waf() -> RealWaf {
    RealWaf::start_with(Options {
        recommended_base: true,
        detection_only_host: Some(DETECTION_ONLY_HOST),
        ..Options::default()
    })
}

/// What the ban policy must do with a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Never banned (benign).
    NoBan,
    /// Banned (an attacker the WAF blocked for a high-confidence attack class, or a
    /// persistent detection-only attacker).
    Ban,
    /// An attacker with too little evidence to require a ban; the outcome is reported.
    Either,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::NoBan => "no-ban",
            Expect::Ban => "ban",
            Expect::Either => "either",
        }
    }

    pub fn parse(s: &str) -> Option<Expect> {
        [Expect::NoBan, Expect::Ban, Expect::Either]
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

pub struct Client {
    pub ip: Ipv4Addr,
    pub attacker: bool,
    pub expect: Expect,
    pub why: String,
    pub host: &'static str,
    pub requests: Vec<Request>,
}

/// Seed of the benign corpus: change it and the corpus changes.
const SEED: u64 = 0x5eed_0f1a_1ce5;

/// 60 browser users, API scripts, crawlers and an uptime probe, on 127.0.2.0/24.
pub fn benign_clients() -> Vec<Client> {
    let mut rng = Rng::new(SEED);
    let mut clients = Vec::new();
    let mut add = |why: String, requests: Vec<Request>| {
        let n = clients.len() as u8 + 1;
        clients.push(Client {
            ip: Ipv4Addr::new(127, 0, 2, n),
            attacker: false,
            expect: Expect::NoBan,
            why,
            host: BLOCKING_HOST,
            requests,
        });
    };
    for n in 0..60 {
        let requests = benign::browser_session(&mut rng, n);
        let why = match reviews_in(&requests) {
            0 => format!("shopper ({})", ua_of(&requests)),
            n => format!("shopper ({}) writing {n} review(s)", ua_of(&requests)),
        };
        add(why, requests);
    }
    for n in 0..4 {
        let requests = benign::api_client(&mut rng, n);
        add(format!("API script ({})", ua_of(&requests)), requests);
    }
    for n in 0..3 {
        let requests = benign::crawler(&mut rng, n);
        add(format!("crawler ({})", ua_of(&requests)), requests);
    }
    add(
        "uptime probe: numeric Host header, HTTP/1.0 without Host".into(),
        (0..10)
            .map(|i| {
                let mut r = Request::new("GET", "/rest/admin/application-version")
                    .header("User-Agent", "uptime-kuma/1.23.16")
                    .header("Accept", "*/*");
                if i % 3 == 0 {
                    r.version = "HTTP/1.0";
                } else {
                    r = r.header("Host", "127.0.0.1");
                }
                r
            })
            .collect(),
    );
    clients
}

/// The client's user-agent family, for the labels.
fn ua_of(requests: &[Request]) -> String {
    const FAMILIES: [&str; 19] = [
        "Googlebot",
        "bingbot",
        "DuckDuckBot",
        "facebookexternalhit",
        "Slackbot",
        "Instagram",
        "FBAN",
        "SamsungBrowser",
        "Tizen",
        "PlayStation",
        "Waterfox",
        "Edg/",
        "OPR/",
        "CriOS",
        "CrOS",
        "Trident",
        "Lynx",
        "Firefox",
        "Chrome",
    ];
    let ua = requests
        .first()
        .and_then(|r| r.headers.iter().find(|(k, _)| k == "User-Agent"))
        .map_or("", |(_, v)| v.as_str());
    FAMILIES
        .iter()
        .find(|f| ua.contains(*f))
        .map(|f| f.trim_end_matches('/').to_owned())
        .or_else(|| ua.contains("Safari").then(|| "Safari".to_owned()))
        .unwrap_or_else(|| ua.split('/').next().unwrap_or(ua).to_owned())
}

/// How many product reviews a session writes or edits, for the labels.
fn reviews_in(requests: &[Request]) -> usize {
    requests
        .iter()
        .filter(|r| {
            (r.method == "PUT" || r.method == "PATCH")
                && r.target.starts_with("/rest/products/")
                && r.target.contains("reviews")
        })
        .count()
}

/// The attackers of [`attacks::attackers`], on 127.0.1.0/24.
pub fn attack_clients() -> Vec<Client> {
    attacks::attackers()
        .into_iter()
        .enumerate()
        .map(|(i, a)| Client {
            ip: Ipv4Addr::new(127, 0, 1, i as u8 + 1),
            attacker: true,
            expect: a.expect,
            why: a.why.to_owned(),
            host: if a.detection_only {
                DETECTION_ONLY_HOST
            } else {
                BLOCKING_HOST
            },
            requests: a.requests,
        })
        .collect()
}

/// One request sent and the status the WAF answered.
pub struct Sent {
    pub ip: Ipv4Addr,
    pub method: String,
    pub target: String,
    pub status: u16,
}

/// Sends every client's requests through `waf`, interleaved (one request per client in turn,
/// as concurrent users would); returns what was sent and the audit log ModSecurity wrote.
pub fn record(waf: &RealWaf, clients: &[Client]) -> (Vec<Sent>, Vec<u8>) {
    let mut sent = Vec::new();
    let longest = clients.iter().map(|c| c.requests.len()).max().unwrap_or(0);
    for i in 0..longest {
        for c in clients {
            let Some(r) = c.requests.get(i) else { continue };
            // A request that names its own Host (or deliberately none) is sent as written.
            let own_host = r.headers.iter().any(|(k, _)| k == "Host") || r.version == "HTTP/1.0";
            let status = waf.send_bytes(c.ip, &r.bytes((!own_host).then_some(c.host)));
            sent.push(Sent {
                ip: c.ip,
                method: r.method.clone(),
                target: r.target.clone(),
                status,
            });
        }
    }
    (sent, waf.settled_log())
}

/// `labels.tsv`: one line per client.
pub fn labels_tsv(title: &str, clients: &[Client]) -> String {
    let mut s = format!("# {title}\n# ip\trole\texpect\trequests\twhy\n");
    for c in clients {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}",
            c.ip,
            if c.attacker { "attacker" } else { "benign" },
            c.expect.as_str(),
            c.requests.len(),
            c.why
        );
    }
    s
}

/// `requests.tsv`: every request sent, with the status the WAF answered.
pub fn requests_tsv(sent: &[Sent]) -> String {
    let mut s = String::from("# ip\tstatus\tmethod\ttarget\n");
    for r in sent {
        let target: String = r.target.chars().take(200).collect();
        let _ = writeln!(s, "{}\t{}\t{}\t{target}", r.ip, r.status, r.method);
    }
    s
}

/// A line of `labels.tsv`.
pub struct Label {
    pub ip: Ipv4Addr,
    pub attacker: bool,
    pub expect: Expect,
    pub why: String,
}

pub fn parse_labels(text: &str) -> Vec<Label> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "labels line: {l}");
            Label {
                ip: f[0].parse().expect("labels: ip"),
                attacker: f[1] == "attacker",
                expect: Expect::parse(f[2]).expect("labels: expect"),
                why: f[4].to_owned(),
            }
        })
        .collect()
}
