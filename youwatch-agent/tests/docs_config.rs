//! `docs/config.md` is generated from the commented default configuration (the same text
//! `youwatch-agent config default` prints): it must be up to date.

use std::path::PathBuf;

use youwatch_agent::config::{DEFAULT_YAML, reference};

#[test]
fn the_config_reference_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = reference::markdown(DEFAULT_YAML);
    assert!(
        written == generated,
        "{} is not what youwatch-agent/config/default.yaml generates: run `cargo xtask docs`",
        path.display()
    );
}

#[test]
fn the_reference_lists_every_setting_of_the_default_config() {
    let generated = reference::markdown(DEFAULT_YAML);
    for key in [
        "`agent.state_dir`",
        "`sensor.ring_buffer_bytes`",
        "`inventory.cgroup.kubepods`",
        "`rules.disable.tags`",
        "`falco.file.follow.start_at`",
        "`waf.scoring.max_tracked_ips`",
        "`response.playbooks`",
        "`response.shutdown_grace`",
        "`telemetry.alerts.queue`",
    ] {
        assert!(generated.contains(&format!("| {key} |")), "{key} missing");
    }
}
