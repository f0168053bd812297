//! One audit-log line of arbitrary bytes through the whole WAF decision path: parse,
//! classify, client IP, scoring, and the detection text. Nothing may panic.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use youwatch_agent::waf::{
    WafConfig,
    config::Report,
    detect,
    json,
    metrics::WafMetrics,
    pipeline::Pipeline,
};

static PIPELINE: Mutex<Option<Pipeline>> = Mutex::new(None);

fuzz_target!(|line: &[u8]| {
    let mut guard = PIPELINE.lock().unwrap();
    let pipeline = guard.get_or_insert_with(|| {
        let mut cfg = WafConfig::default();
        cfg.client_ip.ban_loopback = true;
        cfg.client_ip.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        cfg.scoring.threshold = 1;
        cfg.scoring.max_tracked_ips = 64;
        Pipeline::new(&cfg, WafMetrics::default())
    });
    if let Ok(outcome) = pipeline.process(line, 1_700_000_000) {
        let _ = detect::detection(&outcome, Report::Attacks);
        let e = &outcome.entry;
        for m in e.messages() {
            e.tags(m, |t| {
                let _ = json::display(t, 40);
            });
            let _ = json::display(e.data(m), 80);
        }
        let _ = e.unix_time();
    }
    let _ = json::unescape(line);
    let _ = detect::host_name(line);
});
