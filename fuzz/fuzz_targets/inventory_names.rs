//! Attacker-influenced text the inventory parses: cgroup directory names, image references,
//! status container ids, passwd files and /proc stat lines. Never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use youwatch_agent::inventory::{container_id, image, procfs, users};

fuzz_target!(|data: &[u8]| {
    let _ = users::parse_passwd(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((_, id)) = container_id::from_cgroup_name(text) {
        assert!(container_id::is_container_id(id));
    }
    let _ = container_id::from_status(text);
    let (repo, tag) = image::split(text);
    assert!(repo.len() + tag.len() <= text.len());
    let _ = procfs::parse_stat(text);
});
