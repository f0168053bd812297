//! What a replay of an audit log would ban: the pipeline the agent runs, without the stage
//! around it. The `replay` command (`cli/replay.rs`) prints the whole story.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{WafConfig, metrics::WafMetrics, pipeline::Pipeline};

/// For tests and tools: the IPs a replay of `lines` would ban.
pub fn bans_in(waf: &WafConfig, lines: &[u8]) -> Vec<(IpAddr, Duration)> {
    let mut pipeline = Pipeline::new(waf, WafMetrics::default());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut bans = Vec::new();
    for line in lines.split(|&c| c == b'\n') {
        if let Ok(o) = pipeline.process(line, now)
            && let Some(ban) = o.decision.ban()
        {
            bans.push(ban);
        }
    }
    bans
}
