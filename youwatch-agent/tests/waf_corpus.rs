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
use youwatch_agent::waf::{WafConfig, replay};

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

/// Clients labelled `want` that `cfg` bans (or does not ban).
fn outcome(cfg: &WafConfig, c: &Corpus) -> (BTreeSet<IpAddr>, Vec<String>, Vec<String>) {
    let banned: BTreeSet<IpAddr> = replay::bans_in(cfg, &c.log)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    let mut missed = Vec::new();
    let mut wrongly = Vec::new();
    for l in &c.labels {
        let is = banned.contains(&IpAddr::V4(l.ip));
        match l.expect {
            Expect::Ban if !is => missed.push(format!("{} ({})", l.ip, l.why)),
            Expect::NoBan if is => wrongly.push(format!("{} ({})", l.ip, l.why)),
            _ => {}
        }
    }
    (banned, missed, wrongly)
}

#[test]
fn measure_defaults_on_the_corpora() {
    let cfg = lab_defaults();
    for name in ["benign", "attacks"] {
        let c = corpus(name);
        let (banned, missed, wrongly) = outcome(&cfg, &c);
        let must = c.labels.iter().filter(|l| l.expect == Expect::Ban).count();
        let benign = c
            .labels
            .iter()
            .filter(|l| l.expect == Expect::NoBan)
            .count();
        eprintln!(
            "{name}: {} clients, {} banned; attackers that must be banned: {must}, missed {}; benign: {benign}, banned {}",
            c.labels.len(),
            banned.len(),
            missed.len(),
            wrongly.len()
        );
        for m in &missed {
            eprintln!("  missed {m}");
        }
        for w in &wrongly {
            eprintln!("  benign banned {w}");
        }
    }
}
