//! An arbitrary body on `POST /falco`: parsed and validated as Falco alerts (one or a
//! batch); accepted ones re-emitted as Falco JSON. Nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use youwatch_agent::{inputs::falco::payload, telemetry::alert};

fuzz_target!(|data: &[u8]| {
    if let Ok(detections) = payload::parse(data, 64) {
        for d in detections {
            let line = alert::to_json(&d, "node");
            assert!(looks_like_an_alert(&line), "re-emitted alert is not JSON: {line}");
        }
    }
});

fn looks_like_an_alert(line: &str) -> bool {
    line.starts_with("{\"hostname\":") && line.ends_with('}')
}
