//! The WAF ban policy on recorded corpora (`tests/data/waf-corpus/`): realistic benign traffic
//! of a REST shop and labelled attack traffic, both written by the real nginx +
//! libmodsecurity 3.0.9 + CRS 3.3.4 at PL1. The defaults must ban no benign client and every
//! attacker the WAF blocked for a high-confidence attack.
//!
//! Re-record (same stack, same seeded traffic):
//! `YOUWATCH_WAF_CORPUS_WRITE=1 cargo test -p youwatch-agent --test waf_corpus record`.

mod support;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
};

use support::{
    nginx_waf,
    waf_corpus::{self, Client, Expect, Label},
};
use youwatch_agent::waf::{
    WafConfig,
    classify::{Class, Classifier},
    entry::Parser,
    replay,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/waf-corpus")
}

#[test]
fn record_corpora_through_the_real_waf() {
    if !nginx_waf::available("record_corpora_through_the_real_waf") {
        return;
    }
    let write = std::env::var_os("YOUWATCH_WAF_CORPUS_WRITE").is_some();
    for (name, clients) in [
        ("benign", waf_corpus::benign_clients()),
        ("attacks", waf_corpus::attack_clients()),
    ] {
        let waf = waf_corpus::start_waf();
        let (sent, log) = waf_corpus::record(&waf, &clients);
        summarize(name, &clients, &sent);
        // The policy holds on this recording too, not only on the committed one.
        let labels = waf_corpus::parse_labels(&waf_corpus::labels_tsv(name, &clients));
        check_defaults(
            name,
            &Corpus {
                log: log.clone(),
                labels,
            },
        );
        if write {
            let dir = data_dir();
            std::fs::create_dir_all(&dir).unwrap();
            write_gz(&dir.join(format!("{name}.audit.jsonl.gz")), &log);
            write_gz(
                &dir.join(format!("{name}.requests.tsv.gz")),
                waf_corpus::requests_tsv(&sent).as_bytes(),
            );
            std::fs::write(
                dir.join(format!("{name}.labels.tsv")),
                waf_corpus::labels_tsv(name, &clients),
            )
            .unwrap();
        }
    }
}

fn write_gz(path: &Path, data: &[u8]) {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

fn read_gz(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn summarize(name: &str, clients: &[Client], sent: &[waf_corpus::Sent]) {
    let blocked = sent.iter().filter(|s| s.status == 403).count();
    eprintln!(
        "{name}: {} clients, {} requests, {blocked} answered 403",
        clients.len(),
        sent.len()
    );
}

/// A recorded corpus: its audit log and labels.
struct Corpus {
    log: Vec<u8>,
    labels: Vec<Label>,
}

fn corpus(name: &str) -> Corpus {
    let dir = data_dir();
    let labels = dir.join(format!("{name}.labels.tsv"));
    Corpus {
        log: read_gz(&dir.join(format!("{name}.audit.jsonl.gz"))),
        labels: waf_corpus::parse_labels(
            &std::fs::read_to_string(&labels)
                .unwrap_or_else(|e| panic!("{}: {e}", labels.display())),
        ),
    }
}

/// The defaults, with loopback bannable (the corpora's clients live on 127.0.0.0/8).
fn lab_defaults() -> WafConfig {
    let mut cfg = WafConfig::default();
    cfg.client_ip.ban_loopback = true;
    cfg
}

/// The clients `cfg` bans in a replay of `log`.
fn banned(cfg: &WafConfig, log: &[u8]) -> BTreeSet<IpAddr> {
    replay::bans_in(cfg, log)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect()
}

/// Labelled clients the policy got wrong: (benign ones banned, attackers that must be banned
/// and are not).
fn misjudged(cfg: &WafConfig, c: &Corpus) -> (Vec<String>, Vec<String>) {
    let banned = banned(cfg, &c.log);
    let mut benign_banned = Vec::new();
    let mut missed = Vec::new();
    for l in &c.labels {
        match (l.expect, banned.contains(&IpAddr::V4(l.ip))) {
            (Expect::NoBan, true) => benign_banned.push(format!("{} ({})", l.ip, l.why)),
            (Expect::Ban, false) => missed.push(format!("{} ({})", l.ip, l.why)),
            _ => {}
        }
    }
    (benign_banned, missed)
}

/// The classes an attacker does not send by accident.
const HIGH_CONFIDENCE: [Class; 8] = [
    Class::Sqli,
    Class::Xss,
    Class::Rce,
    Class::Lfi,
    Class::Rfi,
    Class::Php,
    Class::Injection,
    Class::Java,
];

/// Clients of `log` with an entry the WAF blocked for a high-confidence class shown by a rule
/// of weight ≥ 1 (as the defaults weigh rules): what the labels must call `ban`.
fn blocked_high_confidence(cfg: &WafConfig, log: &[u8]) -> BTreeSet<IpAddr> {
    let classifier = Classifier::from_config(cfg);
    let mut parser = Parser::new();
    let mut out = BTreeSet::new();
    for line in log.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let e = parser.parse(line).expect("ModSecurity wrote it");
        let v = classifier.classify(&e);
        if v.blocked && HIGH_CONFIDENCE.iter().any(|&c| v.evidence.contains(c)) {
            out.insert(std::str::from_utf8(e.client_ip()).unwrap().parse().unwrap());
        }
    }
    out
}

/// What the defaults must do on a corpus: ban no benign client, and every attacker labelled
/// `ban` — which every client blocked for a high-confidence attack must be.
fn check_defaults(name: &str, c: &Corpus) {
    let cfg = lab_defaults();
    let labelled_ban: BTreeSet<IpAddr> = c
        .labels
        .iter()
        .filter(|l| l.expect == Expect::Ban)
        .map(|l| IpAddr::V4(l.ip))
        .collect();
    let unlabelled: Vec<_> = blocked_high_confidence(&cfg, &c.log)
        .difference(&labelled_ban)
        .copied()
        .collect();
    assert!(
        unlabelled.is_empty(),
        "{name}: blocked for a high-confidence attack but not labelled ban: {unlabelled:?}"
    );
    let (benign_banned, missed) = misjudged(&cfg, c);
    assert!(
        benign_banned.is_empty(),
        "{name}: the defaults ban {} benign client(s):\n  {}",
        benign_banned.len(),
        benign_banned.join("\n  ")
    );
    assert!(
        missed.is_empty(),
        "{name}: the defaults miss {} of {} attackers that must be banned:\n  {}",
        missed.len(),
        labelled_ban.len(),
        missed.join("\n  ")
    );
}

#[test]
fn the_defaults_ban_no_client_of_the_benign_corpus() {
    let c = corpus("benign");
    assert!(c.labels.len() >= 60 && c.labels.iter().all(|l| !l.attacker));
    check_defaults("benign", &c);
    assert!(banned(&lab_defaults(), &c.log).is_empty());
}

#[test]
fn the_defaults_ban_every_attacker_blocked_for_a_high_confidence_attack() {
    let c = corpus("attacks");
    assert!(c.labels.iter().filter(|l| l.expect == Expect::Ban).count() >= 30);
    check_defaults("attacks", &c);
}
